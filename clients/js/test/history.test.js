// Rooms that keep history, against the real gateway (`--room-history`):
// a member cut off gets what was published meanwhile once, in order, before
// the new ones; a restarted client recovers from the positions it stored;
// `recent` on a first join; a position of another epoch is answered
// recovered: false (and the epoch's history), one older than the history
// recovered: false and a room gap; rooms without history behave as before.
//
// The test clients do what the README tells apps to: store `positions()` on
// every `position` event and `lastSeq` with the messages, and pass both back
// when they start again.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { GatewayClient } from '../src/index.js';
import { admin, clientFactory, startGateway, startProxy, token, until, waitFor } from './helpers.js';

/** @type {import('./helpers.js').Gateway} */
let gw;
const client = clientFactory();

before(async () => {
  // Only the rooms named h-*: the others keep working as rooms always did.
  gw = await startGateway(['--room-history', 'h-*']);
});
after(async () => {
  client.closeAll();
  await gw.stop();
});

/**
 * What an app keeps: the room messages it was handed (text and offset, per
 * room, in order), its positions and lastSeq, stored as the README says.
 * @param {GatewayClient} c
 */
function app(c) {
  const s = {
    /** @type {Record<string, {text: string, offset: number}[]>} */
    rooms: {},
    /** @type {Record<string, import('../src/types.js').RoomPosition>} */
    positions: {},
    lastSeq: 0,
    /** @type {import('../src/types.js').GapEvent[]} */
    gaps: [],
    /** @param {string} room */
    texts: (room) => (s.rooms[room] ?? []).map((m) => m.text),
  };
  c.on('message', (m) => {
    if (m.room) (s.rooms[m.room] ??= []).push({ text: m.text, offset: m.offset });
    s.lastSeq = c.lastSeq;
  });
  c.on('position', () => (s.positions = c.positions()));
  c.on('gap', (g) => s.gaps.push(g));
  return s;
}

/** The gateway answers `joined` before the room's owner shard has the member: wait for the count. */
const members = (/** @type {string} */ room, /** @type {number} */ n, gateway = gw) =>
  until(async () => (await admin(gateway, 'GET', `/rooms/${room}`)).members === n, 5000, `${n} member(s) of ${room}`, 20);

/** Sends `texts` to a room one after the other (so their offsets are in that order). */
async function publish(/** @type {GatewayClient} */ from, /** @type {string} */ room, /** @type {string[]} */ texts, qos = /** @type {0|1} */ (1)) {
  for (const t of texts) await from.send({ room }, t, { qos });
}

const range = (/** @type {string} */ p, /** @type {number} */ a, /** @type {number} */ b) => Array.from({ length: b - a }, (_, i) => `${p}${a + i}`);

test('a member cut off: what was published meanwhile arrives after the reconnect once, in order, before the new ones', async (t) => {
  const room = 'h-cut';
  const proxy = await startProxy(gw.ws);
  t.after(() => proxy.close());
  const bob = client({ url: proxy.url, token: token('bob-h1'), rooms: [room] });
  const alice = client({ url: gw.wsUrl, token: token('alice-h1') });
  const bobApp = app(bob);
  const firstJoin = waitFor(bob, 'joined', (e) => e.room === room);
  await Promise.all([bob.connect(), alice.connect()]);
  const j0 = await firstJoin;
  assert.equal(j0.history, true, 'h-* keeps history');
  assert.equal(j0.recovered, false, 'a first join recovers nothing');
  await members(room, 1);

  await publish(alice, room, range('m', 0, 3));
  await until(() => bobApp.texts(room).length === 3, 10_000, 'the first three');
  assert.deepEqual(bob.position(room), { offset: bobApp.rooms[room][2].offset, epoch: j0.epoch });

  // Out of coverage: the connection is reset and no new one gets through.
  const gone = waitFor(bob, 'disconnected');
  proxy.hold();
  proxy.cut();
  await gone;
  // Two right away (the gateway may still count bob a member: they go to a
  // dead socket, QoS 1 ones to his inbox too), three once it knows he left.
  await publish(alice, room, range('m', 3, 5));
  await members(room, 0);
  await publish(alice, room, range('m', 5, 8));

  const back = waitFor(bob, 'joined', (e) => e.room === room && e.rejoin, 15_000);
  proxy.release();
  const rj = await back;
  assert.equal(rj.recovered, true, `recovered from ${JSON.stringify(bobApp.positions)}: ${JSON.stringify(rj)}`);
  assert.equal(rj.epoch, j0.epoch);
  await until(() => bobApp.texts(room).length >= 8, 10_000, `the missed ones (have ${bobApp.texts(room)})`);
  await members(room, 1);
  await publish(alice, room, ['after']);
  await until(() => bobApp.texts(room).includes('after'), 10_000, 'the new one');

  assert.deepEqual(bobApp.texts(room), [...range('m', 0, 8), 'after']);
  const offsets = bobApp.rooms[room].map((m) => m.offset);
  assert.deepEqual(offsets, offsets.map((_, i) => offsets[0] + i), 'consecutive offsets');
  assert.deepEqual(bob.position(room), { offset: offsets.at(-1), epoch: j0.epoch });
  assert.deepEqual(bobApp.gaps, []);
  proxy.close();
});

for (const auth of /** @type {const} */ (['query', 'frame'])) {
  test(`a restarted client (auth: '${auth}') recovers from the positions it stored: what it missed, once, in order`, async () => {
    const room = `h-reload-${auth}`;
    const alice = client({ url: gw.wsUrl, token: token(`alice-h2${auth}`) });
    await alice.connect();
    const bob1 = client({ url: gw.wsUrl, token: token(`bob-h2${auth}`), auth, rooms: [room] });
    const first = app(bob1);
    const j0 = waitFor(bob1, 'joined', (e) => e.room === room);
    await bob1.connect();
    const joined0 = await j0;
    await members(room, 1);
    await publish(alice, room, range('r', 0, 3));
    await until(() => first.texts(room).length === 3, 10_000, 'the first three');
    bob1.close(); // the page is closed, its storage kept
    const stored = structuredClone({ positions: first.positions, lastSeq: first.lastSeq });
    assert.deepEqual(stored.positions[room], { offset: first.rooms[room][2].offset, epoch: joined0.epoch });

    await members(room, 0);
    await publish(alice, room, range('r', 3, 7), 0);

    const bob2 = client({ url: gw.wsUrl, token: token(`bob-h2${auth}`), auth, rooms: [room], ...stored });
    const second = app(bob2);
    const j1 = waitFor(bob2, 'joined', (e) => e.room === room);
    await bob2.connect();
    const joined1 = await j1;
    assert.equal(joined1.recovered, true, JSON.stringify(joined1));
    await until(() => second.texts(room).length >= 4, 10_000, `the missed ones (have ${second.texts(room)})`);
    await members(room, 1);
    await publish(alice, room, ['live']);
    await until(() => second.texts(room).includes('live'), 10_000, 'the live one');
    assert.deepEqual(second.texts(room), [...range('r', 3, 7), 'live']);
    assert.equal(second.rooms[room][0].offset, stored.positions[room].offset + 1);
    assert.deepEqual(second.gaps, []);
  });
}

test('recent on a first join: the room\'s last N messages, in order, then the live ones', async () => {
  const room = 'h-recent';
  const alice = client({ url: gw.wsUrl, token: token('alice-h3') });
  await alice.connect();
  await publish(alice, room, range('p', 0, 6), 0);
  const carol = client({ url: gw.wsUrl, token: token('carol-h3') });
  const c = app(carol);
  await carol.connect();
  const j = await carol.join(room, { recent: 3 });
  assert.equal(j.history, true);
  assert.equal(j.recovered, false);
  await until(() => c.texts(room).length >= 3, 10_000, 'the recent three');
  await members(room, 1);
  await publish(alice, room, ['live'], 0);
  await until(() => c.texts(room).includes('live'), 10_000, 'the live one');
  assert.deepEqual(c.texts(room), ['p3', 'p4', 'p5', 'live']);
  assert.deepEqual(c.rooms[room].map((m) => m.offset), [j.offset - 2, j.offset - 1, j.offset, j.offset + 1]);
  assert.deepEqual(carol.position(room), { offset: j.offset + 1, epoch: j.epoch });
});

test('a position of another epoch: recovered false, then everything the history of this epoch holds, in order', async () => {
  const room = 'h-epoch';
  const alice = client({ url: gw.wsUrl, token: token('alice-h4') });
  await alice.connect();
  await publish(alice, room, range('q', 0, 4), 0);
  const bob = client({ url: gw.wsUrl, token: token('bob-h4'), positions: { [room]: { offset: 2, epoch: 'an-epoch-of-another-life' } } });
  const b = app(bob);
  /** @type {string[]} */
  const order = [];
  bob.on('gap', (g) => g.room === room && order.push('gap'));
  bob.on('message', (m) => m.room === room && order.push(m.text));
  await bob.connect();
  const j = await bob.join(room);
  assert.equal(j.history, true);
  // recovered: false is what says the old life's messages after the
  // position are lost; offsets of this epoch are all still held (from 1),
  // so no gap of this epoch comes.
  assert.equal(j.recovered, false, JSON.stringify(j));
  assert.notEqual(j.epoch, 'an-epoch-of-another-life');
  await until(() => bob.position(room)?.offset === j.offset, 10_000, `position ${JSON.stringify(bob.position(room))}`);
  assert.deepEqual(order, ['q0', 'q1', 'q2', 'q3']);
  assert.equal(b.gaps.length, 0);
  const got = b.rooms[room] ?? [];
  assert.deepEqual(got.map((m) => m.offset), [1, 2, 3, 4], 'the whole epoch, in order');
  assert.deepEqual(bob.position(room), { offset: j.offset, epoch: j.epoch });
});

test('a position older than the history: recovered false, a room gap from it, then what is left, in order', async (t) => {
  const small = await startGateway(['--room-history', '*', '--room-history-size', '3']);
  t.after(() => small.stop());
  const room = 'h-old';
  const alice = client({ url: small.wsUrl, token: token('alice-h5') });
  await alice.connect();
  const jA = await alice.join(room); // for the epoch
  await publish(alice, room, range('o', 0, 10), 0);
  const bob = client({ url: small.wsUrl, token: token('bob-h5'), positions: { [room]: { offset: jA.offset + 2, epoch: jA.epoch } } });
  const b = app(bob);
  await bob.connect();
  const j = await bob.join(room);
  assert.equal(j.recovered, false, JSON.stringify(j));
  assert.equal(j.epoch, jA.epoch);
  const last = jA.offset + 10;
  assert.equal(j.offset, last);
  await until(() => bob.position(room)?.offset === last && b.gaps.length > 0, 10_000, `position ${JSON.stringify(bob.position(room))}`);
  assert.deepEqual(b.gaps.map((g) => [g.room, g.epoch, g.fromSeq]), [[room, j.epoch, jA.offset + 3]]);
  const first = b.gaps[0].firstAvailable;
  assert.ok(first > jA.offset + 3 && first <= last - 2, `firstAvailable ${first}: the history keeps the last 3 of ${last}`);
  assert.deepEqual(b.texts(room), range('o', first - jA.offset - 1, 10));
  // A position inside the history recovers.
  const carol = client({ url: small.wsUrl, token: token('carol-h5'), positions: { [room]: { offset: last - 1, epoch: j.epoch } } });
  const c = app(carol);
  await carol.connect();
  const jc = await carol.join(room);
  assert.equal(jc.recovered, true);
  await until(() => c.texts(room).length === 1, 10_000, 'the last one');
  assert.deepEqual(c.texts(room), ['o9']);
  assert.deepEqual(c.gaps, []);
});

test('a room without history: joined says so, messages carry no offset, no position is kept, re-joins carry no since', async (t) => {
  const room = 'plain-room';
  const proxy = await startProxy(gw.ws);
  t.after(() => proxy.close());
  const bob = client({ url: proxy.url, token: token('bob-h6'), rooms: [room] });
  const alice = client({ url: gw.wsUrl, token: token('alice-h6') });
  const b = app(bob);
  const firstJoin = waitFor(bob, 'joined', (e) => e.room === room);
  await Promise.all([bob.connect(), alice.connect()]);
  const j = await firstJoin;
  assert.deepEqual({ history: j.history, offset: j.offset, recovered: j.recovered }, { history: false, offset: 0, recovered: false });
  await members(room, 1);
  await publish(alice, room, ['x']);
  await until(() => b.texts(room).length === 1, 10_000, 'x');
  assert.equal(b.rooms[room][0].offset, 0);
  assert.deepEqual(bob.positions(), {});

  const rejoined = waitFor(bob, 'joined', (e) => e.room === room && e.rejoin);
  proxy.cut();
  assert.equal((await rejoined).history, false);
  await members(room, 1);
  await publish(alice, room, ['y']);
  await until(() => b.texts(room).includes('y'), 10_000, 'y');
  assert.deepEqual(b.texts(room), ['x', 'y']);
  assert.deepEqual(bob.positions(), {});
  proxy.close();
});
