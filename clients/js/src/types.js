// Types only (JSDoc): the client's options, its events and what they carry.

/** A way to the gateway: a WebSocket, or Server-Sent Events down and POSTs up. @typedef {'websocket' | 'sse'} Transport */

/**
 * @typedef {object} ClientOptions
 * @property {string} [url]  `ws://host:port/ws` (or wss://); needed unless `routeUrl` is given
 * @property {string} [token]  a JWT; needed unless `getToken` is given
 * @property {() => Promise<string> | string} [getToken]  called for every (re)connect and before expiry (refresh)
 * @property {'query' | 'frame'} [auth='query']  token in `?token=` or in a first `auth` frame
 * @property {string} [device]  device name sent in the `auth` frame (auth: 'frame'); else the token's `device` claim
 * @property {string} [routeUrl]  `http://host:port/route`: asked (`?user=`) before every connect
 * @property {string} [user]  user for `routeUrl` (default: the token's `sub`)
 * @property {number} [routeTimeoutMs=2000]
 * @property {import('./transport.js').WebSocketCtor} [WebSocket]  default: global WebSocket, else the `ws` package
 * @property {Transport[]} [transports=['websocket', 'sse']]  tried in this order (the one that last authenticated
 *   first): one that fails before it opens hands over to the next at once. `['websocket']`: no fallback;
 *   `['sse']`: SSE + POST only
 * @property {import('./sse.js').EventSourceCtor} [EventSource]  for the 'sse' transport; default: the global one
 *   (browsers). Node has none: without this option it uses no SSE (and `['sse']` alone is refused)
 * @property {import('./backoff.js').BackoffOptions} [backoff]  reconnect delays (full jitter)
 * @property {number} [stableMs=5000]  a connection up this long resets the backoff
 * @property {number} [connectTimeoutMs=10000]  socket open to authOk
 * @property {number} [heartbeatMs]  ping interval; default authOk.heartbeatMs (dead after 2 silent intervals)
 * @property {number} [refreshRatio=0.8]  refresh the token at this fraction of its remaining lifetime
 * @property {number} [lastSeq=0]  highest QoS 1 seq the app already has (from its storage)
 * @property {number} [ackDelayMs=50]  acks are cumulative and coalesced over this long
 * @property {number} [ackEvery=64]  ...or sent sooner once this many are unacked
 * @property {number} [sendTimeoutMs=10000]  no sendResult within this: QoS 1 written again, QoS 0 rejected
 * @property {number} [maxInFlight=32]  QoS 1 sends written and unanswered at once
 * @property {Iterable<string | {room: string, recent?: number}>} [rooms]  rooms to join from the first connection
 *   (`recent`: as the `join` option)
 * @property {Record<string, RoomPosition>} [positions]  each room's position the app already has (from its
 *   storage, as `client.positions()` gave it): the first join of such a room recovers from it
 */

/**
 * A position in a room that keeps history: every message of the room up to
 * `offset` (of `epoch`) was handed to the app, or announced missing by a
 * `gap`. The epoch changes when the room's history was lost: an offset of
 * another epoch means nothing.
 * @typedef {object} RoomPosition
 * @property {number} offset  0: none yet
 * @property {string} epoch
 */

/**
 * @typedef {object} JoinOptions
 * @property {number} [recent=0]  on a join without a position (the first one): also get the room's last
 *   `recent` messages (as far as its history reaches), before the live ones
 */

/**
 * A room joined: the `joined` event, and what `join()` resolves with.
 * @typedef {object} JoinedEvent
 * @property {string} room
 * @property {boolean} rejoin  joined again by the client (after a reconnect, or from the `rooms` option), not by a `join()` call
 * @property {boolean} history  the room keeps history: its messages carry offsets, the client keeps its position
 * @property {number} offset  the room's last offset when the gateway answered (0: empty, or no history)
 * @property {string} epoch  the room's epoch
 * @property {boolean} recovered  the join gave a position and nothing after it is missing: the messages after it
 *   come next, in order, then the live ones. False after a position: a `gap` for the room follows (another
 *   epoch, or older than the history), then what the history still has. Always false for a first join.
 */

/**
 * Messages will not come: QoS 1 seqs of the inbox (`room` empty), or a room's
 * offsets (`room` set, of `epoch`), from `fromSeq` up to but not including
 * `firstAvailable`. Fetch them from the backend if the app needs them.
 * @typedef {object} GapEvent
 * @property {number} fromSeq
 * @property {number} firstAvailable
 * @property {string} room  empty for the inbox
 * @property {string} epoch  the room's epoch ('' for the inbox)
 */

/**
 * A room's position changed (after the `message` that moved it), or was
 * forgotten (`position` null: `leave()`, or the room keeps no history).
 * @typedef {object} PositionEvent
 * @property {string} room
 * @property {RoomPosition | null} position
 */

/**
 * authOk, as the `connected` event and `client.info`.
 * @typedef {object} AuthInfo
 * @property {string} user
 * @property {string} device
 * @property {string} connId
 * @property {number} expiresAt  unix seconds
 * @property {number} heartbeatMs
 * @property {string} node
 * @property {number} shard
 * @property {string} url  where this connection went (the WebSocket URL, also over SSE)
 * @property {Transport} transport  how
 * @property {boolean} reconnect  false for the first authOk of this client
 */

/**
 * A connection authenticated over this transport (each time, just before `connected`).
 * @typedef {object} TransportEvent
 * @property {Transport} transport
 * @property {string} url  the WebSocket URL, or the event stream's (`http(s)://host:port/sse`, without the token)
 */

/**
 * @typedef {object} DisconnectedEvent
 * @property {number} code  WebSocket close code (1006: dropped; 4000: no traffic; 4008: no authOk)
 * @property {string} reason
 * @property {boolean} wasConnected  the connection had been authenticated
 * @property {number | null} reconnectInMs  null after close()
 */

/**
 * @typedef {object} GoAwayEvent
 * @property {string} reason  DRAINING, KICKED, TOKEN_EXPIRED, HEARTBEAT_TIMEOUT
 * @property {string} message
 * @property {number} reconnectAfterMs
 * @property {string} reconnectTo  empty: the same address
 */

/**
 * @typedef {object} ClientEvents
 * @property {AuthInfo} connected
 * @property {TransportEvent} transport
 * @property {DisconnectedEvent} disconnected
 * @property {import('./codec.js').Message} message
 * @property {GapEvent} gap
 * @property {import('./codec.js').GatewayError} error
 * @property {GoAwayEvent} goaway
 * @property {{expiresAt: number}} refreshed
 * @property {JoinedEvent} joined
 * @property {PositionEvent} position
 */

export {};
