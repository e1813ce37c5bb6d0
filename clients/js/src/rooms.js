// Rooms the app wants to be in: joined now, and again after every reconnect,
// each recovered from the position the client has in it (rooms that keep
// history: every message carries its offset in the room's one order).

import { GatewayError, u64 } from './codec.js';
import { Positions } from './positions.js';

/** Error codes a `join` is refused with (errors carry no room: the oldest unanswered join is the one refused). */
const JOIN_REFUSALS = new Set(['INVALID_ARGUMENT', 'FORBIDDEN', 'TOO_MANY_ROOMS']);

/** @typedef {import('./types.js').JoinedEvent} JoinedEvent */
/** @typedef {import('./types.js').JoinOptions} JoinOptions */

/** @typedef {{resolve: (v: any) => void, reject: (e: Error) => void}} Waiter */
/** @typedef {{room: string, body: ReturnType<Positions['joinBody']>}} Outstanding */

export class Rooms {
  /**
   * @param {(frame: object) => boolean} write
   * @param {Iterable<string | {room: string, recent?: number}>} [initial]  rooms to join on the first connect
   * @param {Positions} [positions]
   */
  constructor(write, initial = [], positions = new Positions()) {
    this.write = write;
    this.positions = positions;
    /** @type {Map<string, {recent: number}>} rooms to be in, and what a first join asks for */
    this.wanted = new Map();
    for (const r of initial) {
      const room = typeof r === 'string' ? r : r?.room;
      if (typeof room !== 'string' || room === '') throw new TypeError('rooms: each must be a room name or {room, recent}');
      this.wanted.set(room, { recent: recentOf(typeof r === 'string' ? undefined : r.recent) });
    }
    /** @type {Set<string>} joined on the current connection */
    this.joinedNow = new Set();
    /** @type {Outstanding[]} joins written (or sent in `auth`) and not yet answered, oldest first */
    this.outstanding = [];
    /** @type {Outstanding[]} joins sent in the `auth` frame of the connection being opened, unanswered */
    this.inAuth = [];
    /** @type {Set<string>} rooms that auth frame carried */
    this.authSent = new Set();
    /** @type {Map<string, JoinedEvent>} the last `joined` of each room joined now */
    this.lastJoined = new Map();
    /** @type {Map<string, Waiter[]>} */
    this.joinWaiters = new Map();
    /** @type {Map<string, Waiter[]>} */
    this.leaveWaiters = new Map();
    this.open = false;
  }

  /** @param {string} room @param {JoinOptions} [opts] @returns {Promise<JoinedEvent>} */
  join(room, opts = {}) {
    if (typeof room !== 'string' || room === '') return Promise.reject(new TypeError('room must be a non-empty string'));
    let recent;
    try {
      recent = recentOf(opts?.recent);
    } catch (err) {
      return Promise.reject(err);
    }
    this.wanted.set(room, { recent });
    const known = this.lastJoined.get(room);
    if (this.open && this.joinedNow.has(room) && known) return Promise.resolve(known);
    return new Promise((resolve, reject) => {
      const list = this.joinWaiters.get(room) ?? [];
      list.push({ resolve, reject });
      this.joinWaiters.set(room, list);
      if (this.open && !this.#isOutstanding(room)) this.#writeJoin(room);
    });
  }

  /** @param {string} room @returns {Promise<void>} */
  leave(room) {
    this.wanted.delete(room);
    this.#settle(this.joinWaiters, room, new GatewayError('LEFT', `left ${room} before it was joined`));
    this.lastJoined.delete(room);
    const wasJoined = this.joinedNow.delete(room);
    if (!this.open || !this.write({ leave: { room } })) return Promise.resolve();
    if (!wasJoined && !this.#isOutstanding(room)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const list = this.leaveWaiters.get(room) ?? [];
      list.push({ resolve, reject });
      this.leaveWaiters.set(room, list);
    });
  }

  /**
   * The joins to put in the `auth` frame (`auth: 'frame'`): every wanted
   * room, each from its position. The gateway answers them after authOk.
   */
  authRooms() {
    this.inAuth = [...this.wanted].map(([room, w]) => ({ room, body: this.positions.joinBody(room, w.recent) }));
    this.authSent = new Set(this.wanted.keys());
    return this.inAuth.map((o) => o.body);
  }

  /** Right after authOk (and resume): join every wanted room again (those the auth frame did not). */
  onOpen() {
    this.open = true;
    const sent = this.authSent;
    this.outstanding = this.inAuth;
    this.inAuth = [];
    this.authSent = new Set();
    // Left while the auth frame was on its way: the gateway joins it anyway.
    for (const room of sent) if (!this.wanted.has(room)) this.write({ leave: { room } });
    for (const room of this.wanted.keys()) if (!sent.has(room)) this.#writeJoin(room);
  }

  onClose() {
    this.open = false;
    this.joinedNow.clear();
    this.lastJoined.clear();
    this.outstanding = [];
    this.inAuth = [];
    this.authSent = new Set();
    this.positions.onClose();
    // A leave in flight is done as far as the app is concerned: it is not re-joined.
    for (const room of [...this.leaveWaiters.keys()]) this.#settle(this.leaveWaiters, room, null);
  }

  /**
   * A `joined` frame. Returns the event for the app and whether the room's
   * position moved, or null when the room was left meanwhile.
   * @param {Record<string, any>} j
   * @returns {{ev: JoinedEvent, moved: boolean} | null}
   */
  onJoined(j) {
    const room = String(j.room ?? '');
    // Joins sent in the auth frame are answered after authOk; should one come
    // before it, it is found among them.
    const list = this.open ? this.outstanding : this.inAuth;
    const i = list.findIndex((o) => o.room === room);
    const body = i >= 0 ? list.splice(i, 1)[0].body : undefined;
    if (!this.wanted.has(room)) return null; // left meanwhile; the leave follows
    const info = { history: !!j.history, offset: u64(j.offset), epoch: String(j.epoch ?? ''), recovered: !!j.recovered };
    const moved = this.positions.onJoined(room, info, body);
    const asked = this.joinWaiters.has(room);
    /** @type {JoinedEvent} */
    const ev = { room, rejoin: !asked, ...info };
    this.joinedNow.add(room);
    this.lastJoined.set(room, ev);
    this.#settle(this.joinWaiters, room, null, ev);
    return { ev, moved };
  }

  /** @param {string} room */
  onLeft(room) {
    this.#settle(this.leaveWaiters, room, null);
  }

  /** A non-fatal error frame: maybe the answer to the oldest join. @param {GatewayError} err */
  onError(err) {
    if (!JOIN_REFUSALS.has(err.code) || this.outstanding.length === 0) return;
    const { room } = /** @type {Outstanding} */ (this.outstanding.shift());
    this.wanted.delete(room);
    this.#settle(this.joinWaiters, room, err);
  }

  /** @param {Error} err */
  failAll(err) {
    for (const room of [...this.joinWaiters.keys()]) this.#settle(this.joinWaiters, room, err);
    for (const room of [...this.leaveWaiters.keys()]) this.#settle(this.leaveWaiters, room, null);
  }

  /** @param {string} room */
  #isOutstanding(room) {
    return this.outstanding.some((o) => o.room === room);
  }

  /** @param {string} room */
  #writeJoin(room) {
    const body = this.positions.joinBody(room, this.wanted.get(room)?.recent ?? 0);
    if (this.write({ join: body })) this.outstanding.push({ room, body });
  }

  /** @param {Map<string, Waiter[]>} map @param {string} room @param {Error | null} err @param {unknown} [value] */
  #settle(map, room, err, value) {
    const list = map.get(room);
    if (!list) return;
    map.delete(room);
    for (const w of list) (err ? w.reject(err) : w.resolve(value));
  }
}

/** A join's `recent` option: a count of messages, 0 for none. @param {unknown} v */
function recentOf(v) {
  if (v === undefined || v === null) return 0;
  if (!Number.isSafeInteger(v) || /** @type {number} */ (v) < 0 || /** @type {number} */ (v) > 0xffffffff) {
    throw new TypeError('recent must be a non-negative integer');
  }
  return /** @type {number} */ (v);
}
