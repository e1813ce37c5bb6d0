// Where and how to open a socket: the WebSocket constructor (browser global,
// an injected one, or the `ws` package in Node), URLs and tokens, /route.

/**
 * The subset of the WebSocket API the SDK uses (browsers' and `ws`'s).
 * @typedef {object} WebSocketLike
 * @property {number} readyState
 * @property {(data: string) => void} send
 * @property {(code?: number, reason?: string) => void} close
 * @property {() => void} [terminate]  `ws` only: drop the socket now
 * @property {(type: string, fn: (ev: any) => void) => void} addEventListener
 */

/** @typedef {new (url: string, protocols?: string | string[]) => WebSocketLike} WebSocketCtor */

export const OPEN = 1;

/** @type {Promise<WebSocketCtor> | undefined} */
let wsPackage;

/**
 * The constructor to use: the one passed in, else the global WebSocket
 * (browsers, Deno, Node >= 22), else the `ws` package, imported on demand.
 * @param {WebSocketCtor} [given]
 * @returns {Promise<WebSocketCtor>}
 */
export async function resolveWebSocket(given) {
  if (given) return given;
  const g = /** @type {any} */ (globalThis).WebSocket;
  if (typeof g === 'function') return g;
  wsPackage ??= import('ws').then(
    (m) => m.WebSocket ?? m.default,
    (err) => {
      wsPackage = undefined;
      throw new Error(`no global WebSocket and the 'ws' package could not be loaded (npm install ws): ${err}`);
    },
  );
  return wsPackage;
}

/**
 * Drop a socket now, without waiting for a closing handshake a dead peer
 * will never answer.
 * @param {WebSocketLike} ws
 * @param {number} code
 * @param {string} reason
 */
export function dropSocket(ws, code, reason) {
  try {
    if (typeof ws.terminate === 'function' && code !== 1000) ws.terminate();
    else ws.close(code >= 3000 || code === 1000 ? code : 1000, reason.slice(0, 120));
  } catch {
    // already closed
  }
}

/**
 * `url` with `?token=` set (replacing one already there), and `last_seq=`
 * when the client has seen QoS 1 messages: the gateway then replays only
 * what comes after it.
 * @param {string} url
 * @param {string} token
 * @param {number} [lastSeq]
 */
export function withToken(url, token, lastSeq = 0) {
  const u = new URL(url);
  u.searchParams.set('token', token);
  if (lastSeq > 0) u.searchParams.set('last_seq', String(lastSeq));
  return u.toString();
}

/**
 * Ask the cluster which node to use: GET `routeUrl`?user=U (the admin port's
 * or the client port's `/route`), answering {"node","ws","tcp"}.
 * @param {string} routeUrl
 * @param {string} user
 * @param {number} timeoutMs
 * @param {typeof fetch} [fetchImpl]
 * @returns {Promise<string>} the `ws` URL
 */
export async function fetchRoute(routeUrl, user, timeoutMs, fetchImpl = globalThis.fetch) {
  const u = new URL(routeUrl);
  if (user) u.searchParams.set('user', user);
  const res = await fetchImpl(u.toString(), { signal: AbortSignal.timeout(timeoutMs) });
  if (!res.ok) throw new Error(`route: HTTP ${res.status}`);
  const body = await res.json();
  if (typeof body?.ws !== 'string' || !/^wss?:\/\//.test(body.ws)) {
    throw new Error('route: answer has no ws URL');
  }
  return body.ws;
}
