// GatewayClient: one logical connection to the gateway that survives
// reconnects. The Connector (connector.js) opens, drops and replaces the
// sockets; the client wires the Inbox (receiving), the Outbox (sending) and
// the Rooms (joined and recovered from their positions) to whichever is live,
// dispatches its frames, keeps it alive (heartbeats, token refresh) and
// reports it all as events.

import { Backoff } from './backoff.js';
import { GatewayError, codeName, u64 } from './codec.js';
import { Connector } from './connector.js';
import { Emitter } from './emitter.js';
import { Inbox } from './inbox.js';
import { Heartbeat, RefreshTimer } from './keepalive.js';
import { Outbox } from './outbox.js';
import { Positions } from './positions.js';
import { Rooms } from './rooms.js';

/** @typedef {import('./types.js').ClientOptions} ClientOptions */
/** @typedef {import('./types.js').ClientEvents} ClientEvents */
/** @typedef {import('./types.js').AuthInfo} AuthInfo */
/** @typedef {import('./types.js').RoomPosition} RoomPosition */
/** @typedef {import('./types.js').JoinOptions} JoinOptions */
/** @typedef {import('./connector.js').Conn} Conn */

/** @extends {Emitter<ClientEvents>} */
export class GatewayClient extends Emitter {
  /** @type {ClientOptions} */ #o;
  /** @type {Connector} */ #connector;
  #refreshUnsupported = false;
  /** @type {{promise: Promise<AuthInfo>, resolve: (a: AuthInfo) => void, reject: (e: Error) => void}} */ #first;

  /** @param {ClientOptions} opts */
  constructor(opts) {
    super();
    if (!opts || (!opts.url && !opts.routeUrl)) throw new TypeError('GatewayClient: need url or routeUrl');
    if (!opts.token && !opts.getToken) throw new TypeError('GatewayClient: need token or getToken');
    this.#o = opts;
    this.backoff = new Backoff(opts.backoff);
    const write = (/** @type {object} */ f) => this.#write(f);
    this.inbox = new Inbox(write, opts);
    this.outbox = new Outbox(write, opts);
    this.roomPositions = new Positions(opts.positions);
    this.roomSet = new Rooms(write, opts.rooms, this.roomPositions);
    this.heartbeat = new Heartbeat({
      ping: () => this.#write({ ping: { nonce: String(Date.now()) } }),
      dead: (ms) => this.#connector.drop(4000, `no traffic for ${ms} ms`),
    });
    this.refreshTimer = new RefreshTimer(() => void this.#refreshDue(), opts.refreshRatio ?? 0.8);
    this.reconnects = 0;
    this.#connector = new Connector(opts, this.backoff, {
      lastSeq: () => this.inbox.lastSeq,
      authRooms: () => this.roomSet.authRooms(),
      frame: (conn, data) => this.#onFrame(conn, data),
      closed: () => this.#onClosed(),
      disconnected: (ev) => {
        if (ev.reconnectInMs !== null) this.reconnects++;
        this.emit('disconnected', ev);
      },
    });
    let resolve, reject;
    const promise = new Promise((res, rej) => ((resolve = res), (reject = rej)));
    promise.catch(() => {});
    this.#first = { promise, resolve: /** @type {any} */ (resolve), reject: /** @type {any} */ (reject) };
  }

  /** 'idle' | 'connecting' | 'connected' | 'closed' */
  get state() {
    if (this.#connector.closed) return 'closed';
    if (!this.#connector.started) return 'idle';
    return this.#connector.conn?.authOk ? 'connected' : 'connecting';
  }

  /** The current connection's authOk, or null. */
  get info() {
    return this.#connector.conn?.authOk ?? null;
  }

  /** The current connection's transport, 'websocket' or 'sse' (once authenticated), or null. */
  get transport() {
    const c = this.#connector.conn;
    return c?.authOk ? c.transport : null;
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
    if (this.#connector.closed) return Promise.reject(new GatewayError('CLOSED', 'client closed'));
    this.#connector.start();
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
    if (this.#connector.closed) return Promise.reject(new GatewayError('CLOSED', 'client closed'));
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
    if (this.#connector.closed) return Promise.reject(new GatewayError('CLOSED', 'client closed'));
    return this.roomSet.join(room, opts);
  }

  /** Leave a room (stop re-joining it, forget its position). @param {string} room */
  leave(room) {
    if (this.#connector.closed) return Promise.reject(new GatewayError('CLOSED', 'client closed'));
    const done = this.roomSet.leave(room);
    if (this.roomPositions.forget(room)) this.#emitPosition(room);
    return done;
  }

  /** Stop: flush the pending ack, close the socket, never reconnect. */
  close() {
    if (this.#connector.closed) return;
    this.#connector.close();
    const err = new GatewayError('CLOSED', 'client closed');
    this.#first.reject(err);
    this.inbox.flush();
    this.outbox.failAll(err);
    this.roomSet.failAll(err);
    this.#connector.drop(1000, 'client closed');
  }

  /** @param {object} frame */
  #write(frame) {
    if (!this.#connector.write(frame)) return false;
    this.heartbeat.onTx();
    return true;
  }

  /** The socket is gone: stop its timers; inbox, outbox and rooms wait for the next. */
  #onClosed() {
    this.heartbeat.stop();
    this.refreshTimer.stop();
    this.inbox.onClose();
    this.outbox.onClose();
    this.roomSet.onClose();
  }

  /** A text frame of the current socket. @param {Conn} conn @param {string} data */
  #onFrame(conn, data) {
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
    const info = this.#connector.authenticated(conn, {
      user: String(a.user ?? ''),
      device: String(a.device ?? ''),
      connId: String(a.connId ?? '0'),
      expiresAt: u64(a.expiresAt),
      heartbeatMs: Number(a.heartbeatMs ?? 0),
      node: String(a.node ?? ''),
      shard: Number(a.shard ?? 0),
    });
    // The contract's order: resume (and ack) right after authOk, then the
    // rooms (those the auth frame did not carry), then whatever waits to be sent.
    this.inbox.onOpen();
    this.roomSet.onOpen();
    this.outbox.onOpen();
    this.heartbeat.start(this.#o.heartbeatMs ?? (info.heartbeatMs || 25_000));
    if (this.#o.getToken) this.refreshTimer.schedule(info.expiresAt);
    this.emit('transport', { transport: conn.transport, url: conn.endpoint });
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
        this.#connector.reconnectWith(conn.refreshPending);
        conn.refreshPending = null;
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
    this.#connector.goAway(conn, ev);
  }

  /** @param {Conn} conn @param {Record<string, any>} r */
  #onRefreshed(conn, r) {
    const expiresAt = u64(r.expiresAt);
    if (conn.refreshPending !== null) this.#connector.refreshedTo(conn.refreshPending);
    conn.refreshPending = null;
    if (conn.authOk) conn.authOk.expiresAt = expiresAt;
    this.refreshTimer.schedule(expiresAt);
    this.emit('refreshed', { expiresAt });
  }

  async #refreshDue() {
    const conn = this.#connector.conn;
    if (!conn?.authOk || !this.#o.getToken) return;
    let token;
    try {
      token = await this.#o.getToken();
    } catch (err) {
      this.emit('error', new GatewayError('TOKEN', `getToken failed: ${/** @type {Error} */ (err).message ?? err}`));
      if (this.#connector.conn === conn) this.refreshTimer.schedule(conn.authOk.expiresAt);
      return;
    }
    if (this.#connector.conn !== conn || this.#connector.closed) return;
    if (this.#refreshUnsupported) {
      // Reconnect now with the new token rather than be cut at expiry.
      this.#connector.reconnectWith(token);
      this.#connector.drop(1000, 'token refresh by reconnecting');
      return;
    }
    conn.refreshPending = token;
    this.#write({ refresh: { token } });
  }
}
