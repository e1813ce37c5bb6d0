// A test-only EventSource over node:http (Node 20 has none), enough of the
// HTML spec for the SDK's 'sse' transport: the text/event-stream parser
// (`event:`, `data:`, `id:`, `retry:`, comments, CR/LF/CRLF), `open`,
// `message` and named events to addEventListener and on<type>, `error`
// when the answer is not a 200 text/event-stream (CLOSED, no retry) or the
// stream ends (CONNECTING, and a retry after `retry` ms with Last-Event-ID,
// unless close() comes first: the SDK closes it and reconnects itself).
// Every instance is kept in `NodeEventSource.instances`, and `mute()`
// stops delivering events (a stream gone silent without the client
// hearing of it, such as a connection the server closed behind a proxy).

import http from 'node:http';
import https from 'node:https';

export class NodeEventSource {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 2;
  /** @type {NodeEventSource[]} */
  static instances = [];

  /** @param {string | URL} url */
  constructor(url) {
    this.url = new URL(url).toString();
    this.readyState = NodeEventSource.CONNECTING;
    this.withCredentials = false;
    /** @type {((ev: any) => void) | null} */ this.onopen = null;
    /** @type {((ev: any) => void) | null} */ this.onmessage = null;
    /** @type {((ev: any) => void) | null} */ this.onerror = null;
    /** @type {Map<string, Set<(ev: any) => void>>} */
    this.handlers = new Map();
    this.lastEventId = '';
    this.retryMs = 3000;
    this.muted = false;
    /** how many GETs it made (1 + its own retries) */
    this.requests = 0;
    /** @type {http.ClientRequest | null} */
    this.req = null;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.retryTimer = undefined;
    NodeEventSource.instances.push(this);
    this.#connect();
  }

  /** @param {string} type @param {(ev: any) => void} fn */
  addEventListener(type, fn) {
    let set = this.handlers.get(type);
    if (!set) this.handlers.set(type, (set = new Set()));
    set.add(fn);
  }

  /** @param {string} type @param {(ev: any) => void} fn */
  removeEventListener(type, fn) {
    this.handlers.get(type)?.delete(fn);
  }

  close() {
    this.readyState = NodeEventSource.CLOSED;
    clearTimeout(this.retryTimer);
    this.req?.destroy();
    this.req = null;
  }

  /** From now on, deliver nothing, not even the stream's end, and never retry (it looks alive and silent). */
  mute() {
    this.muted = true;
  }

  /** @param {string} type @param {any} ev */
  dispatch(type, ev) {
    if (this.muted || this.readyState === NodeEventSource.CLOSED) return;
    const on = /** @type {any} */ (this)[`on${type}`];
    if (typeof on === 'function') on.call(this, ev);
    for (const fn of [...(this.handlers.get(type) ?? [])]) fn(ev);
  }

  #connect() {
    this.requests++;
    const u = new URL(this.url);
    /** @type {Record<string, string>} */
    const headers = { Accept: 'text/event-stream', 'Cache-Control': 'no-cache' };
    if (this.lastEventId) headers['Last-Event-ID'] = this.lastEventId;
    const req = (u.protocol === 'https:' ? https : http).get(u, { headers });
    this.req = req;
    req.on('response', (res) => {
      if (this.req !== req) return void res.destroy();
      const type = String(res.headers['content-type'] ?? '');
      if (res.statusCode !== 200 || !/^text\/event-stream\b/i.test(type)) {
        res.resume();
        this.#fail(`HTTP ${res.statusCode} ${type}`);
        return;
      }
      this.readyState = NodeEventSource.OPEN;
      this.dispatch('open', { type: 'open' });
      res.setEncoding('utf8');
      let buf = '';
      let event = { type: '', data: [] };
      res.on('data', (chunk) => {
        buf += chunk;
        // Lines end in CRLF, LF or CR; a CR at the end of the chunk may be half a CRLF.
        let m;
        while ((m = /\r\n|\n|\r(?!$)/.exec(buf))) {
          const line = buf.slice(0, m.index);
          buf = buf.slice(m.index + m[0].length);
          if (line === '') {
            if (event.data.length > 0 && this.req === req) {
              const data = event.data.join('\n');
              this.dispatch(event.type || 'message', { type: event.type || 'message', data, lastEventId: this.lastEventId, origin: u.origin });
            }
            event = { type: '', data: [] };
            continue;
          }
          if (line.startsWith(':')) continue;
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? '' : line.slice(colon + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'event') event.type = value;
          else if (field === 'data') event.data.push(value);
          else if (field === 'id' && !value.includes('\0')) this.lastEventId = value;
          else if (field === 'retry' && /^\d+$/.test(value)) this.retryMs = Number(value);
        }
      });
      res.on('end', () => this.#ended(req));
      res.on('error', () => this.#ended(req));
      res.on('close', () => this.#ended(req));
    });
    req.on('error', (err) => {
      if (this.req === req) this.#ended(req, err.message);
    });
  }

  /** The stream ended or never started: error, then a retry (as a browser's), unless closed. */
  #ended(/** @type {http.ClientRequest} */ req, why = 'stream ended') {
    if (this.req !== req || this.readyState === NodeEventSource.CLOSED) return;
    this.req = null;
    if (this.muted) return; // gone unseen: no error, no retry
    this.readyState = NodeEventSource.CONNECTING;
    this.dispatch('error', { type: 'error', message: why });
    if (this.readyState === NodeEventSource.CLOSED) return;
    this.retryTimer = setTimeout(() => this.readyState !== NodeEventSource.CLOSED && this.#connect(), this.retryMs);
  }

  /** A refused answer: error, closed for good (no retry). @param {string} why */
  #fail(why) {
    this.req = null;
    this.readyState = NodeEventSource.CLOSED;
    // dispatch() skips CLOSED: the error event is the one thing a closed source still fires.
    const ev = { type: 'error', message: why };
    if (!this.muted) {
      if (typeof this.onerror === 'function') this.onerror(ev);
      for (const fn of [...(this.handlers.get('error') ?? [])]) fn(ev);
    }
  }
}
