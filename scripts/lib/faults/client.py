"""What the fault cases share: the cluster as started by net.sh, a test
client on the JSON WebSocket protocol (README "Talk to it"), the admin API,
and the counting of every stream of messages.

Runs inside the clients' namespace, under Debian's /usr/bin/python3 (it has
`websockets`). The client does what the README asks of one: it acks every
QoS 1 delivery (cumulatively), drops a `seq` it has already seen, and
reconnects with `?last_seq=` when asked to.
"""

import asyncio
import base64
import hashlib
import hmac
import http.client
import json
import os
import subprocess
import time

import websockets

DIR = os.environ["FAULTS_DIR"]
LIB = os.path.dirname(os.path.abspath(__file__))
LONG = os.environ.get("FAULTS_LONG") == "1"
JWT_SECRET = os.environ["FAULTS_JWT_SECRET"]
ADMIN_TOKEN = os.environ["FAULTS_ADMIN_TOKEN"]


def now_ms():
    return time.monotonic() * 1000


def ctl(*args, check=True):
    """net.sh SUBCOMMAND ARGS...: its stdout."""
    r = subprocess.run([os.path.join(LIB, "net.sh"), *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"net.sh {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def node(nid):
    """The ready line of node `nid` as a dict (ws, tcp, admin, bus)."""
    with open(os.path.join(DIR, f"node-{nid}.ready")) as f:
        return dict(w.split("=", 1) for w in f.read().split() if "=" in w)


def start_nodes(ids="abc", flags=()):
    for nid in ids:
        ctl("node-start", nid, *flags)


def token(user, device):
    def b64(d):
        return base64.urlsafe_b64encode(d).rstrip(b"=").decode()

    now = int(time.time())
    claims = {"sub": user, "device": device, "iat": now, "exp": now + 3600}
    si = ".".join(b64(json.dumps(p).encode()) for p in ({"alg": "HS256", "typ": "JWT"}, claims))
    return si + "." + b64(hmac.new(JWT_SECRET.encode(), si.encode(), hashlib.sha256).digest())


def admin(nid, path, timeout=2.0):
    """GET `path` on node `nid`'s admin port: the body (str), or None when it does not answer."""
    host = node(nid)["admin"]
    try:
        c = http.client.HTTPConnection(host, timeout=timeout)
        c.request("GET", path, headers={"Host": host, "Authorization": f"Bearer {ADMIN_TOKEN}"})
        r = c.getresponse()
        body = r.read().decode()
        c.close()
        return body if r.status == 200 else None
    except (OSError, http.client.HTTPException):
        return None


def listed(nid):
    """The node ids `nid`'s /nodes lists, or None when it does not answer."""
    body = admin(nid, "/nodes")
    return None if body is None else sorted(n["id"] for n in json.loads(body)["nodes"])


def metric(nid, name):
    """The sum of every sample of `name` on `nid`'s /metrics (None: no answer)."""
    body = admin(nid, "/metrics")
    if body is None:
        return None
    total = 0.0
    for line in body.splitlines():
        if line.startswith(name) and line[len(name)] in " {":
            total += float(line.rsplit(" ", 1)[1])
    return total


async def aadmin(nid, path, timeout=2.0):
    """`admin` off the event loop (the clients keep reading and acking)."""
    return await asyncio.to_thread(admin, nid, path, timeout)


async def alisted(nid):
    return await asyncio.to_thread(listed, nid)


async def ametric(nid, name):
    return await asyncio.to_thread(metric, nid, name)


async def until(pred, timeout, step=0.02):
    """Polls `pred` until it is true (True) or `timeout` seconds pass (False)."""
    end = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() >= end:
            return False
        await asyncio.sleep(step)


class Client:
    """One device of one user on one node; `got` holds what it received."""

    def __init__(self, user, nid, device="d1", reconnect=False):
        self.user, self.nid, self.device, self.reconnect = user, nid, device, reconnect
        self.ws = None
        self.max_seq = 0  # highest QoS 1 seq seen (the client's last_seq)
        self.got = []  # (stream, idx, seq, t_ms) of every delivery kept
        self.wire_dups = 0  # deliveries with seq <= max_seq, dropped as the README says
        self.seq_gaps = 0  # kept QoS 1 deliveries whose seq is not max_seq + 1
        self.gap_frames = 0
        self.results = {}  # clientMsgId -> future of its sendResult
        self.refusals = {}  # code -> sendResults not accepted (retries included)
        self.events = []  # (t_ms, what): authOk, close, goAway, error
        self.connected = asyncio.Event()
        self.closing = False
        self.tasks = []
        self.discard = False  # a sink: frames counted, not read
        self.frames = 0

    async def connect(self, timeout=10.0):
        url = f"ws://{node(self.nid)['ws']}/ws?token={token(self.user, self.device)}"
        if self.max_seq:
            url += f"&last_seq={self.max_seq}"
        self.ws = await asyncio.wait_for(websockets.connect(
            url, subprotocols=["im.gateway.v1+json"], compression=None,
            ping_interval=None, max_size=1 << 22, open_timeout=timeout), timeout)
        first = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if "authOk" not in first:
            raise RuntimeError(f"{self.user}@{self.nid}: {first}")
        self.events.append((now_ms(), "authOk"))
        self.connected.set()
        self.tasks = [asyncio.create_task(self._read(self.ws)), asyncio.create_task(self._ping(self.ws))]
        return self

    async def _ping(self, ws):
        n = 0
        while True:
            await asyncio.sleep(20)
            n += 1
            await self._send(ws, {"ping": {"nonce": str(n)}})

    async def _send(self, ws, frame):
        try:
            await ws.send(json.dumps(frame))
        except websockets.ConnectionClosed:
            pass

    async def _read(self, ws):
        try:
            async for raw in ws:
                self.frames += 1
                if isinstance(raw, bytes) or (self.discard and len(raw) > 1000):
                    continue
                self._frame(json.loads(raw), ws)
        except websockets.ConnectionClosed:
            pass
        self.connected.clear()
        self.events.append((now_ms(), f"close {ws.close_code}"))
        if self.reconnect and not self.closing:
            asyncio.get_running_loop().create_task(self._reconnect())

    def _frame(self, f, ws):
        if "deliver" in f:
            d = f["deliver"]
            seq = int(d.get("seq", "0"))
            text = base64.b64decode(d.get("payload", "")).decode(errors="replace")
            stream, _, idx = text.rpartition(":")
            if seq:
                if seq <= self.max_seq:
                    self.wire_dups += 1
                    return
                if seq != self.max_seq + 1:
                    self.seq_gaps += 1
                self.max_seq = seq
                asyncio.get_running_loop().create_task(self._send(ws, {"ack": {"seq": str(seq)}}))
            if idx.isdigit():
                self.got.append((stream, int(idx), seq, now_ms()))
        elif "sendResult" in f:
            r = f["sendResult"]
            fut = self.results.get(r.get("clientMsgId"))
            if fut is not None and not fut.done():
                fut.set_result(r)
        elif "gap" in f:
            self.gap_frames += 1
            self.events.append((now_ms(), f"gap {f['gap']}"))
        elif "goAway" in f or "error" in f:
            self.events.append((now_ms(), json.dumps(f)))

    async def _reconnect(self):
        """Back to this client's node (its ready line is re-read each try), as
        a client told to resume: `last_seq` in the URL."""
        end = time.monotonic() + 30
        while not self.closing and time.monotonic() < end:
            try:
                await self.connect(timeout=2.0)
                return
            except (OSError, asyncio.TimeoutError, websockets.WebSocketException, RuntimeError, KeyError):
                await asyncio.sleep(0.05)
        self.events.append((now_ms(), "reconnect gave up"))

    async def send(self, to, stream, idx, qos, timeout=5.0, retry_until=None):
        """Sends `stream:idx` to user `to`; its sendResult (dict), or None when
        none came. With `retry_until` (a monotonic time) a refused or
        unanswered send is sent again, same clientMsgId, until accepted."""
        cmid = f"{stream}-{idx}"
        payload = base64.b64encode(f"{stream}:{idx}".encode()).decode()
        frame = {"send": {"user": to, "clientMsgId": cmid, "payload": payload,
                          "qos": "QOS_AT_LEAST_ONCE" if qos else "QOS_AT_MOST_ONCE"}}
        pause = 0.05
        while True:
            fut = self.results.get(cmid)
            if fut is None or fut.done():
                fut = self.results[cmid] = asyncio.get_running_loop().create_future()
            if self.connected.is_set():
                await self._send(self.ws, frame)
            try:
                r = await asyncio.wait_for(asyncio.shield(fut), timeout)
            except asyncio.TimeoutError:
                r = None
            if not (r and r.get("accepted")):
                code = (r or {}).get("code", "no answer")
                self.refusals[code] = self.refusals.get(code, 0) + 1
            if (r and r.get("accepted")) or retry_until is None or time.monotonic() >= retry_until:
                return r
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)

    async def close(self):
        self.closing = True
        for t in self.tasks:
            t.cancel()
        if self.ws is not None:
            await self.ws.close()


def summary(case, ok, figures, notes=()):
    """Prints the case's one summary line (and its observations under it).
    `ok` is a bool, or a dict of named checks: the failed ones are named."""
    failed = [] if isinstance(ok, bool) else [k for k, v in ok.items() if not v]
    passed = ok if isinstance(ok, bool) else not failed
    line = " ".join(f"{k}={v}" for k, v in figures.items())
    verdict = "PASS" if passed else "FAIL" + (f" [{'; '.join(failed)}]" if failed else "")
    print(f"faults: {case:<10} {verdict}  {line}", flush=True)
    for n in notes:
        print(f"    {n}", flush=True)

