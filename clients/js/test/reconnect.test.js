// Reconnects against the real gateway: rooms re-joined, go-away KICKED,
// dead connections found by heartbeats, token refresh, send errors, /route.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { GatewayError } from '../src/index.js';
import { admin, clientFactory, deadline, startGateway, startProxy, token, until, waitFor } from './helpers.js';

/** @type {import('./helpers.js').Gateway} */
let gw;
const client = clientFactory();

before(async () => {
  gw = await startGateway();
});
after(async () => {
  client.closeAll();
  await gw.stop();
});

test('rooms are re-joined after a reconnect: a room message sent after it arrives', async (t) => {
  const proxy = await startProxy(gw.ws);
  t.after(() => proxy.close());
  const bob = client({ url: proxy.url, token: token('bob3'), rooms: ['lobby3'] });
  const alice = client({ url: gw.wsUrl, token: token('alice3') });
  const firstJoin = waitFor(bob, 'joined', (e) => e.room === 'lobby3');
  await Promise.all([bob.connect(), alice.connect()]);
  await firstJoin;
  await bob.join('second3');

  const back = waitFor(bob, 'connected', (i) => i.reconnect);
  const rejoined = Promise.all(['lobby3', 'second3'].map((r) => waitFor(bob, 'joined', (e) => e.room === r && e.rejoin)));
  proxy.cut();
  await back;
  await rejoined;
  // The gateway answers `joined` before the room's owner shard has the
  // member: wait until it counts exactly one (the new connection).
  await until(async () => (await admin(gw, 'GET', '/rooms/second3')).members === 1, 5000, 'member registered');

  const got = waitFor(bob, 'message', (m) => m.text === 'after the reconnect');
  await alice.send({ room: 'second3' }, 'after the reconnect', { qos: 1 });
  const m = await got;
  assert.equal(m.room, 'second3');
  assert.equal(m.from, 'alice3');
  proxy.close();
});

test('go-away KICKED (POST /kick): the client reconnects and gets what was sent meanwhile', async () => {
  const bob = client({ url: gw.wsUrl, token: token('bob4') });
  const alice = client({ url: gw.wsUrl, token: token('alice4') });
  await Promise.all([bob.connect(), alice.connect()]);
  /** @type {string[]} */
  const got = [];
  bob.on('message', (m) => got.push(m.text));
  await alice.send('bob4', 'before', { qos: 1 });
  await until(() => got.length === 1, 5000, 'first message');

  const goaway = waitFor(bob, 'goaway');
  const gone = waitFor(bob, 'disconnected');
  const back = waitFor(bob, 'connected', (i) => i.reconnect);
  assert.deepEqual(await admin(gw, 'POST', '/kick/bob4'), { kicked: 1 });
  assert.equal((await goaway).reason, 'KICKED');
  assert.ok((await gone).reconnectInMs !== null);
  const sent = alice.send('bob4', 'while kicked', { qos: 1 });
  await back;
  await sent;
  await alice.send('bob4', 'after', { qos: 1 });
  await until(() => got.length === 3, 5000, 'three messages');
  assert.deepEqual(got, ['before', 'while kicked', 'after']);
});

test('a silent connection (no pong) is declared dead after ~2 heartbeat intervals and replaced', async (t) => {
  const proxy = await startProxy(gw.ws);
  t.after(() => proxy.close());
  const bob = client({ url: proxy.url, token: token('bob5'), heartbeatMs: 200 });
  // Date.now(), the heartbeat's clock; it starts counting at authOk, after t0.
  const t0 = Date.now();
  await bob.connect();
  const gone = waitFor(bob, 'disconnected', () => true, 5000);
  proxy.freeze();
  const d = await gone;
  const took = Date.now() - t0;
  t.diagnostic(`declared dead ${took} ms after connecting: ${d.reason}`);
  // The heartbeat's verdict, not the socket's, and never before 2 intervals
  // of silence. How late after that depends on timers under load: the
  // deadline on the event is the only upper bound.
  assert.equal(d.code, 4000, d.reason);
  assert.ok(took > 2 * 200, `declared dead ${took} ms after connecting, before 2 intervals of silence`);
  await waitFor(bob, 'connected', (i) => i.reconnect, 5000);
  proxy.close();
});

test('token refresh before expiry: `refreshed` on the live connection, or a reconnect with the new token', async (t) => {
  let minted = 0;
  const first = token('bob6', { ttlSec: 3 });
  const bob = client({
    url: gw.wsUrl,
    getToken: async () => (minted++ === 0 ? first : token('bob6', { ttlSec: 3600 })),
  });
  const info = await bob.connect();
  const exp0 = info.expiresAt;
  const outcome = await deadline(
    Promise.race([
      waitFor(bob, 'refreshed', () => true, 10_000).then((r) => ({ how: 'refreshed', exp: r.expiresAt })),
      waitFor(bob, 'connected', (i) => i.reconnect, 10_000).then((i) => ({ how: 'reconnect', exp: i.expiresAt })),
    ]),
    10_000,
    'refresh',
  );
  t.diagnostic(`refresh outcome: ${outcome.how}`);
  assert.ok(outcome.exp > exp0 + 60, `expiry moved from ${exp0} to ${outcome.exp}`);
  assert.ok(minted >= 2, 'getToken called for the refresh');
  assert.equal(bob.state, 'connected');
});

test('send errors: INVALID_ARGUMENT rejects a QoS 1 send; QoS 0 rejects DISCONNECTED without a connection', async (t) => {
  const proxy = await startProxy(gw.ws);
  t.after(() => proxy.close());
  const bob = client({ url: proxy.url, token: token('bob7'), backoff: { minMs: 300, maxMs: 300 } });
  await bob.connect();
  await assert.rejects(bob.send('', 'x', { qos: 1 }), (e) => e instanceof GatewayError && e.code === 'INVALID_ARGUMENT');
  const r = await bob.send('nobody-online', 'x');
  assert.ok(r.msgId, 'a QoS 0 send resolves with its sendResult');
  const gone = waitFor(bob, 'disconnected');
  proxy.cut();
  await gone;
  await assert.rejects(bob.send('bob7', 'x'), (e) => e instanceof GatewayError && e.code === 'DISCONNECTED');
  // A QoS 1 send made while disconnected is held and accepted after the reconnect.
  const held = bob.send('bob7', 'held', { qos: 1 });
  const got = waitFor(bob, 'message', (m) => m.text === 'held');
  assert.ok((await held).msgId);
  await got;
  proxy.close();
});

test('routeUrl: the client asks GET /route before connecting and uses its ws URL', async () => {
  const bob = client({ routeUrl: `${gw.admin}/route`, token: token('bob8') });
  const info = await bob.connect();
  assert.equal(info.url, gw.wsUrl);
  assert.equal(info.user, 'bob8');
});

test('close() stops reconnecting and fails pending sends', async (t) => {
  const proxy = await startProxy(gw.ws);
  t.after(() => proxy.close());
  const bob = client({ url: proxy.url, token: token('bob9') });
  await bob.connect();
  proxy.close(); // nothing listens any more: attempts fail until close()
  await waitFor(bob, 'disconnected', (d) => !d.wasConnected, 5000);
  const pending = bob.send('bob9', 'never', { qos: 1 });
  const last = waitFor(bob, 'disconnected', (d) => d.reconnectInMs === null, 5000);
  bob.close();
  await assert.rejects(pending, (e) => e instanceof GatewayError && e.code === 'CLOSED');
  assert.equal(bob.state, 'closed');
  // Either the attempt in progress reported it, or nothing was connected:
  // in no case is another attempt scheduled.
  const d = await Promise.race([last, new Promise((r) => setImmediate(r, null))]);
  if (d) assert.equal(d.reconnectInMs, null);
});
