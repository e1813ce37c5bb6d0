// QoS 1 end to end against the real gateway: the app sees every message
// exactly once, in order, while connections are cut mid-stream.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { clientFactory, deadline, startGateway, startProxy, token, until, waitFor } from './helpers.js';

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

test('500 QoS 1 messages, receiver cut several times mid-stream: each delivered to the app once, in order', async (t) => {
  const proxy = await startProxy(gw.ws);
  t.after(() => proxy.close());
  const bob = client({ url: proxy.url, token: token('bob1') });
  const alice = client({ url: gw.wsUrl, token: token('alice1') });
  await Promise.all([bob.connect(), alice.connect()]);

  const N = 500;
  // Cut once per connection, at the first message past each mark. How many
  // marks land mid-stream is luck: frames the reset socket had already read
  // still arrive and count, and can carry the count past the next mark, or
  // to the end of the stream. The first always lands (nothing is cut before
  // the 60th message, which comes on a live connection).
  const marks = [60, 170, 290, 410];
  let next = 0;
  let cutThisConn = false;
  /** @type {string[]} */
  const got = [];
  let connects = 0;
  bob.on('connected', () => (connects++, (cutThisConn = false)));
  bob.on('message', (m) => {
    got.push(m.text);
    if (!cutThisConn && next < marks.length && got.length >= marks[next] && got.length < N) {
      next++;
      cutThisConn = true;
      proxy.cut();
    }
  });

  const t0 = performance.now();
  const sends = [];
  for (let i = 0; i < N; i++) sends.push(alice.send('bob1', String(i), { qos: 1 }));
  const results = await deadline(Promise.all(sends), 30_000, 'all sends accepted');
  await until(() => got.length >= N, 30_000, `${N} messages (have ${got.length})`);
  // A sentinel after the stream: anything still to come (a duplicate) would be before it.
  await alice.send('bob1', 'end', { qos: 1 });
  await until(() => got.at(-1) === 'end', 10_000, 'the sentinel');

  assert.deepEqual(got, [...Array.from({ length: N }, (_, i) => String(i)), 'end']);
  assert.equal(new Set(results.map((r) => r.msgId)).size, N, 'one msgId per send');
  // Each cut that landed reset the live connection and was followed by
  // exactly one reconnect, through the proxy: it saw the first connection
  // and one per cut, no more (the sentinel came on the last one).
  const elapsed = performance.now() - t0;
  const s = bob.stats;
  t.diagnostic(`cuts ${next} of ${marks.length}, receiver: ${JSON.stringify(s)}, proxy connections ${proxy.accepted}, ${Math.round(elapsed)} ms`);
  assert.ok(next >= 1, 'the first cut lands');
  assert.equal(connects, next, 'one reconnect per cut');
  assert.equal(proxy.accepted, 1 + next, 'the proxy saw the first connection and one per cut');
  // Acks are coalesced as the README says: timed ones at least ackDelayMs
  // (50) apart, one sooner per ackEvery (64) new messages, one after each
  // reconnect. The bound holds however slow the run was (+2: the timers'
  // clock counts whole, slightly stale milliseconds); a fast run's is tight.
  const bound = Math.floor(elapsed / 50) + 2 + Math.floor((N + 1) / 64) + connects;
  assert.ok(s.acksSent <= bound, `acks are coalesced (${s.acksSent} acks for ${N + 1} messages, at most ${bound})`);
  assert.equal(bob.lastSeq, N + 1);
  proxy.close();
});

test('QoS 1 sends across sender cuts resolve exactly once each; the receiver gets each once, in order', async (t) => {
  const proxy = await startProxy(gw.ws);
  t.after(() => proxy.close());
  const alice = client({ url: proxy.url, token: token('alice2'), maxInFlight: 16 });
  const bob = client({ url: gw.wsUrl, token: token('bob2') });
  await Promise.all([bob.connect(), alice.connect()]);

  const N = 300;
  /** @type {string[]} */
  const got = [];
  /** @type {string[]} */
  const gotIds = [];
  bob.on('message', (m) => (got.push(m.text), gotIds.push(m.msgId)));
  let cuts = 0;
  alice.on('disconnected', () => cuts++);

  const settled = new Array(N).fill(0);
  /** @type {string[]} */
  const ids = new Array(N);
  let accepted = 0;
  const cutAfter = new Set([40, 120, 200]);
  const sends = [];
  for (let i = 0; i < N; i++) {
    sends.push(
      alice.send({ user: 'bob2' }, String(i), { qos: 1 }).then((r) => {
        settled[i]++;
        ids[i] = r.msgId;
        if (cutAfter.has(++accepted)) proxy.cut();
        return r;
      }),
    );
  }
  const results = await deadline(Promise.all(sends), 30_000, 'all sends accepted');
  await until(() => got.length >= N, 30_000, `${N} messages (have ${got.length})`);
  await alice.send('bob2', 'end', { qos: 1 });
  await until(() => got.at(-1) === 'end', 10_000, 'the sentinel');

  assert.ok(settled.every((n) => n === 1), 'every promise settled once');
  assert.equal(cuts, cutAfter.size);
  assert.ok(results.some((r) => r.attempts > 1), 'some sends were retried after a cut');
  assert.deepEqual(got, [...Array.from({ length: N }, (_, i) => String(i)), 'end']);
  assert.deepEqual(gotIds.slice(0, N), ids, 'a retry got the msgId of the first attempt');
  proxy.close();
});
