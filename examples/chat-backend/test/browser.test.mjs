// The chat example in headless Chromium: redis-server, the gateway (debug
// build, rooms keeping history) and the backend on free loopback ports; two
// users sign in in two browser contexts, join a room, one writes, the other
// sees it live and, after a reload, from what the page kept; one page goes
// away while the other writes, and comes back to what it missed (recovered
// by the gateway, not the backend); a third user's first visit shows the
// room's recent history; the gateway restarts and they go on.
// Screenshots: target/chat-backend-test/.
//
//   node --test examples/chat-backend/test/browser.test.mjs   (scripts/test-browser.sh installs what it needs)
// Env: GATEWAY_BIN (default target/debug/gateway), CHROMIUM (/usr/bin/chromium),
//      REDIS_SERVER (redis-server), PYTHON (python3), KEEP_LOGS=1.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { freePort, scene, start, stop } from './harness.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const EXAMPLE = resolve(HERE, '..');
const REPO = resolve(EXAMPLE, '../..');
const SECRET = 'browser-test-secret';
const WAIT = 15_000; // every wait on the page has this deadline; nothing sleeps
const SHOT_DIR = join(REPO, 'target', 'chat-backend-test');
// The backend's rooms (its --rooms default): the gateway keeps their history.
const ROOMS = 'lobby,general,random';

/**
 * redis-server, the gateway and the backend on free loopback ports, and
 * Chromium; all stopped when `t` ends (their logs printed unless `ok()` was
 * called). `open(user, {blockWebSocket})` signs a user in, in a browser
 * context of its own; with blockWebSocket every page of that context has a
 * `WebSocket` that cannot be made (as behind a proxy that refuses upgrades).
 */
async function stack(t) {
  const sc = scene(t, 'chat-browser-');
  const { dir, procs } = sc;
  const redisUrl = await sc.redis();

  // A fixed WebSocket port, so that a restarted gateway is where the pages reconnect.
  const wsAddr = `127.0.0.1:${await freePort()}`;
  const startGateway = async (name) => {
    const gw = await start(name, process.env.GATEWAY_BIN ?? join(REPO, 'target/debug/gateway'),
      ['--redis', redisUrl, '--events', '--jwt-secret', SECRET, '--room-history', ROOMS,
        '--ws-listen', wsAddr, '--tcp-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'],
      { dir, ready: /^ready ws=(\S+) tcp=\S+ admin=\S+/ });
    procs.push(gw);
    return gw;
  };
  const gw = await startGateway('gateway');
  const wsUrl = `ws://${wsAddr}/ws`;

  const be = await start('backend', process.env.PYTHON ?? 'python3',
    [join(EXAMPLE, 'backend.py'), '--redis', redisUrl, '--jwt-secret', SECRET, '--port', '0',
      '--gateway-ws', wsUrl, '--db', join(dir, 'chat.db')],
    { dir, ready: /^ready http=(\S+)/ });
  procs.push(be);
  const site = `http://${be.match[1]}/`;

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  sc.browser = browser;
  const pageErrors = [];
  // Set while the gateway is down for a restart (see the console handler).
  let restarting = false;
  // What each page asked the backend's history for: recovered rooms need none.
  const historyAsks = {};
  // Per user: WebSockets its pages opened, and its requests to the gateway's /sse (GET and POST).
  const sockets = {};
  const sse = {};
  // Per user: the Sec-WebSocket-Extensions the gateway answered each upgrade with.
  const extensions = {};
  const open = async (user, { blockWebSocket = false } = {}) => {
    const ctx = await browser.newContext({ viewport: { width: 900, height: 560 } });
    if (blockWebSocket) {
      await ctx.addInitScript(() => {
        window.WebSocket = class {
          constructor() {
            throw new Error('WebSocket blocked by the test');
          }
        };
      });
    }
    const page = await ctx.newPage();
    page.setDefaultTimeout(WAIT);
    page.on('pageerror', (e) => pageErrors.push(`${user}: ${e.message}`));
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      // While the gateway restarts the SDK's retries may be refused (how
      // many depends on how long the restart takes): Chromium logs each.
      if (restarting && m.text().includes('ERR_CONNECTION_REFUSED')) return;
      pageErrors.push(`${user} console: ${m.text()}`);
    });
    historyAsks[user] = [];
    sockets[user] = [];
    sse[user] = [];
    page.on('request', (r) => r.url().includes('/api/history') && historyAsks[user].push(r.url()));
    page.on('request', (r) => new URL(r.url()).pathname.startsWith('/sse') && sse[user].push(`${r.method()} ${new URL(r.url()).pathname}`));
    page.on('websocket', (ws) => sockets[user].push(ws.url()));
    // Chromium offers permessage-deflate on every WebSocket: what was agreed.
    extensions[user] = [];
    const cdp = await ctx.newCDPSession(page);
    await cdp.send('Network.enable');
    cdp.on('Network.webSocketHandshakeResponseReceived', (e) => {
      const h = Object.fromEntries(Object.entries(e.response.headers).map(([k, v]) => [k.toLowerCase(), v]));
      extensions[user].push(h['sec-websocket-extensions'] ?? '');
    });
    await page.goto(site);
    await page.fill('#login-form input[name=user]', user);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#status[data-state=connected]');
    await page.waitForSelector('#login-form', { state: 'hidden' });
    await page.waitForSelector('#rooms li[data-room=lobby].joined'); // joined by default
    return page;
  };
  const setRestarting = (v) => {
    restarting = v;
  };
  return { gw, startGateway, setRestarting, site, open, pageErrors, historyAsks, sockets, sse, extensions, ok: sc.ok };
}

const line = (text) => `#messages li:has(.text:text-is("${text}"))`;

test('two users chat through the gateway in headless Chromium', { timeout: 120_000 }, async (t) => {
  const { gw, startGateway, setRestarting, site, open, pageErrors, historyAsks, sockets, extensions, ok } = await stack(t);
  const alice = await open('alice');
  const bob = await open('bob');

  // Both join #general with the button; it becomes their current room.
  for (const page of [alice, bob]) {
    await page.click('#rooms li[data-room=general] button.join');
    await page.waitForSelector('#rooms li[data-room=general].joined.current');
    await page.waitForSelector('#room-title:text-is("# general")');
  }
  // Presence from the gateway's lifecycle events: each sees the other.
  await alice.waitForSelector('#online li[data-user=bob]');
  await bob.waitForSelector('#online li[data-user=alice]');

  const hello = `hello bob, it is ${Date.now()}`;
  await alice.fill('#text', hello);
  await alice.press('#text', 'Enter');
  await bob.waitForSelector(`${line(hello)} .user:text-is("alice")`);
  await alice.waitForSelector(line(hello)); // the sender is a member too
  // Not in the other rooms.
  await bob.click('#rooms li[data-room=lobby] .name');
  await bob.waitForSelector('#room-title:text-is("# lobby")');
  assert.equal(await bob.locator(line(hello)).count(), 0, 'the message leaked into #lobby');
  await bob.click('#rooms li[data-room=general] .name');
  await bob.waitForSelector(line(hello));

  // A reload: bob signs in again by himself (session storage), re-joins his
  // rooms from the positions the page kept, and the message is there (kept
  // by the page with the position), once.
  await bob.reload();
  await bob.waitForSelector('#status[data-state=connected]');
  await bob.waitForSelector('#login-form', { state: 'hidden' });
  await bob.waitForSelector('#rooms li[data-room=general].joined.current');
  await bob.waitForSelector(line(hello));
  assert.equal(await bob.locator(line(hello)).count(), 1, 'shown twice after the reload');
  const history = await (await fetch(`${site}api/history?room=general`)).json();
  assert.deepEqual(history.messages.map((m) => [m.user, m.text]), [['alice', hello]]);

  // And back the other way after the reload.
  const reply = 'hi alice, back from a reload';
  await bob.fill('#text', reply);
  await bob.press('#text', 'Enter');
  await alice.waitForSelector(`${line(reply)} .user:text-is("bob")`);
  assert.equal(await alice.locator(line(hello)).count(), 1, 'alice has a duplicate');

  // Bob's page goes away (the tab navigates off: its socket closes, its
  // storage stays); once the gateway has seen him go, alice writes three
  // messages; bob comes back and they are there, once, in order, recovered
  // by the gateway from the position the page kept: the page never asks the
  // backend's history for them.
  await bob.waitForSelector(line(reply));
  await bob.goto('about:blank');
  await alice.waitForSelector('#online li[data-user=bob]', { state: 'detached' });
  const missed = [1, 2, 3].map((i) => `while bob was away ${i}`);
  for (const text of missed) {
    await alice.fill('#text', text);
    await alice.press('#text', 'Enter');
    await alice.waitForSelector(line(text));
  }
  const asksBefore = historyAsks.bob.length;
  await bob.goto(site);
  await bob.waitForSelector('#status[data-state=connected]');
  await bob.waitForSelector('#rooms li[data-room=general].joined.current');
  for (const text of missed) await bob.waitForSelector(`${line(text)} .user:text-is("alice")`);
  const shown = await bob.locator('#messages li .text').allTextContents();
  assert.deepEqual(shown, [hello, reply, ...missed], 'what bob sees after coming back');
  assert.deepEqual(historyAsks.bob.slice(asksBefore), [], 'recovered by the gateway, not from the backend\'s history');

  // A first visit (nothing kept): joining #general shows the room's recent
  // messages, from the gateway's history (the page asks for them with `recent`).
  const carol = await open('carol');
  await carol.click('#rooms li[data-room=general] button.join');
  await carol.waitForSelector('#rooms li[data-room=general].joined.current');
  for (const text of [hello, reply, ...missed]) await carol.waitForSelector(line(text));
  assert.deepEqual(await carol.locator('#messages li .text').allTextContents(), [hello, reply, ...missed]);
  assert.deepEqual(historyAsks.carol, [], 'the recent history came from the gateway');
  await carol.context().close();

  // The gateway restarts (SIGTERM: drain, go-away): both pages reconnect by
  // themselves, re-join their rooms, and the chat goes on.
  setRestarting(true);
  await stop(gw.proc);
  await alice.waitForSelector('#status[data-state=connecting]');
  await startGateway('gateway-2');
  for (const page of [alice, bob]) await page.waitForSelector('#status[data-state=connected]');
  setRestarting(false);
  const after = 'still here after the gateway restarted';
  await alice.fill('#text', after);
  await alice.press('#text', 'Enter');
  await bob.waitForSelector(`${line(after)} .user:text-is("alice")`);
  await alice.waitForSelector(line(after));
  await alice.waitForSelector('#online li[data-user=bob]');

  // Push notifications (notify.py) from the gateway's online/offline
  // events: once the backend has heard bob is online, a mention of him is
  // no push; zed, never online, gets one. Both are decided for the same
  // message, in order, so a push to bob would be listed before zed's.
  const deadline = Date.now() + WAIT;
  while (!(await (await fetch(`${site}api/presence?user=bob`)).json()).online) {
    assert.ok(Date.now() < deadline, 'the backend never heard that bob is online');
    await new Promise((r) => setTimeout(r, 50)); // polling the backend's API
  }
  const mention = 'ping @bob and @zed';
  await alice.fill('#text', mention);
  await alice.press('#text', 'Enter');
  await bob.waitForSelector(line(mention));
  let pushes = [];
  while (!pushes.some((p) => p.user === 'zed')) {
    assert.ok(Date.now() < deadline + WAIT, 'no push for zed');
    await new Promise((r) => setTimeout(r, 50));
    pushes = (await (await fetch(`${site}api/pushes`)).json()).pushes;
  }
  assert.deepEqual(pushes.map((p) => [p.user, p.from, p.text]), [['zed', 'alice', mention]]);

  mkdirSync(SHOT_DIR, { recursive: true });
  const shot = join(SHOT_DIR, 'screenshot.png');
  await alice.screenshot({ path: shot });
  await bob.screenshot({ path: join(SHOT_DIR, 'screenshot-bob.png') });
  console.log(`screenshot: ${shot}`);

  assert.deepEqual(pageErrors, [], 'errors in the pages');
  assert.ok(sockets.alice.length > 0 && sockets.bob.length > 0, 'the pages used WebSockets');
  // Compression was negotiated with Chromium on every upgrade, its window capped.
  for (const user of ['alice', 'bob']) {
    assert.ok(extensions[user].length > 0, `${user}: no handshake seen`);
    for (const e of extensions[user]) {
      assert.equal(e, 'permessage-deflate; server_no_context_takeover; client_max_window_bits=9', user);
    }
  }
  ok();
});

test('with WebSockets blocked the pages fall back to SSE + POST: they chat, reload and recover', { timeout: 120_000 }, async (t) => {
  const { gw, startGateway, setRestarting, site, open, pageErrors, historyAsks, sockets, sse, ok } = await stack(t);
  const alice = await open('alice', { blockWebSocket: true });
  const bob = await open('bob', { blockWebSocket: true });
  // The SDK says which transport it uses (the `transport` event); the page shows it.
  const overSse = '#status[data-state=connected][data-transport=sse]';
  for (const page of [alice, bob]) {
    await page.waitForSelector(overSse);
    assert.equal(await page.textContent('#status'), 'connected (SSE)');
  }

  for (const page of [alice, bob]) {
    await page.click('#rooms li[data-room=general] button.join');
    await page.waitForSelector('#rooms li[data-room=general].joined.current');
  }
  // Presence: the gateway's lifecycle events are the same for SSE sessions.
  await alice.waitForSelector('#online li[data-user=bob]');
  await bob.waitForSelector('#online li[data-user=alice]');

  const say = async (page, text) => {
    await page.fill('#text', text);
    await page.press('#text', 'Enter');
  };
  const hello = `hello bob, over SSE at ${Date.now()}`;
  await say(alice, hello);
  await bob.waitForSelector(`${line(hello)} .user:text-is("alice")`);
  await alice.waitForSelector(line(hello));
  const reply = 'hi alice, from a POST';
  await say(bob, reply);
  await alice.waitForSelector(`${line(reply)} .user:text-is("bob")`);
  await bob.waitForSelector(line(reply));

  // A reload with a message on its way: whether it lands before the page
  // goes, while it is gone, or after it is back, it is there once.
  const during = 'sent while bob reloads';
  const reloaded = bob.reload();
  await say(alice, during);
  await reloaded;
  await bob.waitForSelector(overSse);
  await bob.waitForSelector('#rooms li[data-room=general].joined.current');
  await bob.waitForSelector(`${line(during)} .user:text-is("alice")`);
  assert.deepEqual(await bob.locator('#messages li .text').allTextContents(), [hello, reply, during], 'what bob sees after the reload');

  // Away and back: what alice writes meanwhile is recovered by the gateway
  // (from the position the page kept), over SSE, not from the backend.
  await bob.goto('about:blank');
  await alice.waitForSelector('#online li[data-user=bob]', { state: 'detached' });
  const missed = [1, 2, 3].map((i) => `while bob was away ${i}`);
  for (const text of missed) {
    await say(alice, text);
    await alice.waitForSelector(line(text));
  }
  const asksBefore = historyAsks.bob.length;
  await bob.goto(site);
  await bob.waitForSelector(overSse);
  await bob.waitForSelector('#rooms li[data-room=general].joined.current');
  for (const text of missed) await bob.waitForSelector(`${line(text)} .user:text-is("alice")`);
  assert.deepEqual(await bob.locator('#messages li .text').allTextContents(), [hello, reply, during, ...missed], 'what bob sees after coming back');
  assert.deepEqual(historyAsks.bob.slice(asksBefore), [], 'recovered by the gateway, not from the backend\'s history');
  await alice.waitForSelector('#online li[data-user=bob]');
  const last = 'welcome back';
  await say(alice, last);
  await bob.waitForSelector(line(last));

  // The gateway restarts (go-away, the streams end): the SDK closes the
  // event streams and reconnects over SSE again by itself.
  setRestarting(true);
  await stop(gw.proc);
  await alice.waitForSelector('#status[data-state=connecting]');
  await startGateway('gateway-2');
  for (const page of [alice, bob]) await page.waitForSelector(overSse);
  setRestarting(false);
  const after = 'still here after the gateway restarted';
  await say(bob, after);
  await alice.waitForSelector(`${line(after)} .user:text-is("bob")`);
  await bob.waitForSelector(line(after));
  await bob.waitForSelector('#online li[data-user=alice]');

  // On the wire: no WebSocket ever opened; event streams and POSTs instead.
  assert.deepEqual(sockets, { alice: [], bob: [] }, 'WebSockets opened');
  for (const user of ['alice', 'bob']) {
    assert.ok(sse[user].includes('GET /sse'), `${user}: no event stream (${sse[user]})`);
    assert.ok(sse[user].some((r) => r.startsWith('POST /sse/')), `${user}: no POST (${sse[user]})`);
  }

  mkdirSync(SHOT_DIR, { recursive: true });
  const shot = join(SHOT_DIR, 'screenshot-sse.png');
  await alice.screenshot({ path: shot });
  await bob.screenshot({ path: join(SHOT_DIR, 'screenshot-sse-bob.png') });
  console.log(`screenshot: ${shot}`);

  assert.deepEqual(pageErrors, [], 'errors in the pages');
  ok();
});
