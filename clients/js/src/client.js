// GatewayClient: one logical connection to the gateway that survives
// reconnects. It owns the socket lifecycle (connect, authOk, go-away,
// backoff, heartbeats, token refresh) and wires the Inbox (receiving), the
// Outbox (sending) and the Rooms (joined and recovered from their positions)
// to it.

import { Backoff, goAwayDelay } from './backoff.js';
import { GatewayError, PROTOCOL, codeName, jwtSubject, u64 } from './codec.js';
import { Emitter } from './emitter.js';
import { Inbox } from './inbox.js';
import { Heartbeat, RefreshTimer } from './keepalive.js';
import { Outbox } from './outbox.js';
import { Positions, Rooms } from './rooms.js';
import { OPEN, dropSocket, fetchRoute, resolveWebSocket, withToken } from './transport.js';

/** @typedef {import('./types.js').ClientOptions} ClientOptions */
/** @typedef {import('./types.js').ClientEvents} ClientEvents */
/** @typedef {import('./types.js').AuthInfo} AuthInfo */
/** @typedef {import('./types.js').RoomPosition} RoomPosition */
/** @typedef {import('./types.js').JoinOptions} JoinOptions */

/**
 * @typedef {object} Conn  one socket's life
 * @property {import('./transport.js').WebSocketLike} ws
 * @property {string} url
 * @property {AuthInfo | null} authOk
 * @property {number} openedAt
 * @property {string | null} refreshPending  a token sent in `refresh`, not yet answered
 * @property {ReturnType<typeof setTimeout> | undefined} handshakeTimer
 */

/** @extends {Emitter<ClientEvents>} */
export class GatewayClient extends Emitter {
  /** @type {ClientOptions} */ #o;
  /** @type {Conn | null} */ #conn = null;
  #started = false;
  #closed = false;
  /** @type {string | undefined} */ #token;
  /** @type {string | null} a go-away's reconnectTo, used by the next attempt */ #nextUrl = null;
  /** @type {string | null} the last URL that authenticated */ #goodUrl = null;
  #lastFailed = false;
  /** @type {number | null} the delay the next reconnect must use (go-away, planned) */ #pendingDelay = null;
  #refreshUnsupported = false;
  /** @type {string | null} a token fetched for a refresh the next connection should use */ #freshToken = null;
  #authCount = 0;
  /** @type {ReturnType<typeof setTimeout> | undefined} */ #reconnectTimer;
  /** @type {{promise: Promise<AuthInfo>, resolve: (a: AuthInfo) => void, reject: (e: Error) => void}} */ #first;

  /** @param {ClientOptions} opts */
  constructor(opts) {
    super();
    if (!opts || (!opts.url && !opts.routeUrl)) throw new TypeError('GatewayClient: need url or routeUrl');
    if (!opts.token && !opts.getToken) throw new TypeError('GatewayClient: need token or getToken');
    this.#o = opts;
    this.#token = opts.token;
    this.backoff = new Backoff(opts.backoff);
    const write = (/** @type {object} */ f) => this.#write(f);
    this.inbox = new Inbox(write, opts);
    this.outbox = new Outbox(write, opts);
    this.roomPositions = new Positions(opts.positions);
    this.roomSet = new Rooms(write, opts.rooms, this.roomPositions);
    this.heartbeat = new Heartbeat({
      ping: () => this.#write({ ping: { nonce: String(Date.now()) } }),
      dead: (ms) => this.#conn && this.#abandon(this.#conn, 4000, `no traffic for ${ms} ms`),
    });
    this.refreshTimer = new RefreshTimer(() => void this.#refreshDue(), opts.refreshRatio ?? 0.8);
    this.reconnects = 0;
    let resolve, reject;
    const promise = new Promise((res, rej) => ((resolve = res), (reject = rej)));
    promise.catch(() => {});
    this.#first = { promise, resolve: /** @type {any} */ (resolve), reject: /** @type {any} */ (reject) };
  }

  /** 'idle' | 'connecting' | 'connected' | 'closed' */
  get state() {
    if (this.#closed) return 'closed';
    if (!this.#started) return 'idle';
    return this.#conn?.authOk ? 'connected' : 'connecting';
  }

  /** The current connection's authOk, or null. */
  get info() {
    return this.#conn?.authOk ?? null;
  }

  /** Highest QoS 1 seq seen: persist it with your messages, pass it back as `lastSeq`. */
  get lastSeq() {
    return this.inbox.lastSeq;
  }

  /**
   * Each room's position `{offset, epoch}` (rooms that keep history): what
   * the app has of it. Persist it with the messages (on every `position`
   * event) and pass it back as the `positions` option.
   * @returns {Record<string, RoomPosition>}
   */
  positions() {
    return this.roomPositions.all();
  }

  /** One room's position, or null. @param {string} room @returns {RoomPosition | null} */
  position(room) {
    return this.roomPositions.get(room);
  }

  /** Counters: delivered, duplicates (dropped), acksSent, reconnects. */
  get stats() {
    return { ...this.inbox.stats, reconnects: this.reconnects };
  }

  /**
   * Start connecting (and reconnecting until close()). Resolves with the
   * first authOk; rejects only if close() comes first.
   * @returns {Promise<AuthInfo>}
   */
  connect() {
    if (this.#closed) return Promise.reject(new GatewayError('CLOSED', 'client closed'));
    if (!this.#started) {
      this.#started = true;
      void this.#attempt();
    }
    return this.#first.promise;
  }

  /**
   * Send a message. QoS 1 resolves once the gateway stored it (retried with
   * the same clientMsgId across reconnects, timeouts and retryable refusals);
   * QoS 0 resolves on its sendResult and rejects DISCONNECTED when there is
   * no live connection.
   * @param {import('./codec.js').Target} to
   * @param {import('./codec.js').PayloadInput} payload
   * @param {import('./outbox.js').SendOptions} [opts]
   */
  send(to, payload, opts) {
    if (this.#closed) return Promise.reject(new GatewayError('CLOSED', 'client closed'));
    return this.outbox.send(to, payload, opts);
  }

  /**
   * Join a room, now and after every reconnect, each time from the room's
   * position when it has one (what was missed comes first). Resolves with
   * the `joined` event. `recent`: a first join (no position) also gets the
   * room's last `recent` messages.
   * @param {string} room
   * @param {JoinOptions} [opts]
   * @returns {Promise<import('./types.js').JoinedEvent>}
   */
  join(room, opts) {
    if (this.#closed) return Promise.reject(new GatewayError('CLOSED', 'client closed'));
    return this.roomSet.join(room, opts);
  }

  /** Leave a room (stop re-joining it, forget its position). @param {string} room */
  leave(room) {
    if (this.#closed) return Promise.reject(new GatewayError('CLOSED', 'client closed'));
    const done = this.roomSet.leave(room);
    if (this.roomPositions.forget(room)) this.#emitPosition(room);
    return done;
  }

  /** Stop: flush the pending ack, close the socket, never reconnect. */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#reconnectTimer);
    const err = new GatewayError('CLOSED', 'client closed');
    this.#first.reject(err);
    this.inbox.flush();
    this.outbox.failAll(err);
    this.roomSet.failAll(err);
    if (this.#conn) this.#abandon(this.#conn, 1000, 'client closed');
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
      ws = new Ctor(byQuery ? withToken(url, token, this.inbox.lastSeq) : url, PROTOCOL);
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
      const lastSeq = this.inbox.lastSeq;
      /** @type {Record<string, any>} */
      const auth = { token, device: this.#o.device ?? '' };
      if (lastSeq > 0) auth.lastSeq = String(lastSeq);
      // The reconnect in one step: the inbox from lastSeq, every room from its position.
      const rooms = this.roomSet.authRooms();
      if (rooms.length > 0) auth.rooms = rooms;
      ws.send(JSON.stringify({ auth }));
    });
    ws.addEventListener('message', (ev) => this.#onFrame(conn, ev.data));
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

  /** @param {object} frame */
  #write(frame) {
    const c = this.#conn;
    if (!c?.authOk || c.ws.readyState !== OPEN) return false;
    c.ws.send(JSON.stringify(frame));
    this.heartbeat.onTx();
    return true;
  }

  /** @param {Conn} conn @param {unknown} data */
  #onFrame(conn, data) {
    if (this.#conn !== conn || typeof data !== 'string') return;
    this.heartbeat.onRx();
    let f;
    try {
      f = JSON.parse(data);
    } catch {
      return;
    }
    if (f.authOk) this.#onAuthOk(conn, f.authOk);
    else if (f.deliver) this.#onDeliver(f.deliver);
    else if (f.sendResult) this.outbox.onSendResult(f.sendResult);
    else if (f.joined) {
      const r = this.roomSet.onJoined(f.joined);
      if (r) {
        this.emit('joined', r.ev);
        if (r.moved) this.#emitPosition(r.ev.room);
      }
    } else if (f.left) this.roomSet.onLeft(String(f.left.room ?? ''));
    else if (f.gap) this.#onGap(f.gap);
    else if (f.error) this.#onError(conn, f.error);
    else if (f.goAway) this.#onGoAway(conn, f.goAway);
    else if (f.refreshed) this.#onRefreshed(conn, f.refreshed);
  }

  /** @param {Record<string, any>} d */
  #onDeliver(d) {
    let moved = false;
    const m = this.inbox.onDeliver(d, (room, offset) => {
      const r = this.roomPositions.onDeliver(room, offset);
      moved = r > 0;
      return r >= 0;
    });
    if (!m) return;
    this.emit('message', m);
    if (moved) this.#emitPosition(m.room);
  }

  /** @param {Record<string, any>} g */
  #onGap(g) {
    const ev = { fromSeq: u64(g.fromSeq), firstAvailable: u64(g.firstAvailable), room: String(g.room ?? ''), epoch: String(g.epoch ?? '') };
    // A room's offsets are not the inbox's seqs: only the room's position moves.
    const moved = ev.room !== '' && this.roomPositions.onGap(ev.room, ev.epoch, ev.firstAvailable);
    this.emit('gap', ev);
    if (moved) this.#emitPosition(ev.room);
  }

  /** @param {string} room */
  #emitPosition(room) {
    this.emit('position', { room, position: this.roomPositions.get(room) });
  }

  /** @param {Conn} conn @param {Record<string, any>} a */
  #onAuthOk(conn, a) {
    clearTimeout(conn.handshakeTimer);
    /** @type {AuthInfo} */
    const info = {
      user: String(a.user ?? ''),
      device: String(a.device ?? ''),
      connId: String(a.connId ?? '0'),
      expiresAt: u64(a.expiresAt),
      heartbeatMs: Number(a.heartbeatMs ?? 0),
      node: String(a.node ?? ''),
      shard: Number(a.shard ?? 0),
      url: conn.url,
      reconnect: this.#authCount++ > 0,
    };
    conn.authOk = info;
    this.#goodUrl = conn.url;
    this.#lastFailed = false;
    // The contract's order: resume (and ack) right after authOk, then the
    // rooms (those the auth frame did not carry), then whatever waits to be sent.
    this.inbox.onOpen();
    this.roomSet.onOpen();
    this.outbox.onOpen();
    this.heartbeat.start(this.#o.heartbeatMs ?? (info.heartbeatMs || 25_000));
    if (this.#o.getToken) this.refreshTimer.schedule(info.expiresAt);
    this.emit('connected', info);
    this.#first.resolve(info);
  }

  /** @param {Conn} conn @param {Record<string, any>} e */
  #onError(conn, e) {
    const err = new GatewayError(codeName(e.code), String(e.message ?? ''), { fatal: !!e.fatal });
    if (conn.refreshPending !== null) {
      if (err.code === 'UNKNOWN_FRAME') {
        // A gateway without `refresh`: it closes; the next connection uses the new token.
        this.#refreshUnsupported = true;
        this.#token = this.#freshToken = conn.refreshPending;
        conn.refreshPending = null;
        this.#pendingDelay = 0;
      } else if (err.code === 'UNAUTHENTICATED' || err.code === 'FORBIDDEN') {
        conn.refreshPending = null;
        if (conn.authOk) this.refreshTimer.schedule(conn.authOk.expiresAt);
      }
    } else {
      this.roomSet.onError(err);
    }
    this.emit('error', err);
  }

  /** @param {Conn} conn @param {Record<string, any>} g */
  #onGoAway(conn, g) {
    const ev = {
      reason: String(g.reason ?? 'GO_AWAY_REASON_UNSPECIFIED'),
      message: String(g.message ?? ''),
      reconnectAfterMs: Number(g.reconnectAfterMs ?? 0),
      reconnectTo: String(g.reconnectTo ?? ''),
    };
    this.emit('goaway', ev);
    if (ev.reconnectTo) this.#nextUrl = ev.reconnectTo;
    this.#pendingDelay = ev.reconnectAfterMs > 0 ? goAwayDelay(ev.reconnectAfterMs, this.backoff.maxMs) : this.backoff.next();
    this.#abandon(conn, 1000, `go-away ${ev.reason}`);
  }

  /** @param {Conn} conn @param {Record<string, any>} r */
  #onRefreshed(conn, r) {
    const expiresAt = u64(r.expiresAt);
    if (conn.refreshPending !== null) this.#token = conn.refreshPending;
    conn.refreshPending = null;
    if (conn.authOk) conn.authOk.expiresAt = expiresAt;
    this.refreshTimer.schedule(expiresAt);
    this.emit('refreshed', { expiresAt });
  }

  async #refreshDue() {
    const conn = this.#conn;
    if (!conn?.authOk || !this.#o.getToken) return;
    let token;
    try {
      token = await this.#o.getToken();
    } catch (err) {
      this.emit('error', new GatewayError('TOKEN', `getToken failed: ${/** @type {Error} */ (err).message ?? err}`));
      if (this.#conn === conn) this.refreshTimer.schedule(conn.authOk.expiresAt);
      return;
    }
    if (this.#conn !== conn || this.#closed) return;
    if (this.#refreshUnsupported) {
      // Reconnect now with the new token rather than be cut at expiry.
      this.#token = this.#freshToken = token;
      this.#pendingDelay = 0;
      this.#abandon(conn, 1000, 'token refresh by reconnecting');
      return;
    }
    conn.refreshPending = token;
    this.#write({ refresh: { token } });
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
    this.heartbeat.stop();
    this.refreshTimer.stop();
    this.inbox.onClose();
    this.outbox.onClose();
    this.roomSet.onClose();
    if (!conn.authOk) this.#lastFailed = true;
    else if (Date.now() - conn.openedAt >= (this.#o.stableMs ?? 5000)) this.backoff.reset();
    this.#scheduleAfter(conn, code, reason);
  }

  /** Emit `disconnected` and arm the reconnect. @param {Conn | null} conn @param {number} code @param {string} reason */
  #scheduleAfter(conn, code, reason) {
    let delay = null;
    if (!this.#closed) {
      delay = this.#pendingDelay ?? this.backoff.next();
      this.#pendingDelay = null;
      this.reconnects++;
      this.#reconnectTimer = setTimeout(() => void this.#attempt(), delay);
    }
    this.emit('disconnected', { code, reason, wasConnected: !!conn?.authOk, reconnectInMs: delay });
  }
}
