// The receiving half of the QoS 1 contract: the highest sequence seen,
// duplicate drop, cumulative coalesced acks, and what to say after a
// reconnect (resume + ack).

import { Message, qosOf, u64 } from './codec.js';

/**
 * @typedef {object} InboxOptions
 * @property {number} [lastSeq=0]  highest QoS 1 seq the app already has (persisted state)
 * @property {number} [ackDelayMs=50]  acks are coalesced: at most one per this many ms
 * @property {number} [ackEvery=64]  ...or sooner once this many messages are unacked
 */

export class Inbox {
  /**
   * @param {(frame: object) => boolean} write  sends a frame on the live connection
   * @param {InboxOptions} [opts]
   */
  constructor(write, opts = {}) {
    this.write = write;
    /** Highest QoS 1 seq seen (and handed to the app). */
    this.lastSeq = opts.lastSeq ?? 0;
    this.ackDelayMs = opts.ackDelayMs ?? 50;
    this.ackEvery = opts.ackEvery ?? 64;
    /** Highest seq acked on the current connection (0: none yet). */
    this.acked = 0;
    this.open = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    this.stats = { delivered: 0, duplicates: 0, acksSent: 0 };
  }

  /**
   * Right after authOk: resume from what the app has, and ack it (the stored
   * cursor may lag behind it). A client with no state sends neither.
   */
  onOpen() {
    this.open = true;
    this.acked = 0;
    if (this.lastSeq > 0) {
      this.write({ resume: { lastSeq: String(this.lastSeq) } });
      this.sendAck();
    }
  }

  onClose() {
    this.open = false;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * A `deliver` frame. Returns the message for the app, or null for a QoS 1
   * duplicate (seq <= lastSeq), which is dropped and not acked again.
   * @param {Record<string, any>} d
   * @returns {Message | null}
   */
  onDeliver(d) {
    if (qosOf(d.qos) === 1) {
      const seq = u64(d.seq);
      if (seq <= this.lastSeq) {
        this.stats.duplicates++;
        return null;
      }
      this.lastSeq = seq;
      this.scheduleAck();
    }
    this.stats.delivered++;
    return new Message(d);
  }

  scheduleAck() {
    if (!this.open) return;
    if (this.lastSeq - this.acked >= this.ackEvery) {
      this.flush();
      return;
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.ackDelayMs);
  }

  /** Send the cumulative ack now if there is anything new to ack. */
  flush() {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.open && this.lastSeq > this.acked) this.sendAck();
  }

  sendAck() {
    if (this.write({ ack: { seq: String(this.lastSeq) } })) {
      this.acked = this.lastSeq;
      this.stats.acksSent++;
    }
  }
}
