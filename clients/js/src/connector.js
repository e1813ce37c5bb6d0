// The socket side of GatewayClient: one socket at a time. Where to open it
// and with which token, over which transport (a WebSocket; SSE + POST when
// the WebSocket cannot open), the handshake up to authOk, dropping it, and
// the next attempt (after the backoff, or after the delay a go-away asked
// for). What travels on the socket is the client's: it is handed the
// current socket's text frames, and told when that socket is gone.

import { goAwayDelay } from './backoff.js';
import { PROTOCOL, jwtSubject } from './codec.js';
import { NO_EVENTSOURCE, SseSocket, resolveEventSource, sseUrl } from './sse.js';
import { OPEN, dropSocket, fetchRoute, resolveWebSocket, withToken } from './transport.js';

/** @typedef {import('./types.js').ClientOptions} ClientOptions */
/** @typedef {import('./types.js').AuthInfo} AuthInfo */
/** @typedef {import('./types.js').DisconnectedEvent} DisconnectedEvent */
/** @typedef {import('./types.js').GoAwayEvent} GoAwayEvent */
/** @typedef {import('./types.js').Transport} Transport */

/** The transports there are, in the default order of `transports`. */
export const TRANSPORTS = /** @type {readonly Transport[]} */ (Object.freeze(['websocket', 'sse']));

/**
 * The `transports` option, checked: a non-empty list of distinct transport
 * names (`['sse']` alone needs an EventSource).
 * @param {ClientOptions} opts
 * @returns {Transport[]}
 */
export function transportsOf(opts) {
  const list = opts.transports === undefined ? [...TRANSPORTS] : [...opts.transports];
  if (list.length === 0 || list.some((t) => !TRANSPORTS.includes(t)) || new Set(list).size !== list.length) {
    throw new TypeError("transports: a non-empty list of 'websocket' and 'sse'");
  }
  if (list.length === 1 && list[0] === 'sse' && !resolveEventSource(opts.EventSource)) throw new TypeError(NO_EVENTSOURCE);
  return list;
}

/**
 * @typedef {object} Conn  one socket's life
 * @property {import('./transport.js').WebSocketLike} ws  a WebSocket, or an SseSocket (the same API)
 * @property {Transport} transport
 * @property {string} url  the WebSocket URL (the SSE one is derived from it)
 * @property {string} endpoint  where the socket went: `url`, or the event stream's URL (without the token)
 * @property {boolean} opened  the socket opened (a WebSocket's `open`, the stream's `session` event)
 * @property {AuthInfo | null} authOk
 * @property {number} openedAt
 * @property {string | null} refreshPending  a token sent in `refresh`, not yet answered
 * @property {ReturnType<typeof setTimeout> | undefined} handshakeTimer
 */

/**
 * What the Connector asks of its owner.
 * @typedef {object} ConnectorHooks
 * @property {() => number} lastSeq  the resume point a new socket carries (`?last_seq=`, or the auth frame's)
 * @property {() => object[]} authRooms  the joins the auth frame carries (`auth: 'frame'`)
 * @property {(conn: Conn, data: string) => void} frame  a text frame on the current socket
 * @property {(conn: Conn) => void} closed  the current socket is gone (before the next attempt is armed)
 * @property {(ev: DisconnectedEvent) => void} disconnected  a socket is gone or an attempt failed, and the next
 *   attempt is armed (`reconnectInMs`) or, after close(), not (null)
 */

export class Connector {
  /** @type {ClientOptions} */ #o;
  /** @type {Transport[]} */ #transports;
  /** @type {Transport | null} the transport of the last connection that authenticated: tried first */ #preferred = null;
  /** @type {import('./backoff.js').Backoff} */ #backoff;
  /** @type {ConnectorHooks} */ #hooks;
  /** @type {Conn | null} */ #conn = null;
  #started = false;
  #closed = false;
  /** @type {string | undefined} */ #token;
  /** @type {string | null} a token fetched for a refresh the next connection should use */ #freshToken = null;
  /** @type {string | null} a go-away's reconnectTo, used by the next attempt */ #nextUrl = null;
  /** @type {string | null} the last URL that authenticated */ #goodUrl = null;
  #lastFailed = false;
  /** @type {number | null} the delay the next reconnect must use (go-away, planned) */ #pendingDelay = null;
  #authCount = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */ #reconnectTimer;

  /**
   * @param {ClientOptions} opts
   * @param {import('./backoff.js').Backoff} backoff  the reconnect delays (the client's)
   * @param {ConnectorHooks} hooks
   */
  constructor(opts, backoff, hooks) {
    this.#o = opts;
    this.#transports = transportsOf(opts);
    this.#backoff = backoff;
    this.#hooks = hooks;
    this.#token = opts.token;
  }

  /** The current socket (authenticated once `authOk` is set), or null between sockets. */
  get conn() {
    return this.#conn;
  }

  get started() {
    return this.#started;
  }

  get closed() {
    return this.#closed;
  }

  /** The first attempt (once); then one after every lost socket until close(). */
  start() {
    if (this.#started || this.#closed) return;
    this.#started = true;
    void this.#attempt();
  }

  /** No attempt from now on. The current socket stays: drop() it (after a last ack, say). */
  close() {
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
  }

  /** Send a frame on the authenticated socket; false when there is none. @param {object} frame */
  write(frame) {
    const c = this.#conn;
    if (!c?.authOk || c.ws.readyState !== OPEN) return false;
    c.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Drop the current socket, if any (dead, close()). @param {number} code @param {string} reason */
  drop(code, reason) {
    if (this.#conn) this.#abandon(this.#conn, code, reason);
  }

  /**
   * `conn` answered authOk: it is the connection now, and its URL the one to
   * come back to.
   * @param {Conn} conn
   * @param {Omit<AuthInfo, 'url' | 'reconnect'>} fields  the authOk frame's
   * @returns {AuthInfo}
   */
  authenticated(conn, fields) {
    clearTimeout(conn.handshakeTimer);
    /** @type {AuthInfo} */
    const info = { ...fields, url: conn.url, transport: conn.transport, reconnect: this.#authCount++ > 0 };
    conn.authOk = info;
    this.#goodUrl = conn.url;
    this.#preferred = conn.transport;
    this.#lastFailed = false;
    return info;
  }

  /**
   * A go-away on `conn`: drop it and come back after the delay it hints
   * (with jitter; else the backoff's), to its `reconnectTo` if it names one.
   * @param {Conn} conn
   * @param {GoAwayEvent} ev
   */
  goAway(conn, ev) {
    if (ev.reconnectTo) this.#nextUrl = ev.reconnectTo;
    this.#pendingDelay = ev.reconnectAfterMs > 0 ? goAwayDelay(ev.reconnectAfterMs, this.#backoff.maxMs) : this.#backoff.next();
    this.#abandon(conn, 1000, `go-away ${ev.reason}`);
  }

  /** The live connection was refreshed to `token`. @param {string} token */
  refreshedTo(token) {
    this.#token = token;
  }

  /**
   * The next connection uses `token`, and comes at once (a gateway without
   * `refresh`: the token is renewed by reconnecting).
   * @param {string} token
   */
  reconnectWith(token) {
    this.#token = this.#freshToken = token;
    this.#pendingDelay = 0;
  }

  async #attempt() {
    this.#reconnectTimer = undefined;
    if (this.#closed) return;
    let url, token;
    try {
      token = this.#freshToken ?? (this.#o.getToken ? await this.#o.getToken() : /** @type {string} */ (this.#token));
      this.#freshToken = null;
      this.#token = token;
      url = await this.#pickUrl(token);
    } catch (err) {
      if (!this.#closed) this.#scheduleAfter(null, 0, `cannot connect: ${/** @type {Error} */ (err).message ?? err}`);
      return;
    }
    if (!this.#closed) await this.#open(url, token, this.#order());
  }

  /**
   * The transports to try, in order: those of `transports` (SSE only where
   * there is an EventSource, unless it is the only one), the one that last
   * authenticated first.
   * @returns {Transport[]}
   */
  #order() {
    const usable = this.#transports.filter((t) => t !== 'sse' || this.#transports.length === 1 || resolveEventSource(this.#o.EventSource));
    const p = this.#preferred;
    return p && usable.includes(p) ? [p, ...usable.filter((t) => t !== p)] : usable;
  }

  /**
   * Open a socket with the first of `kinds`. One that fails before it opens
   * (cannot be made, errors or closes first, or does not open within
   * connectTimeoutMs) hands over to the next kind at once, with the same
   * token: the fallback. The last one's failure is the attempt's.
   * @param {string} url
   * @param {string} token
   * @param {Transport[]} kinds
   */
  async #open(url, token, kinds) {
    const [kind, ...rest] = kinds;
    const byQuery = (this.#o.auth ?? 'query') === 'query';
    let ws, endpoint;
    try {
      const lastSeq = this.#hooks.lastSeq();
      if (kind === 'sse') {
        const EventSource = resolveEventSource(this.#o.EventSource);
        if (!EventSource) throw new Error(NO_EVENTSOURCE);
        endpoint = sseUrl(url);
        ws = new SseSocket(byQuery ? withToken(endpoint, token, lastSeq) : endpoint, { EventSource });
      } else {
        const Ctor = await resolveWebSocket(this.#o.WebSocket);
        endpoint = url;
        if (this.#closed) return;
        ws = new Ctor(byQuery ? withToken(url, token, lastSeq) : url, PROTOCOL);
      }
    } catch (err) {
      if (this.#closed) return;
      if (rest.length > 0) return this.#open(url, token, rest);
      this.#lastFailed = true;
      this.#scheduleAfter(null, 0, `cannot connect: ${/** @type {Error} */ (err).message ?? err}`);
      return;
    }
    /** @type {Conn} */
    const conn = { ws, transport: kind, url, endpoint, opened: false, authOk: null, openedAt: Date.now(), refreshPending: null, handshakeTimer: undefined };
    this.#conn = conn;
    /** Before `open`, with a transport left to try: drop this one and try it. */
    const fallBack = () => {
      if (this.#conn !== conn || conn.opened || rest.length === 0 || this.#closed) return false;
      clearTimeout(conn.handshakeTimer);
      this.#conn = null;
      dropSocket(ws, 4008, 'falling back');
      void this.#open(url, token, rest);
      return true;
    };
    const limit = this.#o.connectTimeoutMs ?? 10_000;
    conn.handshakeTimer = setTimeout(() => fallBack() || this.#abandon(conn, 4008, `no authOk within ${limit} ms`), limit);
    ws.addEventListener('open', () => {
      if (this.#conn !== conn) return;
      conn.opened = true;
      if (byQuery) return;
      const lastSeq = this.#hooks.lastSeq();
      /** @type {Record<string, any>} */
      const auth = { token, device: this.#o.device ?? '' };
      if (lastSeq > 0) auth.lastSeq = String(lastSeq);
      // The reconnect in one step: the inbox from lastSeq, every room from its position.
      const rooms = this.#hooks.authRooms();
      if (rooms.length > 0) auth.rooms = rooms;
      ws.send(JSON.stringify({ auth }));
    });
    ws.addEventListener('message', (ev) => {
      if (this.#conn === conn && typeof ev.data === 'string') this.#hooks.frame(conn, ev.data);
    });
    ws.addEventListener('close', (ev) => fallBack() || this.#teardown(conn, ev.code ?? 1006, String(ev.reason ?? '')));
    ws.addEventListener('error', () => {}); // a close event follows
  }

  /** @param {string} token */
  async #pickUrl(token) {
    if (this.#nextUrl) {
      const u = this.#nextUrl;
      this.#nextUrl = null;
      return u;
    }
    const base = this.#o.url;
    if (this.#o.routeUrl) {
      try {
        return await fetchRoute(this.#o.routeUrl, this.#o.user ?? jwtSubject(token), this.#o.routeTimeoutMs ?? 2000);
      } catch (err) {
        if (!base && !this.#goodUrl) throw err;
      }
    }
    return /** @type {string} */ (this.#lastFailed || !this.#goodUrl ? base ?? this.#goodUrl : this.#goodUrl);
  }

  /** Drop a connection ourselves (dead, timed out, go-away, close()). @param {Conn} conn @param {number} code @param {string} reason */
  #abandon(conn, code, reason) {
    dropSocket(conn.ws, code, reason);
    this.#teardown(conn, code, reason);
  }

  /** @param {Conn} conn @param {number} code @param {string} reason */
  #teardown(conn, code, reason) {
    if (this.#conn !== conn) return;
    this.#conn = null;
    clearTimeout(conn.handshakeTimer);
    this.#hooks.closed(conn);
    if (!conn.authOk) this.#lastFailed = true;
    else if (Date.now() - conn.openedAt >= (this.#o.stableMs ?? 5000)) this.#backoff.reset();
    this.#scheduleAfter(conn, code, reason);
  }

  /** Arm the reconnect (unless closed), then report `disconnected`. @param {Conn | null} conn @param {number} code @param {string} reason */
  #scheduleAfter(conn, code, reason) {
    let delay = null;
    if (!this.#closed) {
      delay = this.#pendingDelay ?? this.#backoff.next();
      this.#pendingDelay = null;
      this.#reconnectTimer = setTimeout(() => void this.#attempt(), delay);
    }
    this.#hooks.disconnected({ code, reason, wasConnected: !!conn?.authOk, reconnectInMs: delay });
  }
}
