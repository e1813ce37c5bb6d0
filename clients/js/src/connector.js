// The socket side of GatewayClient: one socket at a time. Where to open it
// and with which token, the handshake up to authOk, dropping it, and the
// next attempt (after the backoff, or after the delay a go-away asked for).
// What travels on the socket is the client's: it is handed the current
// socket's text frames, and told when that socket is gone.

import { goAwayDelay } from './backoff.js';
import { PROTOCOL, jwtSubject } from './codec.js';
import { OPEN, dropSocket, fetchRoute, resolveWebSocket, withToken } from './transport.js';

/** @typedef {import('./types.js').ClientOptions} ClientOptions */
/** @typedef {import('./types.js').AuthInfo} AuthInfo */
/** @typedef {import('./types.js').DisconnectedEvent} DisconnectedEvent */
/** @typedef {import('./types.js').GoAwayEvent} GoAwayEvent */

/**
 * @typedef {object} Conn  one socket's life
 * @property {import('./transport.js').WebSocketLike} ws
 * @property {string} url
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
    const info = { ...fields, url: conn.url, reconnect: this.#authCount++ > 0 };
    conn.authOk = info;
    this.#goodUrl = conn.url;
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
    let url, token, Ctor;
    try {
      token = this.#freshToken ?? (this.#o.getToken ? await this.#o.getToken() : /** @type {string} */ (this.#token));
      this.#freshToken = null;
      this.#token = token;
      url = await this.#pickUrl(token);
      Ctor = await resolveWebSocket(this.#o.WebSocket);
    } catch (err) {
      if (!this.#closed) this.#scheduleAfter(null, 0, `cannot connect: ${/** @type {Error} */ (err).message ?? err}`);
      return;
    }
    if (this.#closed) return;
    const byQuery = (this.#o.auth ?? 'query') === 'query';
    let ws;
    try {
      ws = new Ctor(byQuery ? withToken(url, token, this.#hooks.lastSeq()) : url, PROTOCOL);
    } catch (err) {
      this.#lastFailed = true;
      this.#scheduleAfter(null, 0, `cannot connect: ${/** @type {Error} */ (err).message ?? err}`);
      return;
    }
    /** @type {Conn} */
    const conn = { ws, url, authOk: null, openedAt: Date.now(), refreshPending: null, handshakeTimer: undefined };
    this.#conn = conn;
    const limit = this.#o.connectTimeoutMs ?? 10_000;
    conn.handshakeTimer = setTimeout(() => this.#abandon(conn, 4008, `no authOk within ${limit} ms`), limit);
    ws.addEventListener('open', () => {
      if (this.#conn !== conn || byQuery) return;
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
    ws.addEventListener('close', (ev) => this.#teardown(conn, ev.code ?? 1006, String(ev.reason ?? '')));
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
