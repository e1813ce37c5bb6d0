// Timers of one live connection: heartbeats with dead-peer detection, and
// the token refresh before expiry.

/**
 * Pings every `intervalMs` when the connection has been quiet (any frame
 * counts as liveness, both ways), and declares the connection dead when
 * nothing at all arrived for `deadAfter` intervals.
 */
export class Heartbeat {
  /**
   * @param {{ping: () => void, dead: (silentMs: number) => void}} hooks
   * @param {number} [deadAfter=2]  intervals of silence that mean dead
   */
  constructor(hooks, deadAfter = 2) {
    this.hooks = hooks;
    this.deadAfter = deadAfter;
    this.intervalMs = 0;
    this.lastRx = 0;
    this.lastTx = 0;
    /** @type {ReturnType<typeof setInterval> | undefined} */
    this.timer = undefined;
  }

  /** @param {number} intervalMs */
  start(intervalMs) {
    this.stop();
    this.intervalMs = Math.max(50, intervalMs);
    this.lastRx = this.lastTx = Date.now();
    // Ticks at a quarter of the interval: a ping is never late by more than
    // that, and death is seen within deadAfter intervals plus a quarter.
    this.timer = setInterval(() => this.tick(), this.intervalMs / 4);
    /** @type {any} */ (this.timer).unref?.();
  }

  stop() {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  onRx() {
    this.lastRx = Date.now();
  }

  onTx() {
    this.lastTx = Date.now();
  }

  tick() {
    const now = Date.now();
    const silent = now - this.lastRx;
    if (silent > this.deadAfter * this.intervalMs) {
      this.stop();
      this.hooks.dead(silent);
      return;
    }
    // Ping when we have sent nothing for an interval (the server's deadline)
    // or heard nothing for one (ask for a pong to learn the peer is alive).
    if (now - this.lastTx >= this.intervalMs || silent >= this.intervalMs) {
      if (now - this.lastTx >= this.intervalMs / 2) this.hooks.ping();
    }
  }
}

/**
 * Calls `due()` at `ratio` of the token's remaining lifetime (at least
 * `minMs` from now).
 */
export class RefreshTimer {
  /**
   * @param {() => void} due
   * @param {number} [ratio=0.8]
   * @param {number} [minMs=1000]
   */
  constructor(due, ratio = 0.8, minMs = 1000) {
    this.due = due;
    this.ratio = ratio;
    this.minMs = minMs;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
  }

  /** @param {number} expiresAt  unix seconds; 0 = no expiry */
  schedule(expiresAt) {
    this.stop();
    if (!expiresAt) return;
    const remaining = expiresAt * 1000 - Date.now();
    const delay = Math.max(this.minMs, remaining * this.ratio);
    // setTimeout fires at once past 2^31-1 ms: a far expiry is checked again later.
    const capped = Math.min(delay, 2 ** 31 - 1);
    this.timer = setTimeout(() => (capped < delay ? this.schedule(expiresAt) : this.due()), capped);
    /** @type {any} */ (this.timer).unref?.();
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
