// Test fixtures: the real gateway binary on loopback ports, HS256 tokens,
// a TCP proxy whose connections the tests cut or freeze, and waits on
// events with deadlines.

import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { GatewayClient } from '../src/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(here, '../../..');
export const SECRET = 'S';
let nodes = 0;

/**
 * @typedef {object} Gateway
 * @property {string} id
 * @property {string} ws  host:port
 * @property {string} wsUrl  ws://host:port/ws
 * @property {string} admin  http://host:port
 * @property {import('node:child_process').ChildProcess} proc
 * @property {() => string} log  the stderr tail
 * @property {() => Promise<void>} stop
 */

/** Start target/debug/gateway (or $GATEWAY_BIN) on free loopback ports. @returns {Promise<Gateway>} */
export async function startGateway(extra = [], id = `test-js-${process.pid}-${++nodes}`) {
  const bin = process.env.GATEWAY_BIN ?? path.join(REPO, 'target/debug/gateway');
  if (!fs.existsSync(bin)) throw new Error(`${bin} missing: cargo build -p gateway (or set GATEWAY_BIN)`);
  const args = ['--ws-listen', '127.0.0.1:0', '--tcp-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0',
    '--jwt-secret', SECRET, '--node-id', id, '--drain-deadline-ms', '3000', ...extra];
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => (err = (err + d).slice(-20_000)));
  const line = await new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`gateway did not print ready in 20 s:\n${err}`)), 20_000);
    proc.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl >= 0) (clearTimeout(timer), resolve(out.slice(0, nl)));
    });
    proc.once('exit', (code) => (clearTimeout(timer), reject(new Error(`gateway exited ${code}:\n${err}`))));
  });
  const field = (/** @type {string} */ k) => /** @type {string} */ (new RegExp(`${k}=(\\S+)`).exec(line)?.[1]);
  const ws = field('ws');
  return {
    id, ws, wsUrl: `ws://${ws}/ws`, admin: `http://${field('admin')}`, proc, log: () => err,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = once(proc, 'exit');
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** A Redis on a free port, or null when redis-server is not installed. */
export async function startRedis() {
  if (spawnSync('sh', ['-c', 'command -v redis-server']).status !== 0) return null;
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  await until(async () => {
    const s = net.connect(port, '127.0.0.1');
    try {
      await once(s, 'connect');
      return true;
    } catch {
      return false;
    } finally {
      s.destroy();
    }
  }, 10_000, 'redis up');
  return {
    url: `redis://127.0.0.1:${port}/`,
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = once(proc, 'exit');
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

async function freePort() {
  const srv = net.createServer().listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = /** @type {net.AddressInfo} */ (srv.address()).port;
  srv.close();
  return port;
}

const b64url = (/** @type {object} */ o) => Buffer.from(JSON.stringify(o)).toString('base64url');

/** An HS256 JWT the test gateways accept. @param {string} sub @param {{ttlSec?: number, device?: string}} [o] */
export function token(sub, o = {}) {
  const claims = { sub, exp: Math.floor(Date.now() / 1000) + (o.ttlSec ?? 3600), ...(o.device ? { device: o.device } : {}) };
  const head = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url(claims)}`;
  return `${head}.${crypto.createHmac('sha256', SECRET).update(head).digest('base64url')}`;
}

/**
 * Reset a socket (RST), or destroy it when its end() is under way: Node 20
 * cannot reset a socket whose shutdown is pending (EINVAL), and the handle
 * it then leaks keeps the process spinning at exit. A pair's half-close is
 * frequent with short HTTP exchanges (`Connection: close`, the SSE POSTs).
 * @param {net.Socket} s
 */
function reset(s) {
  if (s.writableEnded) s.destroy();
  else s.resetAndDestroy();
}

/**
 * A TCP proxy in front of `target` (host:port). cut() resets every live
 * pair (as a phone leaving coverage); freeze() stops forwarding without
 * closing (a dead path only heartbeats can notice); hold() resets every
 * connection it accepts until release() (out of coverage for a while).
 */
export async function startProxy(/** @type {string} */ target) {
  const [host, port] = target.split(':');
  /** @type {Set<{a: net.Socket, b: net.Socket}>} */
  const pairs = new Set();
  let accepted = 0;
  let held = false;
  const srv = net.createServer((a) => {
    if (held) {
      a.on('error', () => {});
      a.resetAndDestroy();
      return;
    }
    accepted++;
    const b = net.connect(Number(port), host);
    const pair = { a, b };
    pairs.add(pair);
    a.pipe(b);
    b.pipe(a);
    const end = () => (pairs.delete(pair), a.destroy(), b.destroy());
    a.on('error', end).on('close', end);
    b.on('error', end).on('close', end);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const addr = `127.0.0.1:${/** @type {net.AddressInfo} */ (srv.address()).port}`;
  return {
    url: `ws://${addr}/ws`,
    get accepted() {
      return accepted;
    },
    get live() {
      return pairs.size;
    },
    cut() {
      for (const { a, b } of [...pairs]) (reset(a), reset(b));
    },
    freeze() {
      for (const { a, b } of pairs) (a.unpipe(b), b.unpipe(a), a.pause(), b.pause());
    },
    hold() {
      held = true;
    },
    release() {
      held = false;
    },
    close() {
      this.cut();
      if (srv.listening) srv.close();
    },
  };
}

/**
 * The next `type` event of `emitter` that satisfies `pred`, or a rejection
 * after `ms`.
 * @template T
 * @param {{on: (t: string, f: (e: T) => void) => () => void}} emitter
 * @param {string} type
 * @param {(e: T) => boolean} [pred]
 * @param {number} [ms]
 * @returns {Promise<T>}
 */
export function waitFor(emitter, type, pred = () => true, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => (off(), reject(new Error(`no '${type}' event within ${ms} ms`))), ms);
    const off = emitter.on(type, (e) => {
      if (!pred(e)) return;
      clearTimeout(timer);
      off();
      resolve(e);
    });
  });
}

/** Poll `check` (sync or async) until truthy, or fail after `ms`. */
export async function until(/** @type {() => any} */ check, ms = 10_000, what = 'condition', every = 10) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}

/** `p`, or a rejection naming `what` after `ms`. @template T @param {Promise<T>} p */
export function deadline(p, ms, what) {
  let t;
  return Promise.race([p, new Promise((_, rej) => (t = setTimeout(() => rej(new Error(`${what}: not done within ${ms} ms`)), ms)))]).finally(() => clearTimeout(t));
}

/** GET/POST the admin API. */
export async function admin(/** @type {Gateway} */ gw, method, p, body) {
  const res = await fetch(gw.admin + p, { method, body });
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/**
 * Clients with fast reconnects, each remembered so the suite can close them
 * all when it ends (`client.closeAll()`).
 */
export function clientFactory() {
  /** @type {GatewayClient[]} */
  const clients = [];
  const client = (/** @type {import('../src/types.js').ClientOptions} */ o) => {
    const c = new GatewayClient({ backoff: { minMs: 10, maxMs: 200 }, ...o });
    clients.push(c);
    return c;
  };
  client.closeAll = () => {
    for (const c of clients) c.close();
  };
  return client;
}
