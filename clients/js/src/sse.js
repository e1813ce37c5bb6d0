// The fallback transport, for where a WebSocket cannot get through: the
// server's frames come down an EventSource (GET /sse, one frame per
// `message` event), the client's go up in POSTs (one at a time, frames one
// per line). SseSocket wears the WebSocket API subset the connector uses,
// so that the rest of the SDK cannot tell the two apart.

import { OPEN } from './transport.js';

/**
 * The subset of the EventSource API the SDK uses (browsers', or one passed in).
 * @typedef {object} EventSourceLike
 * @property {number} readyState
 * @property {() => void} close
 * @property {(type: string, fn: (ev: any) => void) => void} addEventListener
 */

/** @typedef {new (url: string) => EventSourceLike} EventSourceCtor */

/** @typedef {(url: string, init: RequestInit) => Promise<Response>} FetchLike */

export const CONNECTING = 0;
export const CLOSING = 2;
export const CLOSED = 3;

/** What a POST body gathers at most (frames queued while one is in flight); a larger frame goes alone. */
const MAX_BATCH_CHARS = 16 * 1024;
/** How long close() waits for the POSTs in flight and queued (a last ack) before it drops them. */
const DRAIN_MS = 3000;

export const NO_EVENTSOURCE =
  "the 'sse' transport needs an EventSource: there is no global one here (Node): pass the EventSource option";

/**
 * The EventSource constructor to use: the one passed in, else the global
 * one (browsers), else null (Node: no SSE transport).
 * @param {EventSourceCtor} [given]
 * @returns {EventSourceCtor | null}
 */
export function resolveEventSource(given) {
  if (given) return given;
  const g = /** @type {any} */ (globalThis).EventSource;
  return typeof g === 'function' ? g : null;
}

/**
 * The event stream's URL next to a WebSocket URL: same host and port,
 * http(s), the last path segment `ws` replaced by `sse` (`/ws` -> `/sse`;
 * any other path -> `/sse`), the query kept.
 * @param {string} wsUrl
 */
export function sseUrl(wsUrl) {
  const u = new URL(wsUrl);
  u.protocol = u.protocol === 'wss:' || u.protocol === 'https:' ? 'https:' : 'http:';
  const parts = u.pathname.split('/');
  if (parts.length > 1 && parts[parts.length - 1] === 'ws') parts[parts.length - 1] = 'sse';
  else parts.splice(0, parts.length, '', 'sse');
  u.pathname = parts.join('/');
  u.hash = '';
  return u.toString();
}

/**
 * One SSE + POST session, as a WebSocketLike: `open` once the stream's
 * `session` event named the POST path, a `message` per server frame,
 * `close` ({code, reason}) when the stream fails or ends, or a POST is
 * refused (404: the session is gone; 421: another node; 413: too large),
 * or on close(). It never reconnects by itself: the connector does.
 */
export class SseSocket {
  /** @type {number} */ readyState = CONNECTING;
  /** @type {EventSourceLike} */ #es;
  /** @type {FetchLike} */ #fetch;
  /** @type {string | null} where frames are POSTed (from the `session` event) */ #post = null;
  /** @type {string[]} frames waiting for the POST in flight */ #queue = [];
  /** @type {AbortController | null} the POST in flight */ #inflight = null;
  #pumpQueued = false;
  /** frames to POST one at a time (a batch the server found too large) */ #singles = 0;
  /** @type {{code: number, reason: string} | null} close() once the queue is through */ #draining = null;
  /** @type {ReturnType<typeof setTimeout> | undefined} */ #drainTimer;
  /** @type {Map<string, Set<(ev: any) => void>>} */ #handlers = new Map();

  /**
   * @param {string} url  the stream's URL (with `?token=` and `last_seq=`, or neither)
   * @param {{EventSource: EventSourceCtor, fetch?: FetchLike}} deps
   */
  constructor(url, deps) {
    this.url = url;
    this.#fetch = deps.fetch ?? ((u, init) => globalThis.fetch(u, init));
    const es = new deps.EventSource(url);
    this.#es = es;
    es.addEventListener('session', (ev) => this.#onSession(ev));
    es.addEventListener('message', (ev) => {
      if (this.readyState === OPEN) this.#fire('message', { data: ev.data });
    });
    // A refused stream (not 200, not text/event-stream, nothing listening)
    // or one that ended: the EventSource would retry by itself; the
    // connector decides instead, after its backoff, with a fresh token.
    es.addEventListener('error', () =>
      this.#finish(1006, this.#post ? 'event stream ended' : 'event stream failed (refused, or not an event stream)'),
    );
  }

  /** Queue a text frame; POSTed with those queued before it, after the POST in flight. @param {string} data */
  send(data) {
    if (this.readyState === CONNECTING) throw new Error('InvalidStateError: the SSE session is not open yet');
    if (this.readyState !== OPEN) return;
    this.#queue.push(data);
    if (!this.#pumpQueued) {
      // Frames written in one go (after authOk: resume, ack, joins, sends) share a POST.
      this.#pumpQueued = true;
      queueMicrotask(() => {
        this.#pumpQueued = false;
        this.#pump();
      });
    }
  }

  /**
   * Close: with 1000, once what is queued has been POSTed (a last ack; at
   * most DRAIN_MS), else at once. The stream's end ends the session.
   * @param {number} [code]
   * @param {string} [reason]
   */
  close(code = 1000, reason = '') {
    if (this.readyState === CLOSED || (this.#draining && code === 1000)) return;
    if (code === 1000 && this.readyState === OPEN && (this.#inflight || this.#queue.length > 0)) {
      this.readyState = CLOSING;
      this.#draining = { code, reason };
      this.#drainTimer = setTimeout(() => this.#finish(code, reason), DRAIN_MS);
      /** @type {any} */ (this.#drainTimer).unref?.();
      return;
    }
    this.#finish(code, reason);
  }

  /** Drop it now: the stream and the POST in flight. */
  terminate() {
    this.#finish(1006, 'terminated');
  }

  /** @param {string} type  open, message, close, error @param {(ev: any) => void} fn */
  addEventListener(type, fn) {
    let set = this.#handlers.get(type);
    if (!set) this.#handlers.set(type, (set = new Set()));
    set.add(fn);
  }

  /** @param {string} type @param {(ev: any) => void} fn */
  removeEventListener(type, fn) {
    this.#handlers.get(type)?.delete(fn);
  }

  /** @param {string} type @param {any} ev */
  #fire(type, ev) {
    for (const fn of [...(this.#handlers.get(type) ?? [])]) fn(ev);
  }

  /** The stream's first event: `{"post": "/sse/<node>/<connId>/<key>"}`. @param {{data: string}} ev */
  #onSession(ev) {
    if (this.#post || this.readyState !== CONNECTING) return;
    try {
      const post = JSON.parse(ev.data)?.post;
      if (typeof post !== 'string' || post === '') throw new Error('no post path');
      this.#post = new URL(post, this.url).toString();
    } catch (err) {
      this.#finish(1002, `bad session event: ${/** @type {Error} */ (err).message ?? err}`);
      return;
    }
    this.readyState = OPEN;
    this.#fire('open', {});
  }

  /** POST what is queued, unless a POST is in flight (its answer calls this again). */
  #pump() {
    if (this.#inflight || !this.#post || this.readyState === CLOSED) return;
    if (this.#queue.length === 0) {
      if (this.#draining) this.#finish(this.#draining.code, this.#draining.reason);
      return;
    }
    let n = 1;
    if (this.#singles > 0) this.#singles--;
    else {
      let size = this.#queue[0].length;
      while (n < this.#queue.length && size + 1 + this.#queue[n].length <= MAX_BATCH_CHARS) size += 1 + this.#queue[n++].length;
    }
    const batch = this.#queue.splice(0, n);
    const ac = new AbortController();
    this.#inflight = ac;
    // text/plain and no other header: a CORS "simple request", no preflight.
    const init = { method: 'POST', body: batch.join('\n'), headers: { 'Content-Type': 'text/plain' }, signal: ac.signal, credentials: 'omit', cache: 'no-store' };
    this.#fetch(this.#post, /** @type {RequestInit} */ (init)).then(
      async (res) => {
        // 204 has no body; a refusal's (text/plain) is its reason.
        const text = res.ok ? (res.body?.cancel().catch(() => {}), '') : (await res.text().catch(() => '')).trim().slice(0, 120);
        if (this.#inflight !== ac) return;
        this.#inflight = null;
        if (res.ok) this.#pump();
        else if (res.status === 413 && batch.length > 1) {
          // Together over the server's frame limit: again, one frame per POST.
          this.#queue.unshift(...batch);
          this.#singles = batch.length;
          this.#pump();
        } else if (res.status === 413) this.#finish(1009, `frame too large (POST answered 413${text ? `: ${text}` : ''})`);
        else this.#finish(1006, `POST answered ${res.status}${text ? `: ${text}` : ''}`);
      },
      (err) => {
        if (this.#inflight !== ac) return;
        this.#inflight = null;
        this.#finish(1006, `POST failed: ${err?.message ?? err}`);
      },
    );
  }

  /** Closed for good: the stream, the POST in flight, what was queued; then `close`. @param {number} code @param {string} reason */
  #finish(code, reason) {
    if (this.readyState === CLOSED) return;
    this.readyState = CLOSED;
    clearTimeout(this.#drainTimer);
    this.#draining = null;
    this.#queue = [];
    this.#inflight?.abort();
    this.#inflight = null;
    try {
      this.#es.close();
    } catch {
      // already closed
    }
    // As a WebSocket's: on a later task, never inside the call that closed it.
    setTimeout(() => this.#fire('close', { code, reason, wasClean: code === 1000 }), 0);
  }
}
