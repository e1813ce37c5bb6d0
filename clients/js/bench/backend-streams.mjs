// Backend-streams benchmark driver (a benchmark, not a test), run by
// scripts/bench-backend.sh, which starts Redis and the gateway and passes
// their addresses and pids in the environment.
//
// K WebSocket clients (JSON subprotocol, `ws` directly: no SDK window or
// retries in the way) on one gateway, then phases:
//   up:   every client sends QoS 1 to `backend` (appended to gw:upstream),
//         and, for comparison, QoS 1 and QoS 0 direct messages to the next
//         client's user (the inbox path), each at each target total rate:
//         send->sendResult latency (from the write of the frame), accepted
//         per second, XLEN delta of gw:upstream, deliveries for direct ones.
//   down: a Python publisher (scripts/bench-backend-publish.py) XADDs to
//         gw:downstream at each rate, QoS 0 and 1, round-robin over the K
//         users: delivery latency (publisher's wall clock in the payload vs
//         receive time, same host clock), deliveries/s, lost, duplicates.
// Per phase: CPU (utime+stime) of the gateway, of Redis, of this process
// (and the publisher's), machine CPU, gateway metric deltas.
// Writes $OUT/result.json and $OUT/README.md.

import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';

const here = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(here, '../../..');
const env = process.env;
const need = (k) => env[k] ?? (console.error(`bench: ${k} not set`), process.exit(2));
const WS = need('GW_WS');
const ADMIN = need('GW_ADMIN');
const GW_PID = Number(need('GW_PID'));
const REDIS_PORT = Number(need('REDIS_PORT'));
const REDIS_PID = Number(need('REDIS_PID'));
const SECRET = need('JWT_SECRET');
const OUT = need('OUT');
const K = Number(env.CLIENTS ?? 200);
const SECS = Number(env.SECS ?? 10);
const UP_RATES = (env.UP_RATES ?? '5000 20000').split(/[ ,]+/).filter(Boolean).map(Number);
const DOWN_RATES = (env.DOWN_RATES ?? '5000 20000').split(/[ ,]+/).filter(Boolean).map(Number);
const UP_KINDS = (env.UP_KINDS ?? 'backend-q1 user-q1 user-q0').split(/[ ,]+/).filter(Boolean);
const DOWN_QOS = (env.DOWN_QOS ?? '0 1').split(/[ ,]+/).filter(Boolean);
const DRAIN_MS = Number(env.DRAIN_MS ?? 15000);
const PAD = Number(env.PAD ?? 0); // extra payload bytes on upstream sends
const PREFIX = 'bb-u';
const CLK_TCK = 100; // sysconf(_SC_CLK_TCK) on Linux

const now = () => performance.timeOrigin + performance.now(); // wall ms, sub-ms
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.error(new Date().toISOString().slice(11, 23), ...a);

// ---------- helpers: tokens, /proc, redis, metrics ----------
const b64url = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
function token(sub) {
  const head = `${b64url({ alg: 'HS256', typ: 'JWT' })}.${b64url({ sub, device: 'bench', exp: Math.floor(Date.now() / 1000) + 7200 })}`;
  return `${head}.${crypto.createHmac('sha256', SECRET).update(head).digest('base64url')}`;
}
function procCpu(pid) { // seconds of utime+stime
  const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // fields 14, 15
}
function threadCpu(pid) { // seconds per thread name (shard-0, upstream-1, downstream, ...)
  const out = {};
  let tids = [];
  try { tids = fs.readdirSync(`/proc/${pid}/task`); } catch { return out; }
  for (const tid of tids) {
    try {
      const s = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = s.slice(s.indexOf('(') + 1, s.lastIndexOf(')'));
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      out[name] = (out[name] ?? 0) + (Number(f[11]) + Number(f[12])) / CLK_TCK;
    } catch { /* thread gone */ }
  }
  return out;
}
function machineCpu() { // busy and total seconds over all CPUs
  const l = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const total = l.reduce((a, b) => a + b, 0);
  const idle = l[3] + l[4];
  return { busy: (total - idle) / CLK_TCK, total: total / CLK_TCK };
}
function selfCpu() { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; }
function redisCmd(...args) { // one command, integer or bulk reply; enough for XLEN / INFO
  return new Promise((resolve, reject) => {
    const s = net.connect(REDIS_PORT, '127.0.0.1');
    let buf = '';
    s.on('data', (d) => {
      buf += d;
      if (buf[0] === ':' && buf.endsWith('\r\n')) { s.end(); resolve(Number(buf.slice(1, -2))); }
      else if (buf[0] === '$') {
        const nl = buf.indexOf('\r\n');
        const len = Number(buf.slice(1, nl));
        if (len < 0) { s.end(); resolve(null); }
        else if (Buffer.byteLength(buf) >= nl + 2 + len + 2) { s.end(); resolve(buf.slice(nl + 2, nl + 2 + len)); }
      } else if (buf[0] === '-') { s.end(); reject(new Error(buf)); }
    });
    s.on('error', reject);
    s.write(`*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(String(a))}\r\n${a}\r\n`).join('')}`);
  });
}
function metrics() {
  return new Promise((resolve) => {
    http.get(`http://${ADMIN}/metrics`, (res) => {
      let b = '';
      res.on('data', (d) => (b += d));
      res.on('end', () => {
        const m = {};
        for (const line of b.split('\n')) {
          if (!line || line[0] === '#') continue;
          const i = line.lastIndexOf(' ');
          const v = Number(line.slice(i + 1));
          if (Number.isFinite(v)) m[line.slice(0, i)] = v;
        }
        resolve(m);
      });
    }).on('error', () => resolve({}));
  });
}
function snapshot() {
  return Promise.all([metrics(), redisCmd('XLEN', 'gw:upstream')]).then(([m, xlen]) => ({
    t: now(), gw: procCpu(GW_PID), threads: threadCpu(GW_PID), redis: procCpu(REDIS_PID), self: selfCpu(), machine: machineCpu(), m, xlen,
  }));
}
function diff(a, b) {
  const delta = {};
  for (const [k, v] of Object.entries(b.m)) {
    const d = v - (a.m[k] ?? 0);
    if (d !== 0 && !/_bytes(\{|$)|uptime|_seconds(\{|$)|_conns(\{|$)|_connections(\{|$)/.test(k)) delta[k] = Math.round(d * 1000) / 1000;
  }
  const wall = (b.t - a.t) / 1000;
  const threads = {};
  for (const [k, v] of Object.entries(b.threads)) { const d = v - (a.threads[k] ?? 0); if (d > 0) threads[k] = Math.round(d * 100) / 100; }
  return {
    gateway_threads_cpu_s: threads,
    wall_s: wall, gateway_cpu_s: b.gw - a.gw, redis_cpu_s: b.redis - a.redis, driver_cpu_s: b.self - a.self,
    machine_busy_cores: (b.machine.busy - a.machine.busy) / wall, xlen_delta: b.xlen - a.xlen, metric_deltas: delta,
  };
}
function pct(arr, n) { // arr: Float64Array sorted
  if (n === 0) return null;
  const q = (p) => Math.round(arr[Math.min(n - 1, Math.floor(p * n))] * 1000) / 1000;
  return { n, p50: q(0.5), p90: q(0.9), p99: q(0.99), p999: q(0.999), max: Math.round(arr[n - 1] * 1000) / 1000 };
}
class Lat { // growable Float64Array of ms
  constructor() { this.a = new Float64Array(1 << 16); this.n = 0; }
  add(v) { if (this.n === this.a.length) { const b = new Float64Array(this.a.length * 2); b.set(this.a); this.a = b; } this.a[this.n++] = v; }
  stats() { const s = this.a.subarray(0, this.n).sort(); return pct(s, this.n); }
}

// ---------- clients ----------
let phase = null; // the current phase's counters
const pending = new Map(); // clientMsgId -> write time (ms)
const strays = { sendResults: 0, deliveries: 0, errors: [], closes: [], goaways: [] };

function connect(i) {
  return new Promise((resolve, reject) => {
    const user = `${PREFIX}${i}`;
    const ws = new WebSocket(`ws://${WS}/ws?token=${token(user)}`, 'im.gateway.v1+json', { perMessageDeflate: false });
    const c = { i, user, ws, maxSeq: 0, acked: 0, queue: [] };
    const t = setTimeout(() => reject(new Error(`client ${i}: no authOk in 20 s`)), 20000);
    ws.on('message', (data) => {
      const f = JSON.parse(data);
      if (f.deliver) return onDeliver(c, f.deliver);
      if (f.sendResult) return onSendResult(f.sendResult);
      if (f.authOk) { clearTimeout(t); c.shard = f.authOk.shard ?? 0; return resolve(c); }
      if (f.error) { strays.errors.push({ client: i, ...f.error }); return; }
      if (f.goAway) { strays.goaways.push({ client: i, ...f.goAway }); return; }
    });
    ws.on('close', (code, reason) => { strays.closes.push({ client: i, code, reason: String(reason), at: phase?.name }); });
    ws.on('error', (e) => reject(e));
  });
}

function onSendResult(r) {
  const t1 = now();
  const t0 = pending.get(r.clientMsgId);
  if (t0 === undefined || !phase) { strays.sendResults++; return; }
  pending.delete(r.clientMsgId);
  if (r.accepted) { phase.accepted++; phase.lat.add(t1 - t0); phase.lastResult = t1; }
  else { const k = r.code ?? 'UNSPECIFIED'; phase.refused[k] = (phase.refused[k] ?? 0) + 1; }
}

function onDeliver(c, d) {
  const t1 = now();
  const seq = Number(d.seq ?? 0);
  const qos1 = d.qos === 'QOS_AT_LEAST_ONCE' || d.qos === 1;
  if (qos1) {
    if (seq <= c.maxSeq) { if (phase) phase.dupSeq++; return; } // a retransmit or replay we already have
    c.maxSeq = seq;
  }
  let p;
  try { p = JSON.parse(Buffer.from(d.payload ?? '', 'base64').toString('utf8')); } catch { p = null; }
  if (!p || !phase || p.p !== phase.name) { strays.deliveries++; return; }
  if (phase.seen[p.i]) { phase.dup++; return; }
  phase.seen[p.i] = 1;
  phase.delivered++;
  phase.dlat.add(t1 - p.t);
  phase.lastDelivery = t1;
}

function flushAcks(clients) {
  for (const c of clients) {
    if (c.maxSeq > c.acked && c.ws.readyState === 1) {
      c.ws.send(`{"ack":{"seq":"${c.maxSeq}"}}`);
      c.acked = c.maxSeq;
    }
  }
}

function newPhase(name, extra) {
  return {
    name, ...extra, sent: 0, accepted: 0, refused: {}, delivered: 0, dup: 0, dupSeq: 0,
    seen: new Uint8Array(Math.ceil(extra.rate * SECS) + 16), lat: new Lat(), dlat: new Lat(), maxLagMs: 0,
  };
}

// ---------- upstream phase: clients send at a total rate ----------
async function upPhase(clients, kind, rate) {
  const name = `up-${kind}-r${rate}`;
  const qos = kind.endsWith('q1') ? 'QOS_AT_LEAST_ONCE' : 'QOS_AT_MOST_ONCE';
  const toBackend = kind.startsWith('backend');
  phase = newPhase(name, { kind, rate, qos });
  const total = Math.floor(rate * SECS);
  const pad = PAD > 0 ? 'x'.repeat(PAD) : undefined;
  log(`${name}: ${total} sends over ${SECS}s from ${clients.length} clients`);
  const before = await snapshot();
  const t0 = now();
  let rr = 0;
  await new Promise((resolve) => {
    const tick = () => {
      const t = now();
      const due = Math.min(total, Math.floor((rate * (t - t0)) / 1000));
      if (due > phase.sent) phase.maxLagMs = Math.max(phase.maxLagMs, t - t0 - (phase.sent * 1000) / rate);
      const touched = [];
      for (let n = phase.sent; n < due; n++) {
        const c = clients[rr];
        rr = (rr + 1) % clients.length;
        if (c.queue.length === 0) touched.push(c);
        const payload = Buffer.from(JSON.stringify(pad ? { p: name, i: n, t: now(), x: pad } : { p: name, i: n, t: now() })).toString('base64');
        const id = `${name}-${n}`;
        const to = toBackend ? '"backend":{}' : `"user":"${PREFIX}${(c.i + 1) % clients.length}"`;
        c.queue.push([id, `{"send":{${to},"clientMsgId":"${id}","qos":"${qos}","payload":"${payload}"}}`]);
      }
      for (const c of touched) { // one write per client per tick
        const sock = c.ws._socket;
        sock.cork();
        for (const [id, frame] of c.queue) { pending.set(id, now()); c.ws.send(frame); }
        sock.uncork();
        c.queue.length = 0;
      }
      phase.sent = due;
      flushAcks(clients);
      if (due >= total) resolve(); else setTimeout(tick, 2);
    };
    tick();
  });
  const sendEnd = now();
  const deadline = now() + DRAIN_MS;
  while (now() < deadline && (phase.accepted + refusedCount() < total || (!toBackend && phase.delivered < phase.accepted))) {
    flushAcks(clients);
    await sleep(20);
  }
  flushAcks(clients);
  await sleep(300); // let the last acks and appends land before the snapshot
  const after = await snapshot();
  const d = diff(before, after);
  const res = {
    phase: name, direction: 'up', kind, qos, target_rate: rate, clients: clients.length, secs: SECS,
    sent: total, send_secs: (sendEnd - t0) / 1000, max_send_lag_ms: round(phase.maxLagMs),
    accepted: phase.accepted, refused: phase.refused, unanswered: total - phase.accepted - refusedCount(),
    accepted_per_s: round(phase.accepted / (((phase.lastResult ?? sendEnd) - t0) / 1000)),
    send_result_latency_ms: phase.lat.stats(),
    deliveries: toBackend ? null : phase.delivered, lost: toBackend ? null : phase.accepted - phase.delivered, // of the accepted ones
    duplicates: toBackend ? null : phase.dup, dup_seq_dropped: phase.dupSeq,
    delivery_latency_ms: toBackend ? null : phase.dlat.stats(),
    upstream_xlen_delta: d.xlen_delta,
    ...d,
  };
  for (const id of pending.keys()) if (id.startsWith(name)) pending.delete(id);
  res.other_cores = round(res.machine_busy_cores - (res.gateway_cpu_s + res.redis_cpu_s + res.driver_cpu_s) / res.wall_s);
  res.gateway_cpu_ms_per_1k = round((res.gateway_cpu_s * 1000) / (phase.accepted / 1000));
  res.redis_cpu_ms_per_1k = round((res.redis_cpu_s * 1000) / (phase.accepted / 1000));
  phase = null;
  return res;
}
function refusedCount() { return Object.values(phase.refused).reduce((a, b) => a + b, 0); }
const round = (v) => (v == null || !Number.isFinite(v) ? v : Math.round(v * 100) / 100);

// ---------- downstream phase: the publisher XADDs, clients receive ----------
async function downPhase(clients, qos, rate) {
  const name = `down-q${qos}-r${rate}`;
  phase = newPhase(name, { rate, qos });
  log(`${name}: publisher XADDs ${Math.floor(rate * SECS)} entries over ${SECS}s to ${clients.length} users`);
  const before = await snapshot();
  const t0 = now();
  const args = [path.join(REPO, 'scripts/bench-backend-publish.py'), '--port', String(REDIS_PORT), '--rate', String(rate),
    '--secs', String(SECS), '--qos', String(qos), '--users', String(clients.length), '--prefix', PREFIX, '--phase', name];
  const pub = spawn('python3', args, { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  pub.stdout.on('data', (d) => (out += d));
  const ackTimer = setInterval(() => flushAcks(clients), 20);
  const code = await new Promise((r) => pub.on('exit', r));
  const pubEnd = now();
  const p = code === 0 ? JSON.parse(out.trim().split('\n').pop()) : { sent: 0, error: `publisher exited ${code}` };
  const deadline = now() + DRAIN_MS;
  while (now() < deadline && phase.delivered < p.sent) await sleep(20);
  clearInterval(ackTimer);
  flushAcks(clients);
  await sleep(300);
  const after = await snapshot();
  const d = diff(before, after);
  const res = {
    phase: name, direction: 'down', qos: Number(qos), target_rate: rate, clients: clients.length, secs: SECS,
    publisher: p, published: p.sent, deliveries: phase.delivered, lost: p.sent - phase.delivered, duplicates: phase.dup,
    dup_seq_dropped: phase.dupSeq,
    deliveries_per_s: round(phase.delivered / (((phase.lastDelivery ?? pubEnd) - (p.wall_start_ms ?? t0)) / 1000)),
    drain_after_publisher_ms: phase.lastDelivery ? round(Math.max(0, phase.lastDelivery - pubEnd)) : null,
    delivery_latency_ms: phase.dlat.stats(),
    publisher_cpu_s: p.publisher_cpu_s, ...d,
  };
  res.other_cores = round(res.machine_busy_cores - (res.gateway_cpu_s + res.redis_cpu_s + res.driver_cpu_s + (p.publisher_cpu_s ?? 0)) / res.wall_s);
  res.gateway_cpu_ms_per_1k = round((res.gateway_cpu_s * 1000) / (phase.delivered / 1000));
  res.redis_cpu_ms_per_1k = round((res.redis_cpu_s * 1000) / (phase.delivered / 1000));
  phase = null;
  return res;
}

// ---------- report ----------
const f = (v, d = 2) => (v == null ? '-' : typeof v === 'number' ? v.toLocaleString('en-US', { maximumFractionDigits: d }) : String(v));
const lat = (s) => (s ? `${f(s.p50)} / ${f(s.p99)} / ${f(s.p999)} / ${f(s.max, 1)}` : '-');
const refusedStr = (r) => { const e = Object.entries(r ?? {}); return e.length ? e.map(([k, v]) => `${k} ${v}`).join(', ') : '0'; };

function readme(result) {
  const m = result.machine;
  const L = [];
  L.push(`# Backend streams benchmark: ${path.basename(OUT)}`, '');
  L.push(`- machine: ${m.nproc} CPUs (${m.model}), ${m.mem}; kernel ${m.kernel}; commit ${m.commit}`);
  L.push(`- everything on this host's loopback and **${m.nproc} cores shared by everything**: redis-server, the gateway (\`--shards 2\`, its upstream writer threads and downstream consumer thread), this node driver (${result.clients} WebSocket clients, one process) and the Python publisher; other engineers' builds and test runs may have been running on the same box at the same time`);
  L.push(`- command: \`${m.command}\``);
  L.push(`- gateway: \`${m.gateway_cmd}\``);
  L.push(`- redis: \`${m.redis_cmd}\` (${m.redis_version})`);
  L.push(`- ${result.clients} clients (users \`${PREFIX}0..${result.clients - 1}\`, one connection each), ${SECS} s per phase; payload a ~60 B JSON \`{"p":phase,"i":n,"t":unix_ms}\`${PAD ? ` plus ${PAD} B padding` : ''}`);
  L.push('- latencies in ms: p50 / p99 / p99.9 / max. send->sendResult from the client\'s write of the frame; delivery from the sender\'s (or publisher\'s) wall clock in the payload to the receiving client\'s parse, same host clock; "CPU ms / 1k" is utime+stime over the phase (sending and draining) per 1,000 accepted sends or deliveries');
  L.push(`- idle baseline (${result.clients} clients connected, nothing sent, ${f(result.idle.wall_s, 1)} s): gateway ${f(result.idle.gateway_cores)} cores, redis ${f(result.idle.redis_cores)}, machine busy ${f(result.idle.machine_busy_cores)} cores of which ${f(result.idle.other_cores)} by processes outside the benchmark; "others" in the tables is machine busy minus gateway, redis, driver and publisher`);
  L.push('- raw figures: `result.json` (every phase, with gateway metric deltas); `gateway.log`, `redis-info.txt`, `metrics-end.txt`', '');
  L.push('## Upstream: client sends (send -> sendResult)', '');
  L.push('| phase | path | target msg/s | sent | accepted / refused / unanswered | accepted/s | send->sendResult p50 / p99 / p99.9 / max | XLEN gw:upstream delta | delivered / lost / dup | delivery p50 / p99 / p99.9 / max | gateway CPU ms / 1k | redis CPU ms / 1k | machine busy cores (others) | client max lag ms |');
  L.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of result.phases.filter((p) => p.direction === 'up')) {
    const pathName = { 'backend-q1': 'QoS 1 -> backend (XADD gw:upstream)', 'backend-q0': 'QoS 0 -> backend', 'user-q1': 'QoS 1 -> user (Redis inbox)', 'user-q0': 'QoS 0 -> user (live)' }[r.kind] ?? r.kind;
    L.push(`| \`${r.phase}\` | ${pathName} | ${f(r.target_rate)} | ${f(r.sent)} | ${f(r.accepted)} / ${refusedStr(r.refused)} / ${f(r.unanswered)} | ${f(r.accepted_per_s, 0)} | ${lat(r.send_result_latency_ms)} | ${f(r.upstream_xlen_delta)} | ${r.deliveries == null ? '-' : `${f(r.deliveries)} / ${f(r.lost)} / ${f(r.duplicates)}`} | ${lat(r.delivery_latency_ms)} | ${f(r.gateway_cpu_ms_per_1k)} | ${f(r.redis_cpu_ms_per_1k)} | ${f(r.machine_busy_cores)} (${f(r.other_cores)}) | ${f(r.max_send_lag_ms, 1)} |`);
  }
  L.push('', '## Downstream: XADD gw:downstream -> delivery', '');
  L.push('| phase | qos | target entries/s | published (publisher rate) | delivered / lost / dup | deliveries/s | drain after publisher stopped (ms) | delivery p50 / p99 / p99.9 / max | gateway CPU ms / 1k | redis CPU ms / 1k | machine busy cores (others) | publisher max lag ms |');
  L.push('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const r of result.phases.filter((p) => p.direction === 'down')) {
    L.push(`| \`${r.phase}\` | ${r.qos} | ${f(r.target_rate)} | ${f(r.published)} (${f(r.publisher?.achieved_rate, 0)}/s) | ${f(r.deliveries)} / ${f(r.lost)} / ${f(r.duplicates)} | ${f(r.deliveries_per_s, 0)} | ${f(r.drain_after_publisher_ms, 0)} | ${lat(r.delivery_latency_ms)} | ${f(r.gateway_cpu_ms_per_1k)} | ${f(r.redis_cpu_ms_per_1k)} | ${f(r.machine_busy_cores)} (${f(r.other_cores)}) | ${f(r.publisher?.max_lag_ms, 1)} |`);
  }
  L.push('', '## Gateway CPU by thread (CPU-s over each phase, utime+stime from /proc/<pid>/task/*/stat)', '');
  const names = [...new Set(result.phases.flatMap((p) => Object.keys(p.gateway_threads_cpu_s ?? {})))].sort();
  L.push(`| phase | wall s | ${names.join(' | ')} | total |`);
  L.push(`| --- | --- | ${names.map(() => '---').join(' | ')} | --- |`);
  for (const r of result.phases) L.push(`| \`${r.phase}\` | ${f(r.wall_s, 1)} | ${names.map((n) => f(r.gateway_threads_cpu_s?.[n] ?? 0)).join(' | ')} | ${f(r.gateway_cpu_s)} |`);
  L.push('', `Connection events during the run: ${result.strays.closes.length} closes, ${result.strays.errors.length} error frames, ${result.strays.goaways.length} go-aways; ${result.strays.sendResults} sendResults and ${result.strays.deliveries} deliveries outside their phase (late ones, after the drain deadline).`);
  L.push('', '<!-- observations -->', '');
  return L.join('\n');
}

// ---------- main ----------
async function main() {
  log(`connecting ${K} clients to ${WS}`);
  const clients = [];
  for (let i = 0; i < K; i += 50) clients.push(...(await Promise.all(Array.from({ length: Math.min(50, K - i) }, (_, j) => connect(i + j)))));
  const shards = {};
  for (const c of clients) shards[c.shard] = (shards[c.shard] ?? 0) + 1;
  log(`connected: per shard ${JSON.stringify(shards)}`);
  await sleep(500);
  const b0 = await snapshot();
  await sleep(3000);
  const idle = diff(b0, await snapshot());
  idle.gateway_cores = round(idle.gateway_cpu_s / idle.wall_s);
  idle.redis_cores = round(idle.redis_cpu_s / idle.wall_s);
  idle.other_cores = round(idle.machine_busy_cores - (idle.gateway_cpu_s + idle.redis_cpu_s + idle.driver_cpu_s) / idle.wall_s);
  log(`idle 3 s with ${K} clients: gateway ${idle.gateway_cores} cores, redis ${idle.redis_cores}, machine ${round(idle.machine_busy_cores)}`);
  const phases = [];
  for (const rate of UP_RATES) for (const kind of UP_KINDS) { phases.push(await upPhase(clients, kind, rate)); log(JSON.stringify(summary(phases.at(-1)))); await sleep(1000); }
  for (const rate of DOWN_RATES) for (const qos of DOWN_QOS) { phases.push(await downPhase(clients, qos, rate)); log(JSON.stringify(summary(phases.at(-1)))); await sleep(1000); }
  const machine = JSON.parse(fs.readFileSync(path.join(OUT, 'machine.json'), 'utf8'));
  const result = {
    started: new Date(Date.now()).toISOString(), clients: K, secs: SECS, up_rates: UP_RATES, down_rates: DOWN_RATES,
    shards_of_clients: shards, idle, driver: { node: process.version, host: os.hostname() }, machine, phases,
    strays: { ...strays, errors: strays.errors.slice(0, 50), closes: strays.closes.slice(0, 50), goaways: strays.goaways.slice(0, 50) },
  };
  fs.writeFileSync(path.join(OUT, 'result.json'), JSON.stringify(result, null, 2));
  fs.writeFileSync(path.join(OUT, 'README.md'), readme(result));
  for (const c of clients) c.ws.close(1000);
  await sleep(300);
  log(`wrote ${OUT}/result.json and README.md`);
  process.exit(0);
}
function summary(r) {
  return {
    phase: r.phase, sent: r.sent ?? r.published, accepted: r.accepted, refused: r.refused, delivered: r.deliveries, lost: r.lost,
    dup: r.duplicates, lat: r.send_result_latency_ms ?? r.delivery_latency_ms, dlat: r.direction === 'up' ? r.delivery_latency_ms : undefined,
    xlen: r.upstream_xlen_delta, gw_ms_1k: r.gateway_cpu_ms_per_1k, busy: round(r.machine_busy_cores),
  };
}
main().catch((e) => { console.error(e); process.exit(1); });
