// Types only (JSDoc): the client's options, its events and what they carry.

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
 * @property {Iterable<string>} [rooms]  rooms to join from the first connection
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
 * @property {string} url  where this connection went
 * @property {boolean} reconnect  false for the first authOk of this client
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
 * @property {DisconnectedEvent} disconnected
 * @property {import('./codec.js').Message} message
 * @property {{fromSeq: number, firstAvailable: number}} gap
 * @property {import('./codec.js').GatewayError} error
 * @property {GoAwayEvent} goaway
 * @property {{expiresAt: number}} refreshed
 * @property {{room: string, rejoin: boolean}} joined
 */

export {};
