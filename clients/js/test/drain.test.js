// Go-away DRAINING in a two-node cluster (one Redis): the client waits the
// hinted delay, reconnects to `reconnectTo`, resumes there, and the QoS 1
// stream goes on exactly once, in order.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { GatewayClient } from '../src/index.js';
import { admin, startGateway, startRedis, token, until, waitFor } from './helpers.js';

/** @type {Awaited<ReturnType<typeof startRedis>>} */
let redis = null;
/** @type {import('./helpers.js').Gateway[]} */
const nodes = [];
/** @type {GatewayClient[]} */
const clients = [];

before(async () => {
  redis = await startRedis();
  if (!redis) return;
  for (let i = 0; i < 2; i++) nodes.push(await startGateway(['--redis', redis.url, '--bus-listen', '127.0.0.1:0', '--registry-ttl-ms', '1500']));
});
after(async () => {
  for (const c of clients) c.close();
  for (const n of nodes) await n.stop();
  await redis?.stop();
});

test('go-away DRAINING with reconnectTo: reconnect there after reconnectAfterMs, stream continues exactly once', async (t) => {
  if (!redis) return t.skip('redis-server not installed');
  const [a, b] = nodes;
  // Both nodes must see each other in the registry before /drain can hint at the other.
  await until(async () => (await admin(a, 'GET', '/nodes')).nodes?.length === 2, 10_000, 'two nodes registered', 50);

  const bob = new GatewayClient({ url: a.wsUrl, token: token('bob-d'), backoff: { minMs: 10, maxMs: 200 } });
  const alice = new GatewayClient({ url: b.wsUrl, token: token('alice-d') });
  clients.push(bob, alice);
  const first = await bob.connect();
  await alice.connect();
  assert.equal(first.node, a.id);

  /** @type {string[]} */
  const got = [];
  bob.on('message', (m) => got.push(m.text));
  for (let i = 0; i < 20; i++) await alice.send('bob-d', `m${i}`, { qos: 1 });
  await until(() => got.length === 20, 10_000, 'first 20');

  const goaway = waitFor(bob, 'goaway', () => true, 10_000);
  const gone = waitFor(bob, 'disconnected', () => true, 10_000);
  const back = waitFor(bob, 'connected', (i) => i.reconnect, 15_000);
  // Before the drain: the go-away, and so the reconnect timer, come after it.
  const tDrain = performance.now();
  assert.deepEqual(await admin(a, 'POST', '/drain'), { draining: true });
  const g = await goaway;
  assert.equal(g.reason, 'DRAINING');
  assert.equal(g.reconnectTo, b.wsUrl, `reconnectTo ${JSON.stringify(g)}`);
  // Sent while bob moves: held in the shared inbox.
  const meanwhile = [];
  for (let i = 20; i < 30; i++) meanwhile.push(alice.send('bob-d', `m${i}`, { qos: 1 }));
  const d = await gone;
  assert.ok(d.reconnectInMs >= g.reconnectAfterMs, `reconnect in ${d.reconnectInMs} ms, hinted ${g.reconnectAfterMs}`);
  const info = await back;
  const waited = performance.now() - tDrain;
  // 2 ms of slack: the event loop's clock counts whole, slightly stale milliseconds.
  assert.ok(waited >= g.reconnectAfterMs - 2, `back ${Math.round(waited)} ms after the drain, hinted ${g.reconnectAfterMs}`);
  assert.equal(info.node, b.id);
  assert.equal(info.url, g.reconnectTo);
  await Promise.all(meanwhile);
  for (let i = 30; i < 40; i++) await alice.send('bob-d', `m${i}`, { qos: 1 });
  await until(() => got.length >= 40, 10_000, `40 messages (have ${got.length})`);
  assert.deepEqual(got, Array.from({ length: 40 }, (_, i) => `m${i}`));
});
