// Reconnect delays: exponential backoff with full jitter.

/**
 * @typedef {object} BackoffOptions
 * @property {number} [minMs=250]  cap of the first delay
 * @property {number} [maxMs=30000]  largest cap
 * @property {number} [factor=2]  growth of the cap per failed attempt
 */

/** Full jitter: the n-th delay is uniform in [0, min(maxMs, minMs * factor^n)]. */
export class Backoff {
  /** @param {BackoffOptions} [opts] */
  constructor(opts = {}) {
    this.minMs = opts.minMs ?? 250;
    this.maxMs = opts.maxMs ?? 30_000;
    this.factor = opts.factor ?? 2;
    if (!(this.minMs >= 0) || !(this.maxMs >= this.minMs)) {
      throw new RangeError('backoff: need 0 <= minMs <= maxMs');
    }
    this.attempt = 0;
  }

  /** The cap of the next delay (no jitter). */
  cap() {
    return Math.min(this.maxMs, this.minMs * this.factor ** this.attempt);
  }

  /** The next delay in ms; grows the cap. */
  next() {
    const d = Math.random() * this.cap();
    this.attempt = Math.min(this.attempt + 1, 64);
    return Math.round(d);
  }

  reset() {
    this.attempt = 0;
  }
}

/**
 * The delay a go-away asks for: at least `afterMs`, plus up to as much again
 * (bounded by `maxJitterMs`) of jitter so a drained node's clients do not all
 * come back in the same millisecond.
 * @param {number} afterMs
 * @param {number} maxJitterMs
 */
export function goAwayDelay(afterMs, maxJitterMs) {
  return Math.round(afterMs + Math.random() * Math.min(afterMs, maxJitterMs));
}
