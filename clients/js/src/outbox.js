// The sending half: one Promise per send, resolved exactly once by its
// sendResult. QoS 1 sends are kept until accepted and sent again with the
// same clientMsgId after a reconnect, a timeout or a retryable refusal;
// QoS 0 sends live and die with their connection.

import { GatewayError, RETRYABLE, codeName, qosName, targetFields, toBase64, toBytes } from './codec.js';

/**
 * What a send resolves with: the gateway's `sendResult` for an accepted send.
 * @typedef {object} SendResult
 * @property {string} clientMsgId
 * @property {string} msgId  the server's message id (the same for every retry)
 * @property {number} attempts  how many times the frame was written
 */

/**
 * @typedef {object} SendOptions
 * @property {0|1} [qos=0]
 * @property {string} [clientMsgId]  default: a fresh one (set it to retry a send across app restarts)
 * @property {number} [deadlineMs]  QoS 1: give up (reject TIMEOUT) after this long; default never
 */

/**
 * @typedef {object} Pending
 * @property {string} id
 * @property {Record<string, any>} frame
 * @property {0|1} qos
 * @property {'queued'|'inflight'|'waiting'} state
 * @property {number} attempts
 * @property {number} retryMs  next wait after a refusal without retryAfterMs
 * @property {ReturnType<typeof setTimeout> | undefined} timer
 * @property {ReturnType<typeof setTimeout> | undefined} deadline
 * @property {(r: SendResult) => void} resolve
 * @property {(e: Error) => void} reject
 */

/**
 * @typedef {object} OutboxOptions
 * @property {number} [sendTimeoutMs=10000]  no sendResult for this long: QoS 1 is written again, QoS 0 rejects
 * @property {number} [maxInFlight=32]  QoS 1 sends written and not yet answered
 */

const rand = () => Math.random().toString(36).slice(2, 10);

export class Outbox {
  /**
   * @param {(frame: object) => boolean} write  sends a frame on the live connection
   * @param {OutboxOptions} [opts]
   */
  constructor(write, opts = {}) {
    this.write = write;
    this.sendTimeoutMs = opts.sendTimeoutMs ?? 10_000;
    this.maxInFlight = Math.max(1, opts.maxInFlight ?? 32);
    this.prefix = `${Date.now().toString(36)}-${rand()}`;
    this.counter = 0;
    this.open = false;
    /** Every send not yet settled, in call order (Map keeps insertion order). @type {Map<string, Pending>} */
    this.pending = new Map();
    /** @type {string | undefined} a refused send nothing may overtake */
    this.holdFor = undefined;
  }

  /**
   * @param {import('./codec.js').Target} to
   * @param {import('./codec.js').PayloadInput} payload
   * @param {SendOptions} [opts]
   * @returns {Promise<SendResult>}
   */
  send(to, payload, opts = {}) {
    const qos = opts.qos === 1 ? 1 : 0;
    const id = opts.clientMsgId ?? `${this.prefix}-${++this.counter}`;
    const frame = { send: { ...targetFields(to), clientMsgId: id, qos: qosName(qos), payload: toBase64(toBytes(payload)) } };
    if (this.pending.has(id)) return Promise.reject(new GatewayError('INVALID_ARGUMENT', `clientMsgId ${id} is already pending`));
    if (qos === 0 && !this.open) return Promise.reject(new GatewayError('DISCONNECTED', 'not connected (QoS 0 is live only)'));
    return new Promise((resolve, reject) => {
      /** @type {Pending} */
      const p = { id, frame, qos, state: 'queued', attempts: 0, retryMs: 100, timer: undefined, deadline: undefined, resolve, reject };
      this.pending.set(id, p);
      if (qos === 1 && opts.deadlineMs !== undefined) {
        p.deadline = setTimeout(() => this.settle(p, new GatewayError('TIMEOUT', `not accepted within ${opts.deadlineMs} ms`, { clientMsgId: id })), opts.deadlineMs);
      }
      if (qos === 0) this.transmit(p);
      else this.pump();
    });
  }

  /** The connection is authenticated (after resume and re-joins): write what waits. */
  onOpen() {
    this.open = true;
    this.pump();
  }

  /** The connection is gone: QoS 0 sends fail, QoS 1 sends wait for the next one. */
  onClose() {
    this.open = false;
    for (const p of this.pending.values()) {
      if (p.qos === 0) {
        this.settle(p, new GatewayError('DISCONNECTED', 'connection lost before the send was answered', { clientMsgId: p.id }));
      } else if (p.state === 'inflight') {
        clearTimeout(p.timer);
        p.state = 'queued';
      }
    }
  }

  /** close(): every pending send fails. @param {Error} err */
  failAll(err) {
    this.open = false;
    for (const p of this.pending.values()) this.settle(p, err);
  }

  /** @param {Record<string, any>} r  a `sendResult` frame's body */
  onSendResult(r) {
    const p = this.pending.get(String(r.clientMsgId ?? ''));
    if (!p || p.state !== 'inflight') return; // an answer to an attempt already settled or superseded
    clearTimeout(p.timer);
    if (r.accepted) {
      this.settle(p, null, { clientMsgId: p.id, msgId: String(r.msgId ?? ''), attempts: p.attempts });
      return;
    }
    const code = codeName(r.code);
    const retryAfterMs = Number(r.retryAfterMs ?? 0);
    if (p.qos === 1 && RETRYABLE.has(code)) {
      p.state = 'waiting';
      this.holdFor = p.id;
      const wait = retryAfterMs > 0 ? retryAfterMs : p.retryMs;
      p.retryMs = Math.min(p.retryMs * 2, 5_000);
      p.timer = setTimeout(() => {
        p.state = 'queued';
        this.pump();
      }, wait);
      return;
    }
    this.settle(p, new GatewayError(code, String(r.message ?? ''), { clientMsgId: p.id, retryAfterMs }));
  }

  /** Write queued QoS 1 sends, oldest first, within the window. After a
   * retryable refusal the window is 1 until that send is accepted, so no
   * later send overtakes it. */
  pump() {
    if (!this.open) return;
    let busy = 0;
    for (const p of this.pending.values()) {
      if (p.qos === 1 && p.state !== 'queued') busy++;
    }
    const limit = this.holdFor ? 1 : this.maxInFlight;
    for (const p of this.pending.values()) {
      if (busy >= limit || !this.open) break;
      if (p.qos !== 1 || p.state !== 'queued') continue;
      this.transmit(p);
      busy++;
    }
  }

  /** @param {Pending} p */
  transmit(p) {
    if (!this.write(p.frame)) {
      if (p.qos === 0) this.settle(p, new GatewayError('DISCONNECTED', 'not connected', { clientMsgId: p.id }));
      return;
    }
    p.attempts++;
    p.state = 'inflight';
    p.timer = setTimeout(() => {
      if (p.qos === 0) {
        this.settle(p, new GatewayError('TIMEOUT', `no sendResult within ${this.sendTimeoutMs} ms`, { clientMsgId: p.id }));
      } else if (p.state === 'inflight') {
        p.state = 'queued';
        this.pump();
      }
    }, this.sendTimeoutMs);
  }

  /**
   * @param {Pending} p
   * @param {Error | null} err
   * @param {SendResult} [result]
   */
  settle(p, err, result) {
    if (this.pending.get(p.id) !== p) return;
    this.pending.delete(p.id);
    if (this.holdFor === p.id) this.holdFor = undefined;
    clearTimeout(p.timer);
    clearTimeout(p.deadline);
    if (err) p.reject(err);
    else p.resolve(/** @type {SendResult} */ (result));
    if (p.qos === 1) this.pump();
  }
}
