// Rooms the app wants to be in: joined now, and again after every reconnect.

import { GatewayError } from './codec.js';

/** Error codes a `join` is refused with (errors carry no room: the oldest unanswered join is the one refused). */
const JOIN_REFUSALS = new Set(['INVALID_ARGUMENT', 'FORBIDDEN', 'TOO_MANY_ROOMS']);

/** @typedef {{resolve: () => void, reject: (e: Error) => void}} Waiter */

export class Rooms {
  /**
   * @param {(frame: object) => boolean} write
   * @param {Iterable<string>} [initial]  rooms to join on the first connect
   */
  constructor(write, initial = []) {
    this.write = write;
    /** @type {Set<string>} */
    this.wanted = new Set(initial);
    /** @type {Set<string>} joined on the current connection */
    this.joinedNow = new Set();
    /** @type {string[]} joins written and not yet answered, oldest first */
    this.outstanding = [];
    /** @type {Map<string, Waiter[]>} */
    this.joinWaiters = new Map();
    /** @type {Map<string, Waiter[]>} */
    this.leaveWaiters = new Map();
    this.open = false;
  }

  /** @param {string} room @returns {Promise<void>} */
  join(room) {
    if (typeof room !== 'string' || room === '') return Promise.reject(new TypeError('room must be a non-empty string'));
    this.wanted.add(room);
    if (this.open && this.joinedNow.has(room)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const list = this.joinWaiters.get(room) ?? [];
      list.push({ resolve, reject });
      this.joinWaiters.set(room, list);
      if (this.open && !this.outstanding.includes(room)) this.#writeJoin(room);
    });
  }

  /** @param {string} room @returns {Promise<void>} */
  leave(room) {
    this.wanted.delete(room);
    this.#settle(this.joinWaiters, room, new GatewayError('LEFT', `left ${room} before it was joined`));
    const wasJoined = this.joinedNow.delete(room);
    if (!this.open || !this.write({ leave: { room } })) return Promise.resolve();
    if (!wasJoined && !this.outstanding.includes(room)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const list = this.leaveWaiters.get(room) ?? [];
      list.push({ resolve, reject });
      this.leaveWaiters.set(room, list);
    });
  }

  /** Right after authOk (and resume): join every wanted room again. */
  onOpen() {
    this.open = true;
    this.joinedNow.clear();
    this.outstanding = [];
    for (const room of this.wanted) this.#writeJoin(room);
  }

  onClose() {
    this.open = false;
    this.joinedNow.clear();
    this.outstanding = [];
    // A leave in flight is done as far as the app is concerned: it is not re-joined.
    for (const room of [...this.leaveWaiters.keys()]) this.#settle(this.leaveWaiters, room, null);
  }

  /**
   * @param {string} room
   * @param {(ev: {room: string, rejoin: boolean}) => void} emit
   */
  onJoined(room, emit) {
    const i = this.outstanding.indexOf(room);
    if (i >= 0) this.outstanding.splice(i, 1);
    if (!this.wanted.has(room)) return; // left meanwhile; the leave follows
    const asked = this.joinWaiters.has(room);
    this.joinedNow.add(room);
    this.#settle(this.joinWaiters, room, null);
    emit({ room, rejoin: !asked });
  }

  /** @param {string} room */
  onLeft(room) {
    this.#settle(this.leaveWaiters, room, null);
  }

  /** A non-fatal error frame: maybe the answer to the oldest join. @param {GatewayError} err */
  onError(err) {
    if (!JOIN_REFUSALS.has(err.code) || this.outstanding.length === 0) return;
    const room = /** @type {string} */ (this.outstanding.shift());
    this.wanted.delete(room);
    this.#settle(this.joinWaiters, room, err);
  }

  /** @param {Error} err */
  failAll(err) {
    for (const room of [...this.joinWaiters.keys()]) this.#settle(this.joinWaiters, room, err);
    for (const room of [...this.leaveWaiters.keys()]) this.#settle(this.leaveWaiters, room, null);
  }

  /** @param {string} room */
  #writeJoin(room) {
    if (this.write({ join: { room } })) this.outstanding.push(room);
  }

  /** @param {Map<string, Waiter[]>} map @param {string} room @param {Error | null} err */
  #settle(map, room, err) {
    const list = map.get(room);
    if (!list) return;
    map.delete(room);
    for (const w of list) (err ? w.reject(err) : w.resolve());
  }
}
