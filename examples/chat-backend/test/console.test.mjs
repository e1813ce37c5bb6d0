// The operator console (gateway/console, served on the admin port at
// /console) in headless Chromium, against a real cluster: redis-server and
// two gateway nodes (a, b) on free loopback ports, both with an admin
// token. The page signs in, lists both nodes serving, counts the clients a
// second page connects (3 on a, 2 on b) and charts their traffic, looks
// up a user's presence and a room, pushes to the room (the member on the other node gets the exact
// text), kicks a user (its socket closes), reloads b and drains b (its row
// turns "draining"), and signs out. Every request the page made went to the
// admin origin, with the token, and nothing went wrong in it (no page
// error, no console error but the 401s that show the sign-in form).
// Screenshots: target/console-test/; UPDATE_SCREENSHOT=1 also copies the
// last one to docs/console.png.
//
//   node --test examples/chat-backend/test/console.test.mjs   (scripts/test-browser.sh installs what it needs)
// Env: GATEWAY_BIN (default target/debug/gateway), CHROMIUM (/usr/bin/chromium),
//      REDIS_SERVER (redis-server), KEEP_LOGS=1, UPDATE_SCREENSHOT=1.
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { scene, start } from './harness.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, '../../..');
const JWT_SECRET = `console-test-jwt-${randomBytes(12).toString('hex')}`;
const ADMIN_TOKEN = `console-test-admin-${randomBytes(12).toString('hex')}`;
const WAIT = 20_000; // every wait has this deadline; nothing sleeps
const SHOT_DIR = join(REPO, 'target', 'console-test');

/** An HS256 JWT for `sub` on `device`, valid for an hour. */
function jwt(sub, device) {
  const part = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const unsigned = `${part({ alg: 'HS256', typ: 'JWT' })}.${part({ sub, device, exp: Math.floor(Date.now() / 1000) + 3600 })}`;
  return `${unsigned}.${createHmac('sha256', JWT_SECRET).update(unsigned).digest('base64url')}`;
}

/** Polls `check` (async, truthy when done) until it holds or `what` times out. */
async function until(what, check, timeoutMs = WAIT) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await check();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`never happened within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100)); // a polling interval, bounded by the deadline
  }
}

test('the operator console watches and runs a two-node cluster', { timeout: 180_000 }, async (t) => {
  const sc = scene(t, 'gateway-console-');
  const { dir, procs } = sc;
  const redisUrl = await sc.redis();
  const nodes = {};
  for (const id of ['a', 'b']) {
    const gw = await start(`gateway-${id}`, process.env.GATEWAY_BIN ?? join(REPO, 'target/debug/gateway'),
      ['--redis', redisUrl, '--node-id', id, '--bus-listen', '127.0.0.1:0',
        '--ws-listen', '127.0.0.1:0', '--tcp-listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0',
        '--jwt-secret', JWT_SECRET, '--admin-token', ADMIN_TOKEN,
        // A drained node waits this long for its clients: b stays listed, draining, to the end.
        '--drain-deadline-ms', '120000'],
      { dir, ready: /^ready ws=(\S+) tcp=(\S+) admin=(\S+)/ });
    procs.push(gw);
    nodes[id] = { ws: gw.match[1], admin: gw.match[3] };
  }
  const origin = `http://${nodes.a.admin}`;

  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
  sc.browser = browser;

  // The console's page, and everything it does.
  const ctx = await browser.newContext({ viewport: { width: 1600, height: 1000 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(WAIT);
  let signedIn = false;
  let refusedBeforeSignIn = 0; // 401 answers before signing in (each logs a console error)
  let excused = 0;
  const problems = [];
  const requests = [];
  const dialogs = [];
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    // Before signing in the page asks the API and is refused: that is how it knows to ask for the token.
    if (/status of 401/.test(m.text()) && (!signedIn || excused < refusedBeforeSignIn)) {
      excused++;
      return;
    }
    problems.push(`console error: ${m.text()}`);
  });
  page.on('response', (r) => {
    if (!signedIn && r.status() === 401) refusedBeforeSignIn++;
  });
  page.on('request', (r) => requests.push({ url: r.url(), method: r.method(), headers: r.headers(), signedIn }));
  page.on('dialog', (d) => {
    dialogs.push(d.message());
    d.accept().catch(() => {});
  });
  const result = (text) => page.waitForSelector(`#action-result[data-state=ok] p.ok:has-text(${JSON.stringify(text)})`);

  mkdirSync(SHOT_DIR, { recursive: true });
  const response = await page.goto(`${origin}/console`);
  assert.equal(response.status(), 200, 'GET /console without a token');
  assert.match(response.headers()['content-security-policy'] ?? '', /default-src 'none'/, 'the console is served with a CSP');
  await page.waitForSelector('#sign-in-form', { state: 'visible' });
  assert.equal(await page.isVisible('#app'), false, 'the console showed before signing in');
  await page.screenshot({ path: join(SHOT_DIR, 'console-sign-in.png') });

  signedIn = true;
  await page.fill('#token', ADMIN_TOKEN);
  await page.click('#sign-in-form button[type=submit]');
  await page.waitForSelector('#app', { state: 'visible' });
  await page.waitForSelector('#sign-in', { state: 'hidden' });
  assert.equal(await page.evaluate(() => sessionStorage.getItem('gatewayAdminToken')), ADMIN_TOKEN);
  for (const id of ['a', 'b']) {
    await page.waitForSelector(`#nodes tr[data-node=${id}][data-state=serving] td.state.serving:text-is("serving")`);
  }
  await page.waitForSelector('#whoami:has-text("on node a")');
  await page.screenshot({ path: join(SHOT_DIR, 'console-signed-in.png') });

  // Clients, from a page of their own: 3 on a, 2 on b; bob (on b) joins
  // "lobby"; dave is on both nodes.
  const clients = await (await browser.newContext()).newPage();
  clients.setDefaultTimeout(WAIT);
  await clients.evaluate(() => {
    const gw = { frames: {}, closed: {}, socks: {} };
    window.gw = gw;
    gw.open = (key, url, rooms) => new Promise((resolve, reject) => {
      const ws = new WebSocket(url, 'im.gateway.v1+json');
      gw.socks[key] = ws;
      const frames = (gw.frames[key] = []);
      const timer = setTimeout(() => reject(new Error(`${key}: not ready in time`)), 15_000);
      let pinger = null;
      ws.onmessage = (e) => {
        const f = JSON.parse(e.data);
        frames.push(f);
        if (f.authOk) {
          pinger = setInterval(() => ws.send(JSON.stringify({ ping: { nonce: '1' } })), Math.max(1000, (f.authOk.heartbeatMs || 20_000) / 2));
          for (const room of rooms) ws.send(JSON.stringify({ join: { room } }));
        }
        const joined = frames.filter((x) => x.joined).map((x) => x.joined.room);
        if (frames.some((x) => x.authOk) && rooms.every((r) => joined.includes(r))) {
          clearTimeout(timer);
          resolve(true);
        }
      };
      ws.onclose = (e) => {
        clearInterval(pinger);
        gw.closed[key] = e.code;
        reject(new Error(`${key}: closed (${e.code}) before it was ready`));
      };
    });
    // Some traffic for the charts: `from` writes to user `to` every 200 ms.
    gw.chatter = (from, to) => {
      let n = 0;
      setInterval(() => {
        const ws = gw.socks[from];
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ send: { user: to, clientMsgId: String(++n), payload: btoa(`chatter ${n}`) } }));
      }, 200);
    };
    gw.text = (key, room) => (gw.frames[key] || []).filter((f) => f.deliver && (f.deliver.room || '') === room)
      .map((f) => new TextDecoder().decode(Uint8Array.from(atob(f.deliver.payload || ''), (c) => c.charCodeAt(0))));
  });
  const open = (key, node, user, device, rooms = []) => clients.evaluate(
    ([k, url, r]) => window.gw.open(k, url, r),
    [key, `ws://${nodes[node].ws}/ws?token=${jwt(user, device)}`, rooms],
  );
  await open('alice', 'a', 'alice', 'web');
  await open('carol', 'a', 'carol', 'web');
  await open('dave-a', 'a', 'dave', 'phone');
  await open('bob', 'b', 'bob', 'web', ['lobby']);
  await open('dave-b', 'b', 'dave', 'laptop');
  await clients.evaluate(() => window.gw.chatter('dave-a', 'bob'));

  // The total counts them (the series' newest second, every 2 s).
  const total = () => page.textContent('#total-connections').then(Number);
  await until('5 connections on the page', async () => (await total()) === 5);
  for (const [id, n] of [['a', 3], ['b', 2]]) {
    await page.waitForSelector(`#nodes tr[data-node=${id}] td.conns:text-is("${n}")`);
  }
  // dave's chatter shows: messages in on a, deliveries on b.
  await until('messages in on the page', async () => Number(await page.textContent('#total-msgs')) > 0);
  await page.waitForSelector('#charts figure[data-metric=deliveries] .chart-legend .item:has-text("b"):not(:has-text("b 0"))');
  // Ten charts, the connections one drawn, with a line per node in its legend.
  assert.equal(await page.locator('#charts canvas.chart').count(), 10);
  await page.waitForSelector('#charts figure[data-metric=connections] .chart-legend:has-text("a 3"):has-text("b 2")');
  const inked = await page.$eval('#charts figure[data-metric=connections] canvas', (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  });
  assert.ok(inked > 100, `the connections chart is blank (${inked} pixels)`);

  // Look-ups: dave is on both nodes; lobby has its member on b (once a
  // knows, the push below reaches it).
  const lookup = async (form, name, done) => until(`${form} ${name}`, async () => {
    await page.fill(`${form} input`, name);
    await page.click(`${form} button[type=submit]`);
    await page.waitForSelector('#lookup-result:not([data-state=pending])');
    return done();
  });
  await lookup('#presence-form', 'dave', async () =>
    (await page.locator('#lookup-result[data-kind=presence][data-state=ok] tbody tr[data-node=a]').count()) === 1
    && (await page.locator('#lookup-result tbody tr[data-node=b]').count()) === 1);
  await lookup('#room-form', 'lobby', async () =>
    (await page.locator('#lookup-result[data-kind=room][data-state=ok] tbody tr[data-node=b]:has-text("1")').count()) === 1);
  assert.match(await page.textContent('#lookup-result'), /room lobby — 1 member/);

  // Push to the room from the page: bob, on the other node, gets the exact text.
  const text = `hello lobby from the console ${Date.now()} — <b>not markup</b> ✓`;
  await page.selectOption('#push-form select[name=kind]', 'room');
  await page.fill('#push-form input[name=target]', 'lobby');
  await page.fill('#push-form input[name=text]', text);
  await page.selectOption('#push-form select[name=qos]', '0');
  await page.click('#push-form button[type=submit]');
  await result('POST /push → 200');
  assert.match(await page.textContent('#action-result pre'), /"accepted": true/);
  assert.ok(dialogs.at(-1).includes(text), `the confirm dialog named the text: ${dialogs.at(-1)}`);
  await clients.waitForFunction((want) => window.gw.text('bob', 'lobby').includes(want), text);
  assert.deepEqual(await clients.evaluate(() => window.gw.text('bob', 'lobby')), [text]);

  // Kick carol: her socket closes, after a go-away; the count drops.
  await page.fill('#kick-form input[name=user]', 'carol');
  await page.click('#kick-form button[type=submit]');
  await result('POST /kick/carol → 200');
  assert.match(await page.textContent('#action-result pre'), /"kicked": 1/);
  await clients.waitForFunction(() => window.gw.closed.carol !== undefined);
  assert.ok(await clients.evaluate(() => window.gw.frames.carol.some((f) => f.goAway)), 'carol got no go-away');
  await until('4 connections after the kick', async () => (await total()) === 4);

  // Per node: reload b, then drain it (the page asks a, which forwards).
  const rowButton = (id, action) => page.click(`#nodes tr[data-node=${id}] button[data-action=${action}]`);
  await rowButton('b', 'reload');
  await result('POST /reload?node=b → 200');
  await rowButton('b', 'drain');
  await result('POST /drain?node=b → 202');
  assert.ok(dialogs.at(-1).startsWith('Drain node b'), dialogs.at(-1));
  await page.waitForSelector('#nodes tr[data-node=b][data-state=draining] td.state.draining:text-is("draining")');
  await page.waitForSelector('#nodes tr[data-node=a][data-state=serving]');
  await clients.waitForFunction(() => window.gw.frames.bob.some((f) => f.goAway));

  // Let the charts have a round with everything above in them.
  const rounds = requests.length;
  await until('another refresh', async () => requests.length > rounds + 2);
  const shot = join(SHOT_DIR, 'console-cluster.png');
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
  if (process.env.UPDATE_SCREENSHOT === '1') {
    mkdirSync(join(REPO, 'docs'), { recursive: true });
    copyFileSync(shot, join(REPO, 'docs', 'console.png'));
    console.log('copied to docs/console.png');
  }

  // Sign out: the token is gone from the tab, the form is back.
  await page.click('#sign-out');
  await page.waitForSelector('#sign-in-form', { state: 'visible' });
  assert.equal(await page.evaluate(() => sessionStorage.getItem('gatewayAdminToken')), null);

  // On the wire: only the admin origin; the token on every API call once
  // signed in; a POST without a body has no Content-Type; /push is JSON.
  const elsewhere = requests.filter((r) => !r.url.startsWith(`${origin}/`) && !r.url.startsWith('data:'));
  assert.deepEqual(elsewhere.map((r) => r.url), [], 'requests to other origins');
  const api = requests.filter((r) => r.url.startsWith(`${origin}/`) && !new URL(r.url).pathname.startsWith('/console'));
  assert.ok(api.length > 10, `only ${api.length} API requests`);
  for (const r of api.filter((x) => x.signedIn)) {
    assert.equal(r.headers.authorization, `Bearer ${ADMIN_TOKEN}`, `${r.method} ${r.url} without the token`);
  }
  const posts = api.filter((r) => r.method === 'POST');
  assert.deepEqual(posts.map((r) => new URL(r.url).pathname + new URL(r.url).search).sort(),
    ['/drain?node=b', '/kick/carol', '/push', '/reload?node=b']);
  for (const r of posts) {
    const ct = r.headers['content-type'];
    if (r.url.endsWith('/push')) assert.equal(ct, 'application/json');
    else assert.equal(ct, undefined, `${r.url} sent a Content-Type`);
  }
  assert.ok(requests.every((r) => !('cookie' in r.headers)), 'a cookie was sent');
  assert.deepEqual(problems, [], 'errors in the page');
  sc.ok();
});
