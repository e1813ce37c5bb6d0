// Processes for the browser test: redis-server, the gateway and the
// backend, each started on free loopback ports, each awaited by the line it
// prints when ready (with a deadline), each logged to a file and killed on
// exit, whatever happens.
import { spawn } from 'node:child_process';
import { createWriteStream, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** @type {Set<import('node:child_process').ChildProcess>} */
const children = new Set();
const killAll = () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
};
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

/** A port free right now on 127.0.0.1 (for redis, which cannot be told port 0). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = /** @type {import('node:net').AddressInfo} */ (s.address());
      s.close(() => resolve(port));
    });
  });
}

/**
 * Starts `cmd` and resolves with {proc, match, log} once a line of its stdout
 * matches `ready`; rejects if it exits first or `timeoutMs` passes.
 */
export function start(name, cmd, args, { ready, dir, timeoutMs = 20_000, cwd } = {}) {
  const log = join(dir, `${name}.log`);
  const out = createWriteStream(log);
  const proc = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  proc.stderr.pipe(out);
  return new Promise((resolve, reject) => {
    let buf = '';
    let done = false;
    const fail = (why) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      proc.kill('SIGKILL');
      reject(new Error(`${name}: ${why}\n--- ${log}:\n${tail(log)}`));
    };
    const timer = setTimeout(() => fail(`not ready within ${timeoutMs} ms`), timeoutMs);
    proc.once('error', (e) => fail(`cannot start ${cmd}: ${e.message}`));
    proc.once('exit', (code, sig) => fail(`exited (${code ?? sig}) before it was ready`));
    proc.stdout.on('data', (chunk) => {
      out.write(chunk);
      if (done) return;
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const match = line.match(ready);
        if (match) {
          done = true;
          clearTimeout(timer);
          proc.removeAllListeners('exit');
          resolve({ proc, match, log });
          return;
        }
      }
    });
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
export function stop(proc, graceMs = 3000) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    proc.once('exit', () => {
      clearTimeout(timer);
      children.delete(proc);
      resolve();
    });
    proc.kill('SIGTERM');
  });
}

export function tail(path, lines = 30) {
  try {
    return readFileSync(path, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * A test's processes and browser, in a fresh directory: `scene.procs` (what
 * `start` returned), `scene.browser` (set it once launched); when `t` ends
 * the browser closes and the processes stop, their logs printed (and the
 * directory kept) unless `scene.ok()` was called or KEEP_LOGS is set.
 * `scene.redis()` starts a redis-server on a free port and returns its URL.
 */
export function scene(t, prefix) {
  const s = {
    dir: mkdtempSync(join(tmpdir(), prefix)),
    procs: [],
    browser: undefined,
    failed: true,
    ok() {
      s.failed = false;
    },
    async redis() {
      const port = await freePort();
      s.procs.push(await start('redis', process.env.REDIS_SERVER ?? 'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
        { dir: s.dir, ready: /Ready to accept connections/ }));
      return `redis://127.0.0.1:${port}/`;
    },
  };
  t.after(async () => {
    await s.browser?.close().catch(() => {});
    for (const p of [...s.procs].reverse()) await stop(p.proc);
    if (s.failed || process.env.KEEP_LOGS) {
      for (const p of s.procs) console.error(`--- ${p.log}:\n${tail(p.log)}`);
      console.error(`logs kept in ${s.dir}`);
    } else rmSync(s.dir, { recursive: true, force: true });
  });
  return s;
}
