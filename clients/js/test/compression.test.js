// permessage-deflate (RFC 7692) between the real gateway and Node's `ws`:
// what each offer is answered with (the raw 101 header and ws.extensions),
// long repetitive messages both ways, byte-exact and in order, between a
// compressing client and one without the extension, RSV1 on the wire (a
// sniffing proxy, and a socket that speaks the handshake and frames by hand),
// and the SDK over ws's default offer.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import { WebSocket } from 'ws';
import { PROTOCOL } from '../src/index.js';
import { admin, clientFactory, deadline, startGateway, token, until, waitFor } from './helpers.js';

/** @type {import('./helpers.js').Gateway} */
let gw;
const client = clientFactory();
/** @type {(() => void)[]} */
const cleanups = [];

before(async () => {
  gw = await startGateway();
});
after(async () => {
  for (const c of cleanups) c();
  client.closeAll();
  await gw.stop();
});

const WITH_BITS = 'permessage-deflate; server_no_context_takeover; client_max_window_bits=9';
const NO_TAKEOVER = 'permessage-deflate; server_no_context_takeover; client_no_context_takeover';
const TAIL = Buffer.from([0, 0, 0xff, 0xff]);
const SYNC = { finishFlush: zlib.constants.Z_SYNC_FLUSH };
/** Messages' compressed payloads, each with its tail put back, as one stream (RFC 7692 7.2.2); each ends
 * with a sync flush, not a final block (zlib's default would call that truncated). @param {Buffer[]} ps */
const inflate = (...ps) => zlib.inflateRawSync(Buffer.concat(ps.flatMap((p) => [p, TAIL])), SYNC);
const inflateRaw = promisify(zlib.inflateRaw);
const b64 = (/** @type {string} */ s) => Buffer.from(s).toString('base64');

/** A chat-like text of about `lines` * 80 bytes, repetitive within and across messages, not only ASCII. */
const chat = (/** @type {number} */ i, lines = 40) =>
  Array.from({ length: lines }, (_, k) => `[${i}:${k}] alice: the quick brown fox jumps over the lazy dog, à bientôt 👋 ${k % 7}\n`).join('');
// Identical ones in a row (the second refers back to the first), a short one sent plain, then others.
const TEXTS = [chat(0), chat(0), chat(0), 'short one', chat(1, 50), chat(2, 25), chat(2, 25)];

/** A `ws` client, authenticated: the frames it got and sent (JSON), the 101's Sec-WebSocket-Extensions (`answered`).
 * @param {string} user @param {import('ws').ClientOptions} opts */
async function connect(user, opts, url = gw.wsUrl) {
  const ws = new WebSocket(`${url}?token=${token(user)}`, PROTOCOL, opts);
  cleanups.push(() => ws.terminate());
  const [got, sent] = [/** @type {Record<string, any>[]} */ ([]), /** @type {string[]} */ ([])];
  let answered = /** @type {string | undefined} */ (undefined);
  ws.on('upgrade', (res) => (answered = res.headers['sec-websocket-extensions']));
  ws.on('message', (d) => got.push(JSON.parse(String(d))));
  await deadline(once(ws, 'open'), 5000, `${user} open`);
  await until(() => got[0]?.authOk, 5000, `${user} authOk`);
  const send = (/** @type {object} */ f) => (sent.push(JSON.stringify(f)), ws.send(sent.at(-1)));
  return { user, ws, got, sent, answered, send };
}
/** @typedef {Awaited<ReturnType<typeof connect>>} Peer */

/** Both join `room`; `a` sends TEXTS to it, then `b` does: each gets the other's, byte-exact, in order. */
async function exchange(/** @type {Peer} */ a, /** @type {Peer} */ b, /** @type {string} */ room) {
  for (const p of [a, b]) {
    p.send({ join: { room } });
    await until(() => p.got.some((f) => f.joined?.room === room), 5000, `${p.user} joined`);
  }
  await until(async () => (await admin(gw, 'GET', `/rooms/${room}`)).members === 2, 5000, 'two members');
  for (const [from, to] of [[a, b], [b, a]]) {
    TEXTS.forEach((t, i) => from.send({ send: { room, payload: b64(t), clientMsgId: `${from.user}-${i}` } }));
    const results = () => from.got.filter((f) => f.sendResult?.clientMsgId?.startsWith(`${from.user}-`));
    await until(() => results().length === TEXTS.length, 10_000, `${from.user}'s send results`);
    assert.ok(results().every((f) => f.sendResult.accepted), JSON.stringify(results()));
    const got = () => to.got.filter((f) => f.deliver?.from === from.user).map((f) => f.deliver);
    await until(() => got().length >= TEXTS.length, 10_000, `${to.user} gets ${from.user}'s messages`);
    assert.ok(got().every((d) => d.room === room));
    assert.deepEqual(got().map((d) => Buffer.from(d.payload, 'base64')), TEXTS.map((t) => Buffer.from(t)));
  }
}

/** @typedef {{fin: boolean, rsv1: boolean, opcode: number, payload: Buffer}} Frame */

/** The WebSocket frames in `buf` (RFC 6455 5.2, masked or not), and the incomplete tail. @param {Buffer} buf */
function parseFrames(buf) {
  /** @type {Frame[]} */
  const frames = [];
  while (buf.length >= 2) {
    let len = buf[1] & 0x7f;
    let off = 2;
    if (len === 126) [len, off] = buf.length < 4 ? [Infinity, 4] : [buf.readUInt16BE(2), 4];
    else if (len === 127) [len, off] = buf.length < 10 ? [Infinity, 10] : [Number(buf.readBigUInt64BE(2)), 10];
    const key = buf[1] & 0x80 ? buf.subarray(off, (off += 4)) : null;
    if (buf.length < off + len) break;
    const payload = Buffer.from(buf.subarray(off, off + len));
    if (key) for (let i = 0; i < len; i++) payload[i] ^= key[i & 3];
    frames.push({ fin: !!(buf[0] & 0x80), rsv1: !!(buf[0] & 0x40), opcode: buf[0] & 0x0f, payload });
    buf = buf.subarray(off + len);
  }
  return { frames, rest: buf };
}

/** What comes in on `sock`, as it comes: an HTTP head (request or 101), then WebSocket frames. */
function reader(/** @type {net.Socket} */ sock) {
  const r = { head: /** @type {string | null} */ (null), frames: /** @type {Frame[]} */ ([]) };
  let buf = Buffer.alloc(0);
  sock.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    if (r.head === null) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      (r.head = String(buf.subarray(0, end))), (buf = buf.subarray(end + 4));
    }
    const p = parseFrames(buf);
    r.frames.push(...p.frames);
    buf = p.rest;
  });
  return r;
}

/** A client frame (masked), RSV1 set when `compressed`. @param {Buffer} payload */
function clientFrame(payload, compressed) {
  const n = payload.length;
  const head = n < 126 ? Buffer.from([0, 0x80 | n]) : Buffer.from([0, 0x80 | 126, n >> 8, n & 0xff]);
  head[0] = 0x81 | (compressed ? 0x40 : 0);
  const key = crypto.randomBytes(4);
  return Buffer.concat([head, key, payload.map((b, i) => b ^ key[i & 3])]);
}

/** A TCP proxy to the gateway that parses the frames of its (one) connection, up (client) and down (server). */
async function startSniffer() {
  const seen = { up: /** @type {Frame[]} */ ([]), down: /** @type {Frame[]} */ ([]) };
  const [host, port] = gw.ws.split(':');
  const srv = net.createServer((a) => {
    const b = net.connect(Number(port), host);
    (seen.up = reader(a).frames), (seen.down = reader(b).frames);
    a.pipe(b).on('error', () => a.destroy());
    b.pipe(a).on('error', () => b.destroy());
    cleanups.push(() => (a.destroy(), b.destroy()));
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  cleanups.push(() => srv.close());
  return { seen, url: `ws://127.0.0.1:${/** @type {net.AddressInfo} */ (srv.address()).port}/ws` };
}

test('ws default offer, threshold 0: client_max_window_bits=9; long messages both ways with a client without the extension, RSV1 on the wire', async () => {
  const sniff = await startSniffer();
  const a = await connect('zip-a1', { perMessageDeflate: { threshold: 0 } }, sniff.url);
  const b = await connect('zip-b1', { perMessageDeflate: false });
  assert.equal(a.answered, WITH_BITS);
  assert.equal(a.ws.extensions, 'permessage-deflate');
  assert.equal(b.answered, undefined);
  assert.equal(b.ws.extensions, '');
  await exchange(a, b, 'zip-1');

  // Up: every text frame compressed, one deflate stream with context kept across messages (some frame
  // does not inflate on its own: it refers back to an earlier message).
  const up = sniff.seen.up.filter((f) => f.opcode === 1);
  assert.equal(up.length, a.sent.length);
  assert.ok(up.every((f) => f.rsv1 && f.fin), 'every client text frame compressed');
  assert.equal(String(inflate(...up.map((f) => f.payload))), a.sent.join(''));
  const alone = await Promise.all(up.map((f) => inflateRaw(Buffer.concat([f.payload, TAIL]), SYNC).then(String, () => null)));
  assert.ok(alone.some((t, i) => t !== a.sent[i]), 'context takeover used');
  // Down: RSV1 exactly on the frames of 128 bytes or more (compression.min_bytes), each inflating on its own.
  const down = sniff.seen.down.filter((f) => f.opcode === 1);
  const texts = down.map((f) => String(f.rsv1 ? inflate(f.payload) : f.payload));
  down.forEach((f, i) => assert.equal(f.rsv1, Buffer.byteLength(texts[i]) >= 128, `RSV1 iff >= 128 bytes: ${texts[i].slice(0, 80)}`));
  const delivered = texts.map((t) => JSON.parse(t).deliver).filter((d) => d?.from === 'zip-b1');
  assert.deepEqual(delivered.map((d) => Buffer.from(d.payload, 'base64').toString()), TEXTS);
  assert.ok(down.filter((f) => f.rsv1).length >= TEXTS.length - 1, 'the long deliveries came compressed');
});

test('clientNoContextTakeover: answered with client_no_context_takeover; messages round trip', async () => {
  const a = await connect('zip-a2', { perMessageDeflate: { clientNoContextTakeover: true, threshold: 0 } });
  const b = await connect('zip-b2', { perMessageDeflate: false });
  assert.equal(a.answered, NO_TAKEOVER);
  assert.equal(a.ws.extensions, 'permessage-deflate');
  await exchange(a, b, 'zip-2');
});

test('serverMaxWindowBits: 10 is declined (no extension), the connection works', async () => {
  const a = await connect('zip-a3', { perMessageDeflate: { serverMaxWindowBits: 10, threshold: 0 } });
  const b = await connect('zip-b3', {});
  assert.equal(a.answered, undefined);
  assert.equal(a.ws.extensions, '');
  assert.equal(b.answered, WITH_BITS);
  await exchange(a, b, 'zip-3');
});

test('the SDK over ws (its default offer): compression negotiated, long messages intact both ways', async () => {
  /** @type {WebSocket[]} */
  const sockets = [];
  class Recording extends WebSocket {
    constructor(/** @type {string} */ url, /** @type {string | string[]} */ protocols) {
      super(url, protocols);
      sockets.push(this);
    }
  }
  const alice = client({ url: gw.wsUrl, token: token('zip-alice4'), WebSocket: /** @type {any} */ (Recording) });
  const bob = client({ url: gw.wsUrl, token: token('zip-bob4'), WebSocket: /** @type {any} */ (Recording) });
  await Promise.all([alice.connect(), bob.connect()]);
  assert.equal(sockets.length, 2);
  for (const s of sockets) assert.equal(s.extensions, 'permessage-deflate');
  const long = chat(4, 60);
  const toBob = waitFor(bob, 'message', (m) => m.from === 'zip-alice4');
  await alice.send('zip-bob4', long, { qos: 1 });
  assert.equal((await toBob).text, long);
  const toAlice = waitFor(alice, 'message', (m) => m.from === 'zip-bob4');
  await bob.send('zip-alice4', long + long, { qos: 0 });
  assert.equal((await toAlice).text, long + long);
});

test('by hand: a long deliver comes with RSV1 and inflates alone; a hand-compressed send is accepted', async () => {
  const [host, port] = gw.ws.split(':');
  const s = net.connect(Number(port), host);
  cleanups.push(() => s.destroy());
  await deadline(once(s, 'connect'), 5000, 'connect');
  const r = reader(s);
  const key = crypto.randomBytes(16).toString('base64');
  s.write(
    `GET /ws?token=${token('zip-raw5')} HTTP/1.1\r\nHost: ${gw.ws}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${PROTOCOL}\r\n` +
      'Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n\r\n',
  );
  const { frames } = r;
  await until(() => frames.length > 0, 5000, 'the 101 and a first frame');
  const head = /** @type {string} */ (r.head);
  assert.match(head, /^HTTP\/1\.1 101 /);
  const header = (/** @type {string} */ name) => new RegExp(`^${name}:\\s*(.*)$`, 'im').exec(head)?.[1];
  assert.equal(header('sec-websocket-extensions'), NO_TAKEOVER);
  assert.equal(header('sec-websocket-protocol'), PROTOCOL);
  const accept = crypto.createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  assert.equal(header('sec-websocket-accept'), accept);
  const text = (/** @type {Frame} */ f) => String(f.rsv1 ? inflate(f.payload) : f.payload);
  assert.ok(JSON.parse(text(frames[0])).authOk);

  const peer = await connect('zip-peer5', { perMessageDeflate: false });
  const long = chat(5);
  peer.send({ send: { user: 'zip-raw5', payload: b64(long), clientMsgId: '1' } });
  await until(() => frames.some((f) => f.opcode === 1 && text(f).includes('"deliver"')), 10_000, 'the deliver');
  const f = /** @type {Frame} */ (frames.find((f) => f.opcode === 1 && text(f).includes('"deliver"')));
  assert.equal(f.rsv1 && f.fin, true, 'RSV1 set on a single long frame');
  assert.ok(f.payload.length < Buffer.byteLength(long) / 2, `compressed: ${f.payload.length} bytes`);
  const d = JSON.parse(String(inflate(f.payload))).deliver;
  assert.equal(d.from, 'zip-peer5');
  assert.equal(Buffer.from(d.payload, 'base64').toString(), long);

  // Back, compressed by hand without context (RFC 7692 7.2.1: the 00 00 ff ff tail dropped).
  const reply = Buffer.from(JSON.stringify({ send: { user: 'zip-peer5', payload: b64(long + '!'), clientMsgId: 'r1' } }));
  const deflated = zlib.deflateRawSync(reply, SYNC);
  s.write(clientFrame(deflated.subarray(0, deflated.length - 4), true));
  await until(() => peer.got.some((g) => g.deliver?.from === 'zip-raw5'), 10_000, 'the hand-compressed message');
  const back = /** @type {Record<string, any>} */ (peer.got.find((g) => g.deliver?.from === 'zip-raw5')).deliver;
  assert.equal(Buffer.from(back.payload, 'base64').toString(), long + '!');
});
