// Rooms' positions: how far the app has each room that keeps history (whose
// messages carry their offset in the room's one order), to drop what it has
// already and to recover the rest on a re-join, after a reconnect or from the
// app's storage after a restart.

/** Offsets above a hole kept for deduplication before the position gives up on the hole. */
const MAX_AHEAD = 1024;

/** @typedef {import('./types.js').RoomPosition} RoomPosition */

/**
 * A room's position as the client keeps it.
 * @typedef {object} PositionState
 * @property {number} offset  every offset up to this one (of `epoch`) was handed to the app, or announced missing
 * @property {string} epoch
 * @property {Set<number>} ahead  offsets above `offset` handed to the app already (they came out of order)
 * @property {boolean} loose  the next message starts the position wherever it is (after a join that could
 *   not recover, or one that asked for `recent`): offsets below it were not asked for
 */

/**
 * Per room positions `{offset, epoch}`: what the app has of each room that
 * keeps history. A message whose offset the room's position already covers
 * (same epoch) is a duplicate. The position moves with every message, with
 * the `joined` answer, and past a room `gap`.
 */
export class Positions {
  /** @param {Record<string, RoomPosition | {offset: number | string, epoch: string}>} [initial] */
  constructor(initial = {}) {
    /** @type {Map<string, PositionState>} */
    this.map = new Map();
    for (const [room, p] of Object.entries(initial ?? {})) {
      // Positions come from the app's storage: a malformed one is ignored
      // (the room is then joined as for the first time), not fatal.
      const offset = Number(p?.offset);
      if (!room || !Number.isSafeInteger(offset) || offset < 0 || typeof p?.epoch !== 'string') continue;
      this.map.set(room, { offset, epoch: p.epoch, ahead: new Set(), loose: false });
    }
  }

  /** @param {string} room @returns {RoomPosition | null} */
  get(room) {
    const p = this.map.get(room);
    return p ? { offset: p.offset, epoch: p.epoch } : null;
  }

  /** Every position, for the app's storage. @returns {Record<string, RoomPosition>} */
  all() {
    /** @type {Record<string, RoomPosition>} */
    const out = {};
    for (const [room, p] of this.map) out[room] = { offset: p.offset, epoch: p.epoch };
    return out;
  }

  /**
   * The `join` frame's body for a room: `since` the position when there is
   * one, else `recent` when asked.
   * @param {string} room
   * @param {number} recent
   */
  joinBody(room, recent) {
    const p = this.map.get(room);
    /** @type {{room: string, since?: {offset: string, epoch: string}, recent?: number}} */
    const body = { room };
    if (p) body.since = { offset: String(p.offset), epoch: p.epoch };
    else if (recent > 0) body.recent = recent;
    return body;
  }

  /**
   * The `joined` answer to a join that was sent with `body`. Returns true
   * when the position changed.
   * @param {string} room
   * @param {{history: boolean, offset: number, epoch: string, recovered: boolean}} j
   * @param {{since?: object, recent?: number} | undefined} body
   */
  onJoined(room, j, body) {
    const p = this.map.get(room);
    if (!j.history) return this.map.delete(room); // the room keeps no history: no position
    // (An answer to no join we know of: as if it recovered from the position.)
    if (p && (body ? body.since : true)) {
      if (j.recovered && p.epoch === j.epoch) {
        // Every message after `since` follows, in order, then the live ones.
        p.loose = false;
        return false;
      }
      // Not recovered: another epoch, or older than the history. A room gap
      // follows, then what is still available.
      let moved = false;
      if (p.epoch !== j.epoch) {
        Object.assign(p, { epoch: j.epoch, offset: 0 });
        p.ahead.clear();
        moved = true;
      }
      p.loose = true;
      return moved;
    }
    // A first join: from the room's last position, or `recent` before it.
    const recent = body?.recent ?? 0;
    const offset = Math.max(0, j.offset - recent);
    this.map.set(room, { offset, epoch: j.epoch, ahead: new Set(), loose: recent > 0 });
    return !p || p.offset !== offset || p.epoch !== j.epoch;
  }

  /**
   * A room message's offset: -1 for a duplicate (drop it), 1 when the
   * position moved, 0 for a new message that left it where it was (no
   * position kept for the room, no offset, or one above a hole).
   * @param {string} room
   * @param {number} offset
   * @returns {-1 | 0 | 1}
   */
  onDeliver(room, offset) {
    const p = room && offset > 0 ? this.map.get(room) : undefined;
    if (!p) return 0;
    if (p.loose && offset > p.offset) {
      p.loose = false;
      if (offset > p.offset + 1) {
        p.offset = offset - 1;
        for (const o of p.ahead) if (o <= p.offset) p.ahead.delete(o);
      }
    }
    if (offset <= p.offset || p.ahead.has(offset)) return -1;
    if (offset !== p.offset + 1) {
      // Above a hole (a copy that overtook the recovery, say): handed to the
      // app, remembered; the position waits for the hole to fill, up to a point.
      p.ahead.add(offset);
      if (p.ahead.size <= MAX_AHEAD) return 0;
      p.offset = Math.min(...p.ahead) - 1;
    }
    p.offset++;
    while (p.ahead.delete(p.offset + 1)) p.offset++;
    return 1;
  }

  /**
   * A room gap: offsets before `firstAvailable` (of `epoch`) will not come.
   * Returns true when the position moved.
   * @param {string} room
   * @param {string} epoch
   * @param {number} firstAvailable
   */
  onGap(room, epoch, firstAvailable) {
    const p = this.map.get(room);
    if (!p) return false;
    const before = `${p.offset}/${p.epoch}`;
    const floor = Math.max(0, firstAvailable - 1);
    if (epoch && epoch !== p.epoch) {
      Object.assign(p, { epoch, offset: floor });
      p.ahead.clear();
    } else {
      p.offset = Math.max(p.offset, floor);
    }
    p.loose = false;
    for (const o of p.ahead) if (o <= p.offset) p.ahead.delete(o);
    while (p.ahead.delete(p.offset + 1)) p.offset++;
    return `${p.offset}/${p.epoch}` !== before;
  }

  /** @param {string} room @returns {boolean} whether there was one */
  forget(room) {
    return this.map.delete(room);
  }

  /** The connection is gone: what a join on it expected no longer holds. */
  onClose() {
    for (const p of this.map.values()) p.loose = false;
  }
}
