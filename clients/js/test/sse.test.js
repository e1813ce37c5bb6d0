// The 'sse' transport (an EventSource down, POSTs up) against the real
// gateway. Node has no EventSource: test/eventsource.js is a small one over
// node:http, passed as the `EventSource` option.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { GatewayClient } from '../src/index.js';
import { NodeEventSource } from './eventsource.js';
import { admin, clientFactory, deadline, startGateway, startProxy, token, until, waitFor } from './helpers.js';

/** @type {import('./helpers.js').Gateway} */
let gw;
const client = clientFactory();
/** A client over SSE only. @param {import('../src/types.js').ClientOptions} o */
const sseClient = (o) => client({ transports: ['sse'], EventSource: NodeEventSource, ...o });
/** The EventSource of a client's live connection: the newest one not closed. */
const liveSource = () => NodeEventSource.instances.filter((es) => es.readyState !== NodeEventSource.CLOSED).at(-1);

before(async () => {
  gw = await startGateway();
});
after(async () => {
  client.closeAll();
  await gw.stop();
  // The SDK reconnects by itself: no EventSource ever retried on its own.
  const retried = NodeEventSource.instances.filter((es) => es.requests > 1);
  assert.deepEqual(retried.map((es) => es.url), [], 'EventSources that retried by themselves');
});

test('connects over SSE: `transport` says sse, authOk comes with the token in the query', async (t) => {
  const bob = sseClient({ url: gw.wsUrl, token: token('sse-bob1') });
  const tr = waitFor(bob, 'transport');
  const info = await bob.connect();
  assert.deepEqual(await tr, { transport: 'sse', url: `http://${gw.ws}/sse` });
  assert.equal(bob.transport, 'sse');
  assert.equal(info.transport, 'sse');
  assert.equal(info.user, 'sse-bob1');
  assert.equal(info.url, gw.wsUrl);
  const es = /** @type {NodeEventSource} */ (liveSource());
  assert.equal(new URL(es.url).pathname, '/sse');
  assert.ok(new URL(es.url).searchParams.get('token'), 'the token in ?token=');
  const presence = await admin(gw, 'GET', '/presence/sse-bob1');
  t.diagnostic(`presence: ${JSON.stringify(presence.connections)}`);
  assert.equal(presence.connections.length, 1);
  assert.equal(presence.connections[0].transport, 'sse', 'the gateway sees an SSE session');
  // A round trip through POST and the stream: a QoS 0 send to oneself.
  const got = waitFor(bob, 'message', (m) => m.text === 'to myself');
  assert.ok((await bob.send('sse-bob1', 'to myself')).msgId);
  assert.equal((await got).from, 'sse-bob1');
});

test('a room shared by a WebSocket client and an SSE client: messages both ways', async () => {
  const alice = client({ url: gw.wsUrl, token: token('sse-alice2'), transports: ['websocket'] });
  const bob = sseClient({ url: gw.wsUrl, token: token('sse-bob2') });
  await Promise.all([alice.connect(), bob.connect()]);
  assert.equal(alice.transport, 'websocket');
  assert.equal(bob.transport, 'sse');
  await Promise.all([alice.join('sse-room2'), bob.join('sse-room2')]);
  // `joined` comes before the room's owner shard has the member: wait for both.
  await until(async () => (await admin(gw, 'GET', '/rooms/sse-room2')).members === 2, 5000, 'two members');

  const toBob = waitFor(bob, 'message', (m) => m.text === 'hello from a websocket');
  await alice.send({ room: 'sse-room2' }, 'hello from a websocket', { qos: 1 });
  const m1 = await toBob;
  assert.equal(m1.from, 'sse-alice2');
  assert.equal(m1.room, 'sse-room2');

  const toAlice = waitFor(alice, 'message', (m) => m.text === 'hello from sse');
  const echo = waitFor(bob, 'message', (m) => m.text === 'hello from sse');
  await bob.send({ room: 'sse-room2' }, 'hello from sse', { qos: 1 });
  const m2 = await toAlice;
  assert.equal(m2.from, 'sse-bob2');
  assert.equal(m2.room, 'sse-room2');
  await echo; // the sender is a member too

  // Direct messages too, both ways.
  const dm = waitFor(alice, 'message', (m) => m.text === 'direct');
  await bob.send('sse-alice2', 'direct', { qos: 1 });
  assert.equal((await dm).from, 'sse-bob2');
  const dm2 = waitFor(bob, 'message', (m) => m.text === 'direct back');
  await alice.send('sse-bob2', 'direct back');
  assert.equal((await dm2).from, 'sse-alice2');
});

test('QoS 1 over SSE: acked (a new client of the same device gets nothing again); what came while cut arrives after the reconnect', async (t) => {
  const proxy = await startProxy(gw.ws);
  t.after(() => proxy.close());
  const bobToken = () => token('sse-bob3', { device: 'phone' });
  const alice = client({ url: gw.wsUrl, token: token('sse-alice3') });
  const bob = sseClient({ url: proxy.url, getToken: bobToken });
  await Promise.all([alice.connect(), bob.connect()]);
  /** @type {string[]} */
  const got = [];
  bob.on('message', (m) => got.push(m.text));
  for (const text of ['one', 'two', 'three']) await alice.send('sse-bob3', text, { qos: 1 });
  await until(() => got.length === 3, 5000, 'three messages');
  await until(() => bob.stats.acksSent > 0 && bob.lastSeq === 3, 5000, 'the ack of seq 3 written');
  // POSTs are answered in order: once a later frame's answer is back, the ack was taken.
  await bob.send('nobody-sse3', 'sync');

  // Cut (and refuse connections for a while): a message stored meanwhile comes after the reconnect.
  const gone = waitFor(bob, 'disconnected');
  proxy.hold();
  proxy.cut();
  assert.ok((await gone).wasConnected);
  await alice.send('sse-bob3', 'while away', { qos: 1 });
  const back = waitFor(bob, 'connected', (i) => i.reconnect);
  proxy.release();
  const info = await back;
  assert.equal(info.transport, 'sse');
  const es = /** @type {NodeEventSource} */ (liveSource());
  assert.equal(new URL(es.url).searchParams.get('last_seq'), '3', 'the reconnect says last_seq');
  await until(() => got.length === 4, 5000, 'the message sent while away');
  await alice.send('sse-bob3', 'after', { qos: 1 });
  await until(() => got.length === 5, 5000, 'the sentinel');
  assert.deepEqual(got, ['one', 'two', 'three', 'while away', 'after']);
  assert.equal(bob.stats.duplicates, 0);
  await until(() => bob.lastSeq === 5 && bob.stats.acksSent >= 2, 5000, 'the ack of seq 5 written');
  await bob.send('nobody-sse3', 'sync');
  bob.close();
  await until(async () => (await admin(gw, 'GET', '/presence/sse-bob3')).connections.length === 0, 5000, 'bob gone');

  // A fresh client of the same user and device, with nothing stored (lastSeq 0):
  // the gateway replays what is not acked, and everything was.
  await alice.send('sse-bob3', 'fresh', { qos: 1 });
  const again = sseClient({ url: gw.wsUrl, getToken: bobToken });
  /** @type {string[]} */
  const got2 = [];
  again.on('message', (m) => got2.push(m.text));
  await again.connect();
  await alice.send('sse-bob3', 'last', { qos: 1 });
  await until(() => got2.includes('last'), 5000, 'the last message');
  assert.deepEqual(got2, ['fresh', 'last'], 'nothing acked over SSE came again');
  proxy.close();
});

test('a POST answered 404 (the server closed the session unseen): the client reconnects and its send goes through', async () => {
  const bob = sseClient({ url: gw.wsUrl, token: token('sse-bob4') });
  await bob.connect();
  const first = /** @type {NodeEventSource} */ (liveSource());
  // The stream goes deaf (as behind a proxy that kept the client's side open):
  // the kick's go-away and the stream's end never reach the client.
  first.mute();
  assert.deepEqual(await admin(gw, 'POST', '/kick/sse-bob4'), { kicked: 1 });
  await until(async () => (await admin(gw, 'GET', '/presence/sse-bob4')).connections.length === 0, 5000, 'the session closed');

  const down = waitFor(bob, 'disconnected');
  const back = waitFor(bob, 'connected', (i) => i.reconnect);
  const got = waitFor(bob, 'message', (m) => m.text === 'through');
  const sent = bob.send('sse-bob4', 'through', { qos: 1 });
  const d = await down;
  assert.match(d.reason, /POST answered 404/);
  assert.equal(d.wasConnected, true);
  assert.equal(first.readyState, NodeEventSource.CLOSED, 'the old stream is closed');
  await back;
  assert.ok((await deadline(sent, 5000, 'the send')).msgId);
  await got;
  assert.notEqual(liveSource(), first);
});

test('SSE frames over the frame limit together are POSTed again one per request (413), all accepted', async (t) => {
  const small = await startGateway(['--max-frame-bytes', '1024']);
  t.after(() => small.stop());
  // The answers to the POSTs, as the SDK's fetch sees them.
  /** @type {number[]} */
  const answers = [];
  const fetch0 = globalThis.fetch;
  globalThis.fetch = async (url, init) => {
    const res = await fetch0(url, init);
    if (init?.method === 'POST') answers.push(res.status);
    return res;
  };
  t.after(() => (globalThis.fetch = fetch0));
  const alice = sseClient({ url: small.wsUrl, token: token('sse-alice5') });
  const bob = client({ url: small.wsUrl, token: token('sse-bob5') });
  await Promise.all([alice.connect(), bob.connect()]);
  /** @type {string[]} */
  const got = [];
  bob.on('message', (m) => got.push(m.text));
  // Written at once: one POST body of ~3 KiB, each frame well under 1 KiB.
  const texts = Array.from({ length: 10 }, (_, i) => `${i} ${'x'.repeat(200)}`);
  const results = await deadline(Promise.all(texts.map((s) => alice.send('sse-bob5', s, { qos: 1 }))), 10_000, 'sends');
  assert.equal(new Set(results.map((r) => r.msgId)).size, 10);
  await until(() => got.length === 10, 5000, 'ten messages');
  assert.deepEqual(got, texts);
  assert.equal(alice.stats.reconnects, 0, 'no reconnect: the 413 was of the batch, not of a frame');
  assert.ok(answers.includes(413), `a batch was refused: ${answers}`);
  assert.ok(answers.slice(answers.indexOf(413) + 1).length >= 10 && answers.filter((s) => s !== 413 && s !== 204).length === 0, `then one POST per frame: ${answers}`);
});

test('heartbeats go up in POSTs: an idle SSE session outlives several heartbeat timeouts', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sse-hb-'));
  const conf = path.join(dir, 'gateway.toml');
  fs.writeFileSync(conf, '[limits]\nheartbeat_interval_ms = 300\nheartbeat_timeout_ms = 900\n');
  const quick = await startGateway(['--config', conf]);
  t.after(async () => {
    await quick.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const bob = sseClient({ url: quick.wsUrl, token: token('sse-bob6') });
  /** @type {any[]} */
  const downs = [];
  bob.on('disconnected', (d) => downs.push(d));
  const info = await bob.connect();
  assert.equal(info.heartbeatMs, 300);
  await new Promise((r) => setTimeout(r, 3000));
  assert.deepEqual(downs, [], 'not closed for silence');
  assert.equal(bob.state, 'connected');
  const got = waitFor(bob, 'message', (m) => m.text === 'still here');
  await bob.send('sse-bob6', 'still here');
  await got;
});

test('default transports in Node with an EventSource: a refused WebSocket falls back to SSE', async (t) => {
  /** A WebSocket that cannot be made (as one a proxy blocks). */
  class Blocked {
    constructor() {
      throw new Error('blocked');
    }
  }
  const bob = client({ url: gw.wsUrl, token: token('sse-bob7'), WebSocket: /** @type {any} */ (Blocked), EventSource: NodeEventSource });
  const tr = waitFor(bob, 'transport');
  await bob.connect();
  assert.equal((await tr).transport, 'sse');
  // And without an EventSource (Node), the default is the WebSocket alone: no fallback to try.
  const plain = new GatewayClient({ url: gw.wsUrl, token: token('sse-bob7b'), WebSocket: /** @type {any} */ (Blocked), backoff: { minMs: 50, maxMs: 50 } });
  t.after(() => plain.close());
  const down = waitFor(plain, 'disconnected');
  void plain.connect();
  assert.match((await down).reason, /blocked/);
});
