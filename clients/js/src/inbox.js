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
   * A `deliver` frame. Returns the message for the app, or null for a
   * duplicate: a QoS 1 seq <= lastSeq (dropped and not acked again), or one
   * `accept` refuses (a room offset the app has: its seq is acked).
   * @param {Record<string, any>} d
   * @param {(room: string, offset: number) => boolean} [accept]
   * @returns {Message | null}
   */
  onDeliver(d, accept) {
    const seq = u64(d.seq);
    // A QoS 1 message without a seq (a room's history) is not the inbox's.
    if (qosOf(d.qos) === 1 && seq > 0) {
      if (seq <= this.lastSeq) {
        this.stats.duplicates++;
        return null;
      }
      this.lastSeq = seq;
      this.scheduleAck();
    }
    if (accept && !accept(String(d.room ?? ''), u64(d.offset))) {
      this.stats.duplicates++;
      return null;
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
