// Without a gateway: an injected WebSocket that plays the server, for what
// the real binary no longer does (a gateway without `refresh`) and for the
// exact frames the client writes.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff, GatewayClient } from '../src/index.js';
import { Positions } from '../src/positions.js';
import { SseSocket, sseUrl } from '../src/sse.js';
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

// ---- rooms that keep history: positions, recovery, duplicates, gaps (no server)

/** A room deliver frame (the JSON mapping: uint64 as strings). */
const roomMsg = (/** @type {string} */ room, /** @type {number} */ offset, extra = {}) => ({
  deliver: { msgId: `${room}-${offset}`, room, offset: String(offset), payload: btoa(`${room}#${offset}`), ...extra },
});
const joinedFrame = (/** @type {string} */ room, /** @type {number} */ offset, epoch = 'e1', recovered = false) => ({
  joined: { room, history: true, offset: String(offset), epoch, recovered },
});

test('positions: a room deliver at or below the position is dropped; holes are filled once, in any order', () => {
  const p = new Positions({ r: { offset: 3, epoch: 'e' }, bad: { offset: -1, epoch: 'e' }, worse: /** @type {any} */ (null) });
  assert.deepEqual(p.all(), { r: { offset: 3, epoch: 'e' } }, 'malformed stored positions are ignored');
  assert.equal(p.onDeliver('r', 3), -1);
  assert.equal(p.onDeliver('r', 1), -1);
  assert.equal(p.onDeliver('r', 4), 1);
  // 6 overtakes 5 (a copy from elsewhere): handed over, remembered, the position waits for 5.
  assert.equal(p.onDeliver('r', 6), 0);
  assert.deepEqual(p.get('r'), { offset: 4, epoch: 'e' });
  assert.equal(p.onDeliver('r', 6), -1, 'the same offset again is a duplicate');
  assert.equal(p.onDeliver('r', 5), 1);
  assert.deepEqual(p.get('r'), { offset: 6, epoch: 'e' }, 'the position moves past what came ahead');
  assert.equal(p.onDeliver('r', 6), -1);
  assert.equal(p.onDeliver('other', 1), 0, 'no position for the room: nothing to dedupe on');
  assert.equal(p.onDeliver('r', 0), 0, 'no offset: not deduped');
  assert.deepEqual(p.joinBody('r', 10), { room: 'r', since: { offset: '6', epoch: 'e' } }, '`since` wins over `recent`');
  assert.deepEqual(p.joinBody('new', 10), { room: 'new', recent: 10 });
  assert.deepEqual(p.joinBody('new', 0), { room: 'new' });
});

test('positions: joined and gaps move the position (first join, recent, another epoch, older than history, no history)', () => {
  const p = new Positions();
  // First join: from the room's last offset; with `recent`, that many before it.
  assert.equal(p.onJoined('a', { history: true, offset: 10, epoch: 'e', recovered: false }, { room: 'a' }), true);
  assert.deepEqual(p.get('a'), { offset: 10, epoch: 'e' });
  assert.equal(p.onDeliver('a', 10), -1);
  p.onJoined('b', { history: true, offset: 10, epoch: 'e', recovered: false }, { room: 'b', recent: 3 });
  assert.deepEqual(p.get('b'), { offset: 7, epoch: 'e' });
  // The history may hold fewer than asked: the first message starts the position.
  p.onJoined('c', { history: true, offset: 10, epoch: 'e', recovered: false }, { room: 'c', recent: 50 });
  assert.equal(p.onDeliver('c', 8), 1);
  p.onJoined('d', { history: true, offset: 10, epoch: 'e', recovered: false }, { room: 'd', recent: 5 });
  assert.equal(p.onDeliver('d', 3), -1, 'below what `recent` asked for');
  assert.equal(p.onDeliver('d', 7), 1, '...does not end the loose start');
  assert.deepEqual(p.get('d'), { offset: 7, epoch: 'e' });
  assert.deepEqual(p.get('c'), { offset: 8, epoch: 'e' });
  assert.equal(p.onDeliver('c', 9), 1);
  // Recovered: nothing moves until the messages come.
  assert.equal(p.onJoined('a', { history: true, offset: 12, epoch: 'e', recovered: true }, { room: 'a', since: {} }), false);
  assert.deepEqual(p.get('a'), { offset: 10, epoch: 'e' });
  // Older than the history (same epoch): the gap moves it to firstAvailable - 1.
  assert.equal(p.onJoined('a', { history: true, offset: 300, epoch: 'e', recovered: false }, { room: 'a', since: {} }), false);
  assert.equal(p.onGap('a', 'e', 200), true);
  assert.deepEqual(p.get('a'), { offset: 199, epoch: 'e' });
  assert.equal(p.onDeliver('a', 150), -1);
  assert.equal(p.onDeliver('a', 200), 1);
  // Another epoch: the old offsets mean nothing; the new epoch starts over.
  assert.equal(p.onJoined('a', { history: true, offset: 4, epoch: 'f', recovered: false }, { room: 'a', since: {} }), true);
  assert.deepEqual(p.get('a'), { offset: 0, epoch: 'f' });
  assert.equal(p.onGap('a', 'f', 1), false, 'nothing of the new epoch is missing');
  assert.equal(p.onDeliver('a', 1), 1);
  assert.deepEqual(p.get('a'), { offset: 1, epoch: 'f' });
  // A gap of another epoch than the position's (no joined before it).
  assert.equal(p.onGap('b', 'g', 5), true);
  assert.deepEqual(p.get('b'), { offset: 4, epoch: 'g' });
  // A room that keeps no history has no position.
  assert.equal(p.onJoined('a', { history: false, offset: 0, epoch: '', recovered: false }, { room: 'a', since: {} }), true);
  assert.equal(p.get('a'), null);
  assert.equal(p.onGap('zzz', 'e', 3), false, 'a gap for a room without a position creates none');
  assert.equal(p.get('zzz'), null);
});

/** A fake gateway that answers joins (and auth.rooms) from per-room histories. */
function historyServer(/** @type {Record<string, {epoch: string, first?: number, msgs: number}>} */ rooms) {
  /** @param {any} ws @param {any} j */
  const answer = (ws, j) => {
    const r = rooms[j.room];
    if (!r) return ws.deliver({ joined: { room: j.room } }); // no history
    const first = r.first ?? 1;
    const since = j.since ? { offset: Number(j.since.offset), epoch: j.since.epoch } : null;
    let from = r.msgs + 1;
    let recovered = false;
    /** @type {any} */
    let gap = null;
    if (since) {
      if (since.epoch === r.epoch && since.offset + 1 >= first) {
        recovered = true;
        from = since.offset + 1;
      } else {
        gap = { fromSeq: String(since.epoch === r.epoch ? since.offset + 1 : 1), firstAvailable: String(first), room: j.room, epoch: r.epoch };
        from = first;
      }
    } else if (j.recent) from = Math.max(first, r.msgs - j.recent + 1);
    ws.deliver({ joined: { room: j.room, history: true, offset: String(r.msgs), epoch: r.epoch, recovered } });
    if (gap) ws.deliver({ gap });
    for (let o = from; o <= r.msgs; o++) ws.deliver(roomMsg(j.room, o));
  };
  // Answers come later, as from a socket (never inside send()), in order.
  return fakeWebSocket((ws, f) => {
    if (f.join) setTimeout(() => answer(ws, f.join), 1);
    if (f.leave) setTimeout(() => ws.deliver({ left: { room: f.leave.room } }), 1);
    if (f.auth) setTimeout(() => (f.auth.rooms ?? []).forEach((/** @type {any} */ j) => answer(ws, j)), 5); // after authOk
  });
}

/** Collects what a client hands the app. */
function recorder(/** @type {GatewayClient} */ c) {
  const log = { /** @type {string[]} */ msgs: [], /** @type {any[]} */ joined: [], /** @type {any[]} */ gaps: [], /** @type {any[]} */ positions: [] };
  c.on('message', (m) => log.msgs.push(`${m.room}#${m.offset}`));
  c.on('joined', (e) => log.joined.push(e));
  c.on('gap', (e) => log.gaps.push(e));
  c.on('position', (e) => log.positions.push(e));
  return log;
}

test('re-joins after a reconnect send `since` the position; what came again is dropped; joined carries recovery', async () => {
  const rooms = { r: { epoch: 'e1', msgs: 3 } };
  const { FakeWS, sockets } = historyServer(rooms);
  const c = new GatewayClient({ url: 'ws://fake/ws', token: 't', WebSocket: /** @type {any} */ (FakeWS), backoff: { minMs: 1, maxMs: 1 } });
  const log = recorder(c);
  await c.connect();
  const j = await c.join('r', { recent: 2 });
  assert.deepEqual(sockets[0].sent.find((/** @type {any} */ f) => f.join), { join: { room: 'r', recent: 2 } });
  assert.deepEqual(j, { room: 'r', rejoin: false, history: true, offset: 3, epoch: 'e1', recovered: false });
  await until(() => log.msgs.length === 2, 2000, 'the recent messages');
  assert.deepEqual(log.msgs, ['r#2', 'r#3']);
  assert.deepEqual(c.positions(), { r: { offset: 3, epoch: 'e1' } });
  assert.deepEqual(log.positions.at(-1), { room: 'r', position: { offset: 3, epoch: 'e1' } });

  // Two live ones, then a cut; two more are published meanwhile.
  sockets[0].deliver(roomMsg('r', 4));
  sockets[0].deliver(roomMsg('r', 5));
  sockets[0].deliver(roomMsg('r', 5)); // the server should never; the app never sees it twice
  rooms.r.msgs = 7;
  const back = waitFor(c, 'joined', (e) => e.rejoin, 2000);
  sockets[0].close(1006);
  const rj = await back;
  assert.deepEqual(rj, { room: 'r', rejoin: true, history: true, offset: 7, epoch: 'e1', recovered: true });
  assert.deepEqual(sockets[1].sent.find((/** @type {any} */ f) => f.join), { join: { room: 'r', since: { offset: '5', epoch: 'e1' } } });
  await until(() => log.msgs.length === 6, 2000, 'the missed messages');
  // A copy of an old one (say the inbox's) after the recovery is dropped too.
  sockets[1].deliver(roomMsg('r', 6, { seq: '1', qos: 'QOS_AT_LEAST_ONCE' }));
  sockets[1].deliver(roomMsg('r', 8));
  await until(() => log.msgs.length === 7, 2000, 'the live one');
  assert.deepEqual(log.msgs, ['r#2', 'r#3', 'r#4', 'r#5', 'r#6', 'r#7', 'r#8']);
  assert.equal(c.lastSeq, 1, 'a dropped room copy with a seq is still acked');
  assert.deepEqual(c.position('r'), { offset: 8, epoch: 'e1' });
  assert.deepEqual(log.gaps, []);
  c.close();
});

test('auth frame: rooms (with since, or recent) go in auth.rooms; a restarted client recovers from `positions`', async () => {
  const rooms = { a: { epoch: 'e1', msgs: 9 }, b: { epoch: 'e1', msgs: 4 } };
  const { FakeWS, sockets } = historyServer(rooms);
  const c = new GatewayClient({
    url: 'ws://fake/ws', token: 't', auth: 'frame', device: 'd', WebSocket: /** @type {any} */ (FakeWS),
    rooms: ['a', { room: 'b', recent: 1 }, 'plain'],
    positions: { a: { offset: 6, epoch: 'e1' } },
  });
  const log = recorder(c);
  const joinedAll = Promise.all(['a', 'b', 'plain'].map((r) => waitFor(c, 'joined', (e) => e.room === r, 2000)));
  await c.connect();
  const [ja, jb, jp] = await joinedAll;
  assert.deepEqual(sockets[0].sent[0], {
    auth: { token: 't', device: 'd', rooms: [{ room: 'a', since: { offset: '6', epoch: 'e1' } }, { room: 'b', recent: 1 }, { room: 'plain' }] },
  });
  assert.equal(sockets[0].sent.filter((/** @type {any} */ f) => f.join).length, 0, 'no join frames: the auth frame carried them');
  assert.equal(ja.recovered, true);
  assert.equal(jb.recovered, false);
  assert.deepEqual(jp, { room: 'plain', rejoin: true, history: false, offset: 0, epoch: '', recovered: false });
  await until(() => log.msgs.length === 4, 2000, 'a#7..9 and b#4');
  assert.deepEqual(log.msgs.filter((m) => m.startsWith('a')), ['a#7', 'a#8', 'a#9']);
  assert.deepEqual(log.msgs.filter((m) => m.startsWith('b')), ['b#4']);
  assert.deepEqual(c.positions(), { a: { offset: 9, epoch: 'e1' }, b: { offset: 4, epoch: 'e1' } });
  c.close();
});

test('a position of another epoch, or older than the history: recovered false, a room gap, then what is left', async () => {
  const rooms = { old: { epoch: 'e1', first: 50, msgs: 52 }, moved: { epoch: 'e2', msgs: 2 } };
  const { FakeWS } = historyServer(rooms);
  const c = new GatewayClient({
    url: 'ws://fake/ws', token: 't', WebSocket: /** @type {any} */ (FakeWS),
    positions: { old: { offset: 10, epoch: 'e1' }, moved: { offset: 30, epoch: 'e1' } },
  });
  const log = recorder(c);
  await c.connect();
  const [jo, jm] = await Promise.all([c.join('old'), c.join('moved')]);
  assert.equal(jo.recovered, false);
  assert.equal(jm.recovered, false);
  await until(() => log.msgs.length === 5, 2000, 'what the histories still have');
  assert.deepEqual(log.gaps, [
    { fromSeq: 11, firstAvailable: 50, room: 'old', epoch: 'e1' },
    { fromSeq: 1, firstAvailable: 1, room: 'moved', epoch: 'e2' },
  ]);
  assert.deepEqual(log.msgs.filter((m) => m.startsWith('old')), ['old#50', 'old#51', 'old#52']);
  assert.deepEqual(log.msgs.filter((m) => m.startsWith('moved')), ['moved#1', 'moved#2']);
  assert.deepEqual(c.positions(), { old: { offset: 52, epoch: 'e1' }, moved: { offset: 2, epoch: 'e2' } });
  c.close();
});

test('leave() forgets the position; a join after it starts from the room\'s end, not from the old position', async () => {
  const rooms = { r: { epoch: 'e1', msgs: 5 } };
  const { FakeWS, sockets } = historyServer(rooms);
  const c = new GatewayClient({ url: 'ws://fake/ws', token: 't', WebSocket: /** @type {any} */ (FakeWS), positions: { r: { offset: 2, epoch: 'e1' } } });
  const log = recorder(c);
  await c.connect();
  await c.join('r');
  await until(() => log.msgs.length === 3, 2000, 'r#3..5');
  await c.leave('r');
  assert.deepEqual(log.positions.at(-1), { room: 'r', position: null });
  assert.deepEqual(c.positions(), {});
  rooms.r.msgs = 8;
  const j = await c.join('r');
  assert.deepEqual(sockets[0].sent.filter((/** @type {any} */ f) => f.join).at(-1), { join: { room: 'r' } });
  assert.equal(j.offset, 8);
  assert.deepEqual(c.positions(), { r: { offset: 8, epoch: 'e1' } });
  assert.equal(log.msgs.length, 3);
  c.close();
});

test('the inbox and a room together: a QoS 1 room message without seq (from the history) is not taken for a duplicate', async () => {
  const { FakeWS, sockets } = fakeWebSocket(() => {});
  const c = new GatewayClient({ url: 'ws://fake/ws', token: 't', lastSeq: 9, WebSocket: /** @type {any} */ (FakeWS) });
  const log = recorder(c);
  await c.connect();
  sockets[0].deliver(roomMsg('x', 1, { qos: 'QOS_AT_LEAST_ONCE' }));
  sockets[0].deliver({ gap: { fromSeq: '3', firstAvailable: '7' } });
  assert.deepEqual(log.msgs, ['x#1']);
  assert.deepEqual(log.gaps, [{ fromSeq: 3, firstAvailable: 7, room: '', epoch: '' }]);
  assert.equal(c.lastSeq, 9);
  c.close();
});

// ---- the 'sse' transport (no server): a fake EventSource and fetch

/**
 * A scripted SSE server: each FakeES sends its `session` event, then authOk
 * when the URL has a token; `fetch` records each POST and answers it with
 * `answer(post)` (a status, or undefined to hold it: `post.answer(status)` later).
 */
function fakeSse(/** @type {(post: any, es: any) => number | undefined} */ answer = () => 204) {
  /** @type {any[]} */
  const sources = [];
  /** @type {any[]} */
  const posts = [];
  class FakeES {
    constructor(/** @type {string} */ url) {
      this.url = url;
      this.readyState = 0;
      this.closed = false;
      /** @type {Record<string, Function[]>} */
      this.h = {};
      this.n = sources.push(this);
      setTimeout(() => {
        if (this.closed) return;
        this.readyState = 1;
        this.event('session', { post: `/sse/n/${this.n}/k${this.n}` });
        if (new URL(url).searchParams.get('token')) this.authOk();
      }, 1);
    }
    authOk() {
      this.frame({ authOk: { user: 'u', connId: String(this.n), heartbeatMs: 25000, node: 'n' } });
    }
    addEventListener(/** @type {string} */ t, /** @type {Function} */ f) {
      (this.h[t] ??= []).push(f);
    }
    /** @param {string} type @param {any} body */
    event(type, body) {
      if (!this.closed) for (const f of this.h[type] ?? []) f({ data: typeof body === 'string' ? body : JSON.stringify(body) });
    }
    frame(/** @type {any} */ f) {
      this.event('message', f);
    }
    fail() {
      this.readyState = 0;
      for (const f of this.h.error ?? []) f({});
    }
    close() {
      this.closed = true;
      this.readyState = 2;
    }
  }
  const fetch = (/** @type {string} */ url, /** @type {any} */ init) => {
    const n = Number(/\/sse\/n\/(\d+)\//.exec(url)?.[1]);
    /** @type {any} */
    const post = { url, init, body: init.body, frames: init.body.split('\n').map((/** @type {string} */ l) => JSON.parse(l)), es: sources[n - 1] };
    posts.push(post);
    return new Promise((resolve) => {
      post.answer = (/** @type {number} */ status) => resolve(new Response(status === 204 ? null : `status ${status}`, { status }));
      const s = answer(post, post.es);
      if (s !== undefined) setTimeout(() => post.answer(s), 1);
    });
  };
  return { FakeES, fetch, sources, posts };
}

/** Replace the global fetch for one test. */
function withFetch(/** @type {any} */ t, /** @type {any} */ f) {
  const saved = globalThis.fetch;
  globalThis.fetch = f;
  t.after(() => (globalThis.fetch = saved));
}

class NoWebSocket {
  static made = 0;
  constructor() {
    NoWebSocket.made++;
    throw new Error('blocked');
  }
}

test('sseUrl: same host and port, http(s), the `ws` segment replaced by `sse`, the query kept', () => {
  assert.equal(sseUrl('ws://gw.example/ws'), 'http://gw.example/sse'); // a URL only: nothing listens
  assert.equal(sseUrl('wss://im.example/chat/ws?x=1'), 'https://im.example/chat/sse?x=1');
  assert.equal(sseUrl('ws://h:1/'), 'http://h:1/sse');
  assert.equal(sseUrl('ws://h:1/socket'), 'http://h:1/sse');
});

test('transports: checked; [\'sse\'] alone needs an EventSource (Node has none)', () => {
  const o = { url: 'ws://fake/ws', token: 't' };
  assert.throws(() => new GatewayClient({ ...o, transports: /** @type {any} */ (['polling']) }), TypeError);
  assert.throws(() => new GatewayClient({ ...o, transports: [] }), TypeError);
  assert.throws(() => new GatewayClient({ ...o, transports: ['sse', 'sse'] }), TypeError);
  assert.throws(() => new GatewayClient({ ...o, transports: ['sse'] }), /EventSource/);
  new GatewayClient({ ...o, transports: ['websocket'] }).close();
  new GatewayClient({ ...o, transports: ['sse'], EventSource: /** @type {any} */ (class {}) }).close();
});

test('a WebSocket that cannot be made: SSE + POST instead; `transport` says so; POSTs one at a time, batched', async (t) => {
  /** @type {any[]} */
  const held = [];
  const { FakeES, fetch, sources, posts } = fakeSse((post) => {
    if (post.frames.some((/** @type {any} */ f) => f.send || f.resume)) return void held.push(post);
    return 204;
  });
  withFetch(t, fetch);
  const c = new GatewayClient({ url: 'ws://fake:1/ws', token: 't', lastSeq: 5, WebSocket: /** @type {any} */ (NoWebSocket), EventSource: /** @type {any} */ (FakeES) });
  const tr = waitFor(c, 'transport', () => true, 2000);
  const info = await c.connect();
  assert.deepEqual(await tr, { transport: 'sse', url: 'http://fake:1/sse' });
  assert.equal(c.transport, 'sse');
  assert.equal(info.transport, 'sse');
  assert.equal(info.url, 'ws://fake:1/ws');
  assert.equal(sources[0].url, 'http://fake:1/sse?token=t&last_seq=5');
  // resume and ack, written together after authOk: one POST, a frame per line.
  await until(() => posts.length === 1, 2000, 'the first POST');
  assert.equal(posts[0].url, 'http://fake:1/sse/n/1/k1');
  assert.equal(posts[0].body, '{"resume":{"lastSeq":"5"}}\n{"ack":{"seq":"5"}}');
  assert.deepEqual(posts[0].init.headers, { 'Content-Type': 'text/plain' }, 'a simple request: no other header');
  // While it is unanswered, nothing else goes; what is written meanwhile goes together after it.
  const sends = ['a', 'b', 'c'].map((p) => c.send('bob', p, { qos: 1 }));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(posts.length, 1, 'one POST in flight at a time');
  held.shift().answer(204);
  await until(() => posts.length === 2, 2000, 'the second POST');
  assert.deepEqual(posts[1].frames.map((/** @type {any} */ f) => atob(f.send.payload)), ['a', 'b', 'c']);
  held.shift().answer(204);
  for (const f of posts[1].frames) sources[0].frame({ sendResult: { clientMsgId: f.send.clientMsgId, accepted: true, msgId: `m-${f.send.clientMsgId}` } });
  assert.equal((await Promise.all(sends)).length, 3);
  assert.equal(NoWebSocket.made, 1);
  // The next connection starts with the transport that worked: no WebSocket tried again.
  const back = waitFor(c, 'connected', (i) => i.reconnect, 2000);
  sources[0].fail();
  assert.equal(sources[0].closed, true, 'the SDK closes the EventSource rather than let it retry');
  await back;
  assert.equal(NoWebSocket.made, 1);
  assert.equal(sources.length, 2);
  c.close();
});

test('a WebSocket that errors and closes before open falls back; one that opened and closed does not', async (t) => {
  const { FakeES, fetch, sources } = fakeSse();
  withFetch(t, fetch);
  const { FakeWS, sockets } = fakeWebSocket(() => {});
  /** A WebSocket refused before it opens: error, then close 1006. */
  class RefusedWS {
    constructor() {
      this.readyState = 0;
      /** @type {Record<string, Function[]>} */
      this.h = {};
      setTimeout(() => {
        this.readyState = 3;
        for (const t of ['error', 'close']) for (const f of this.h[t] ?? []) f({ code: 1006, reason: '' });
      }, 1);
    }
    addEventListener(/** @type {string} */ t, /** @type {Function} */ f) {
      (this.h[t] ??= []).push(f);
    }
    send() {}
    close() {}
  }
  let refuse = true;
  let made = 0;
  class SwitchWS {
    constructor(/** @type {string} */ url, /** @type {string} */ p) {
      made++;
      return refuse ? new RefusedWS() : new FakeWS(url, p);
    }
  }
  const opts = { url: 'ws://fake:2/ws', token: 't', WebSocket: /** @type {any} */ (SwitchWS), EventSource: /** @type {any} */ (FakeES), backoff: { minMs: 1, maxMs: 1 } };
  const c = new GatewayClient(opts);
  /** @type {string[]} */
  const used = [];
  c.on('transport', (e) => used.push(e.transport));
  /** @type {any[]} */
  const downs = [];
  c.on('disconnected', (e) => downs.push(e));
  await c.connect();
  assert.deepEqual(used, ['sse']);
  assert.equal(made, 1);
  assert.equal(sources.length, 1);
  assert.deepEqual(downs, [], 'a fallback is not a disconnection');
  c.close();

  // The WebSocket works: it is used, and a drop after open reconnects over it again.
  refuse = false;
  const d = new GatewayClient(opts);
  /** @type {string[]} */
  const used2 = [];
  d.on('transport', (e) => used2.push(e.transport));
  await d.connect();
  const back = waitFor(d, 'connected', (i) => i.reconnect, 2000);
  sockets[0].close(1006);
  await back;
  assert.deepEqual(used2, ['websocket', 'websocket']);
  assert.equal(d.transport, 'websocket');
  assert.equal(sources.length, 1, 'no SSE while the WebSocket works');
  d.close();
});

test("transports ['websocket']: no fallback; ['sse']: no WebSocket; auth: 'frame' POSTs the auth frame first", async (t) => {
  const { FakeES, fetch, sources, posts } = fakeSse((post, es) => {
    if (post.frames[0].auth) setTimeout(() => es.authOk(), 1);
    return 204;
  });
  withFetch(t, fetch);
  NoWebSocket.made = 0;
  const c = new GatewayClient({ url: 'ws://fake:3/ws', token: 't', transports: ['websocket'], WebSocket: /** @type {any} */ (NoWebSocket), EventSource: /** @type {any} */ (FakeES) });
  const failed = waitFor(c, 'disconnected', () => true, 2000);
  void c.connect();
  const down = await failed;
  assert.match(down.reason, /blocked/);
  assert.equal(sources.length, 0);
  c.close();

  const d = new GatewayClient({
    url: 'ws://fake:3/ws', token: 't', auth: 'frame', device: 'dev', lastSeq: 3, rooms: ['r'], transports: ['sse'],
    WebSocket: /** @type {any} */ (NoWebSocket), EventSource: /** @type {any} */ (FakeES),
  });
  await d.connect();
  assert.equal(NoWebSocket.made, 1, 'the WebSocket is not tried');
  assert.equal(sources[0].url, 'http://fake:3/sse', 'no token in the URL');
  assert.deepEqual(posts[0].frames[0], { auth: { token: 't', device: 'dev', lastSeq: '3', rooms: [{ room: 'r' }] } });
  d.close();
});

test('a POST answered 404 (the session is gone): the stream is closed and the client reconnects with last_seq', async (t) => {
  let refuse = false;
  const { FakeES, fetch, sources } = fakeSse(() => (refuse ? 404 : 204));
  withFetch(t, fetch);
  const c = new GatewayClient({ url: 'ws://fake:4/ws', token: 't', transports: ['sse'], EventSource: /** @type {any} */ (FakeES), backoff: { minMs: 1, maxMs: 1 }, ackDelayMs: 1 });
  await c.connect();
  refuse = true;
  const down = waitFor(c, 'disconnected', () => true, 2000);
  const back = waitFor(c, 'connected', (i) => i.reconnect, 2000);
  sources[0].frame({ deliver: { seq: '7', msgId: 'm7', qos: 'QOS_AT_LEAST_ONCE', payload: btoa('x') } }); // its ack is refused
  const d = await down;
  assert.match(d.reason, /POST answered 404/);
  assert.equal(d.wasConnected, true);
  assert.equal(sources[0].closed, true);
  refuse = false;
  await back;
  assert.equal(sources[1].url, 'http://fake:4/sse?token=t&last_seq=7');
  c.close();
});

test('SseSocket: a batch answered 413 goes again one frame per POST, in order; one frame answered 413 closes 1009', async () => {
  /** @type {any[]} */
  const seen = [];
  const { FakeES, fetch, posts } = fakeSse((post) => {
    seen.push(post.body);
    return post.frames.length > 1 || post.frames[0].big ? 413 : 204;
  });
  const s = new SseSocket('http://fake:5/sse', { EventSource: /** @type {any} */ (FakeES), fetch });
  await new Promise((r) => s.addEventListener('open', r));
  for (const n of [1, 2, 3]) s.send(JSON.stringify({ n }));
  await until(() => posts.length === 4, 2000, 'the batch, then one per frame');
  assert.deepEqual(seen, ['{"n":1}\n{"n":2}\n{"n":3}', '{"n":1}', '{"n":2}', '{"n":3}']);
  const closed = new Promise((r) => s.addEventListener('close', r));
  s.send(JSON.stringify({ big: true }));
  assert.equal(/** @type {any} */ (await closed).code, 1009);
  assert.equal(s.readyState, 3);
});

test('SseSocket: close(1000) lets the POST in flight and what is queued through, then ends the stream', async () => {
  const { FakeES, fetch, sources, posts } = fakeSse(() => undefined);
  const s = new SseSocket('http://fake:6/sse', { EventSource: /** @type {any} */ (FakeES), fetch });
  await new Promise((r) => s.addEventListener('open', r));
  s.send('{"a":1}');
  await until(() => posts.length === 1, 2000, 'the first POST');
  s.send('{"ack":{"seq":"9"}}');
  s.close(1000, 'bye');
  assert.equal(sources[0].closed, false, 'not before the queue is through');
  posts[0].answer(204);
  await until(() => posts.length === 2, 2000, 'the queued frame');
  assert.equal(posts[1].body, '{"ack":{"seq":"9"}}');
  const closed = new Promise((r) => s.addEventListener('close', r));
  posts[1].answer(204);
  assert.deepEqual(await closed, { code: 1000, reason: 'bye', wasClean: true });
  assert.equal(sources[0].closed, true);
});
