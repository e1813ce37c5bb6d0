// The JSON wire (canonical protobuf JSON mapping of proto/proto/client.proto):
// camelCase fields, uint64 as strings, bytes as base64, enums as names,
// default values omitted. Also the SDK's value types (messages, errors).

export const PROTOCOL = 'im.gateway.v1+json';

/** ErrorCode names -> numbers (the numbers are the contract). */
export const ERROR_CODES = Object.freeze({
  ERROR_CODE_UNSPECIFIED: 0,
  BAD_FRAME: 400,
  UNAUTHENTICATED: 401,
  NOT_AUTHENTICATED: 403,
  AUTH_TIMEOUT: 408,
  ALREADY_AUTHENTICATED: 409,
  FRAME_TOO_LARGE: 413,
  UNKNOWN_FRAME: 415,
  INVALID_ARGUMENT: 422,
  TOO_MANY_ROOMS: 429,
  SLOW_CONSUMER: 430,
  OVERLOADED: 503,
  UNAVAILABLE: 501,
  INBOX_FULL: 507,
  FORBIDDEN: 433,
  RATE_LIMITED: 434,
});

/** @type {Map<number, string>} */
const CODE_NAMES = new Map(Object.entries(ERROR_CODES).map(([k, v]) => [v, k]));

/** Send refusals a QoS 1 send is retried after (same clientMsgId). */
export const RETRYABLE = new Set(['OVERLOADED', 'UNAVAILABLE', 'INBOX_FULL', 'RATE_LIMITED']);

/**
 * An enum value as its name, whether the peer sent a name or a number.
 * @param {unknown} v
 * @returns {string}
 */
export function codeName(v) {
  if (v === undefined || v === null) return 'ERROR_CODE_UNSPECIFIED';
  if (typeof v === 'number') return CODE_NAMES.get(v) ?? String(v);
  return String(v);
}

/** @param {unknown} v  `Qos` on the wire -> 0 or 1 */
export function qosOf(v) {
  return v === 'QOS_AT_LEAST_ONCE' || v === 1 ? 1 : 0;
}

/** @param {0|1} q */
export function qosName(q) {
  return q === 1 ? 'QOS_AT_LEAST_ONCE' : 'QOS_AT_MOST_ONCE';
}

/** uint64 (a string on the wire, or absent for 0) -> number. Sequences and
 * unix times stay far below 2^53. @param {unknown} v */
export function u64(v) {
  if (v === undefined || v === null || v === '') return 0;
  const n = Number(v);
  return Number.isFinite(n) ? n : 0;
}

const enc = new TextEncoder();
const dec = new TextDecoder();

/** @param {Uint8Array} bytes */
export function toBase64(bytes) {
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, /** @type {any} */ (bytes.subarray(i, i + 0x8000)));
  }
  return btoa(s);
}

/** Standard or URL-safe base64 -> bytes. @param {string | undefined} b64 */
export function fromBase64(b64) {
  if (!b64) return new Uint8Array(0);
  const bin = atob(b64.replace(/-/g, '+').replace(/_/g, '/'));
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/**
 * What an app may pass as a payload: text (sent as UTF-8) or bytes.
 * @typedef {string | Uint8Array | ArrayBuffer | ArrayBufferView} PayloadInput
 */

/** @param {PayloadInput} p @returns {Uint8Array} */
export function toBytes(p) {
  if (typeof p === 'string') return enc.encode(p);
  if (p instanceof Uint8Array) return p;
  if (p instanceof ArrayBuffer) return new Uint8Array(p);
  if (ArrayBuffer.isView(p)) return new Uint8Array(p.buffer, p.byteOffset, p.byteLength);
  throw new TypeError('payload must be a string, Uint8Array or ArrayBuffer');
}

/** A delivered message, after deduplication. */
export class Message {
  /** @param {Record<string, any>} d  a `deliver` frame's body */
  constructor(d) {
    /** Per-user sequence number (QoS 1); 0 for QoS 0. */
    this.seq = u64(d.seq);
    /** Server message id. */
    this.msgId = String(d.msgId ?? '');
    /** Sending user; empty for the backend or the admin API. */
    this.from = String(d.from ?? '');
    /** Room the message was sent to; empty for direct messages. */
    this.room = String(d.room ?? '');
    /** @type {0|1} */
    this.qos = /** @type {0|1} */ (qosOf(d.qos));
    /** @type {Uint8Array} */
    this.payload = fromBase64(d.payload);
    /** Server time when accepted, unix milliseconds. */
    this.timestampMs = u64(d.timestampMs);
    /** Position in its room (from 1) for a room that keeps history; 0 otherwise. */
    this.offset = u64(d.offset);
  }

  /** The payload decoded as UTF-8. */
  get text() {
    return dec.decode(this.payload);
  }
}

/** An error the gateway answered with (an `error` frame or a refused send). */
export class GatewayError extends Error {
  /**
   * @param {string} code  ErrorCode name, or 'DISCONNECTED', 'CLOSED', 'TIMEOUT'
   * @param {string} message
   * @param {{fatal?: boolean, clientMsgId?: string, retryAfterMs?: number}} [extra]
   */
  constructor(code, message, extra = {}) {
    super(message ? `${code}: ${message}` : code);
    this.name = 'GatewayError';
    this.code = code;
    this.fatal = !!extra.fatal;
    this.clientMsgId = extra.clientMsgId;
    this.retryAfterMs = extra.retryAfterMs ?? 0;
  }
}

/**
 * A send target: a user id string, or one of {user}, {room}, {backend: true}.
 * @typedef {string | {user: string} | {room: string} | {backend: true}} Target
 */

/** @param {Target} to @returns {Record<string, any>} */
export function targetFields(to) {
  if (typeof to === 'string') return { user: to };
  if (to && typeof to === 'object') {
    if ('user' in to && typeof to.user === 'string') return { user: to.user };
    if ('room' in to && typeof to.room === 'string') return { room: to.room };
    if ('backend' in to && to.backend) return { backend: {} };
  }
  throw new TypeError('send target must be a user id, {user}, {room} or {backend: true}');
}

/** The `sub` claim of a JWT, without verifying it (for /route's ?user=). @param {string} token */
export function jwtSubject(token) {
  try {
    const body = token.split('.')[1];
    return String(JSON.parse(dec.decode(fromBase64(body))).sub ?? '');
  } catch {
    return '';
  }
}
