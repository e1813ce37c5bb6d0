// Without a gateway: an injected WebSocket that plays the server, for what
// the real binary no longer does (a gateway without `refresh`) and for the
// exact frames the client writes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff, GatewayClient } from '../src/index.js';
import { until, waitFor } from './helpers.js';

/** A scripted server per socket: `onFrame(ws, frame)` answers with ws.deliver(frame). */
function fakeWebSocket(/** @type {(ws: any, f: any) => void} */ onFrame) {
  /** @type {any[]} */
  const sockets = [];
  class FakeWS {
    constructor(/** @type {string} */ url, /** @type {string} */ protocol) {
      this.url = url;
      this.protocol = protocol;
      this.readyState = 0;
      /** @type {any[]} */
      this.sent = [];
      /** @type {Record<string, Function[]>} */
      this.h = {};
      sockets.push(this);
      setTimeout(() => {
        this.readyState = 1;
        this.fire('open', {});
        const tok = new URL(url).searchParams.get('token');
        this.deliver({ authOk: { user: 'u', connId: String(sockets.length), expiresAt: String(Math.floor(Date.now() / 1000) + 2), heartbeatMs: 25000, node: 'n' }, _token: tok });
      }, 1);
    }
    addEventListener(/** @type {string} */ t, /** @type {Function} */ f) {
      (this.h[t] ??= []).push(f);
    }
    fire(/** @type {string} */ t, /** @type {any} */ ev) {
      for (const f of this.h[t] ?? []) f(ev);
    }
    deliver(/** @type {any} */ f) {
      if (this.readyState === 1) this.fire('message', { data: JSON.stringify(f) });
    }
    send(/** @type {string} */ data) {
      const f = JSON.parse(data);
      this.sent.push(f);
      onFrame(this, f);
    }
    close(code = 1000, reason = '') {
      if (this.readyState === 3) return;
      this.readyState = 3;
      setTimeout(() => this.fire('close', { code, reason }), 1);
    }
  }
  return { FakeWS, sockets };
}

test('a gateway that answers refresh with UNKNOWN_FRAME: reconnect with the new token, never refresh again', async () => {
  const { FakeWS, sockets } = fakeWebSocket((ws, f) => {
    if (f.refresh) {
      ws.deliver({ error: { code: 'UNKNOWN_FRAME', message: 'unknown frame type', fatal: true } });
      ws.close(1008);
    }
  });
  let n = 0;
  const c = new GatewayClient({ url: 'ws://fake/ws', getToken: () => `tok${++n}`, WebSocket: /** @type {any} */ (FakeWS), backoff: { minMs: 1000, maxMs: 1000 } });
  const err = waitFor(c, 'error', (e) => e.code === 'UNKNOWN_FRAME', 5000);
  const down = waitFor(c, 'disconnected', () => true, 5000);
  const second = waitFor(c, 'connected', (i) => i.reconnect, 5000);
  await c.connect();
  await err;
  assert.equal((await down).reconnectInMs, 0, 'reconnects at once, not after the backoff');
  await second;
  assert.equal(new URL(sockets[1].url).searchParams.get('token'), 'tok2', 'the second connection uses the refreshed token');
  // The next refresh (its lifetime is 2 s again) reconnects instead of sending `refresh`.
  const third = waitFor(c, 'connected', (i) => i.connId === '3', 5000);
  await third;
  assert.equal(sockets[1].sent.filter((/** @type {any} */ f) => f.refresh).length, 0, 'no refresh frame to a gateway without it');
  c.close();
});

test('resume and ack right after authOk; duplicates dropped and not re-acked; acks coalesced', async () => {
  const { FakeWS, sockets } = fakeWebSocket(() => {});
  const c = new GatewayClient({ url: 'ws://fake/ws', token: 't', lastSeq: 5, WebSocket: /** @type {any} */ (FakeWS), ackDelayMs: 20 });
  /** @type {number[]} */
  const seen = [];
  c.on('message', (m) => seen.push(m.seq));
  await c.connect();
  const ws = sockets[0];
  assert.deepEqual(ws.sent.slice(0, 2), [{ resume: { lastSeq: '5' } }, { ack: { seq: '5' } }]);
  const d = (/** @type {number} */ seq) => ws.deliver({ deliver: { seq: String(seq), msgId: `m${seq}`, qos: 'QOS_AT_LEAST_ONCE', payload: btoa(`p${seq}`) } });
  for (const s of [4, 5, 6, 7, 6, 8, 8, 9]) d(s);
  ws.deliver({ deliver: { msgId: 'q0', payload: btoa('live') } }); // QoS 0: seq 0, never deduped
  assert.deepEqual(seen, [6, 7, 8, 9, 0]);
  await until(() => ws.sent.length >= 3, 2000, 'the coalesced ack');
  assert.deepEqual(ws.sent.slice(2), [{ ack: { seq: '9' } }], 'one cumulative ack, none for duplicates');
  assert.equal(c.stats.duplicates, 4);
  c.close();
});

test('backoff: full jitter under a doubling cap, bounded by maxMs', () => {
  const b = new Backoff({ minMs: 100, maxMs: 1000 });
  const caps = [];
  for (let i = 0; i < 8; i++) {
    caps.push(b.cap());
    const d = b.next();
    assert.ok(d >= 0 && d <= caps[i]);
  }
  assert.deepEqual(caps, [100, 200, 400, 800, 1000, 1000, 1000, 1000]);
  b.reset();
  assert.equal(b.cap(), 100);
});
