"""Streams of messages between test clients, and their figures."""

import asyncio
import time

from client import now_ms, until
from netview import stuck_links_note


def blocks(rcv, stream, sent):
    """What `rcv` got of `stream` against the indexes `sent` (the accepted
    ones): a dict with sent, received, lost, dup, reordered, the lost
    indexes, and `unasked`: deliveries of indexes not in `sent` (a send
    answered UNAVAILABLE may still have been stored, as the README says)."""
    want = set(sent)
    seen, dup, reordered, top, unasked = set(), 0, 0, -1, 0
    for s, idx, _seq, _t in rcv.got:
        if s != stream:
            continue
        if idx not in want:
            unasked += 1
            continue
        if idx in seen:
            dup += 1
            continue
        seen.add(idx)
        if idx < top:
            reordered += 1
        top = max(top, idx)
    lost = sorted(want - seen)
    return {"sent": len(want), "received": len(seen), "lost": len(lost), "dup": dup,
            "reordered": reordered, "lost_idx": lost[:10], "unasked": unasked}


def arrived(rcv, stream, sent):
    """True once every index of `sent` of `stream` reached `rcv`."""
    want = set(sent)
    for s, idx, _seq, _t in rcv.got:
        if s == stream:
            want.discard(idx)
    return not want


def first_time(rcv, stream, after_idx=-1):
    """When `rcv` first got an index above `after_idx` of `stream` (ms), or None."""
    for s, idx, _seq, t in rcv.got:
        if s == stream and idx > after_idx:
            return t
    return None


class Flow:
    """One stream of messages `snd` -> `rcv`'s user at `qos`, sent one after
    another (each awaits its sendResult) at most `rate` per second until
    stopped. `accepted`: the indexes the gateway accepted (QoS 1: stored);
    `refused`: the other answers by code. With `retry`, a refused QoS 1
    send is sent again with the same clientMsgId, as a client does."""

    def __init__(self, snd, rcv, name, qos, rate, retry=False, timeout=5.0):
        self.timeout = timeout
        self.snd, self.rcv, self.name, self.qos, self.rate, self.retry = snd, rcv, name, qos, rate, retry
        self.accepted, self.sent_at, self.acked_at, self.refused = [], {}, {}, {}
        self.answer_ms = []  # (t_ms sent, ms to the answer, code or "accepted") of refused sends
        self.stopped = False
        self.task = None

    def start(self):
        self.task = asyncio.create_task(self._run())
        return self

    async def _run(self):
        i = 0
        while not self.stopped:
            t = now_ms()
            until_t = time.monotonic() + 20 if self.retry else None
            r = await self.snd.send(self.rcv.user, self.name, i, self.qos, timeout=self.timeout,
                                    retry_until=until_t)
            if not (r and r.get("accepted")):
                self.answer_ms.append((t, round(now_ms() - t), (r or {}).get("code", "no answer")))
            if r and r.get("accepted"):
                self.accepted.append(i)
                self.sent_at[i] = t
                self.acked_at[i] = now_ms()
            else:
                code = (r or {}).get("code", "no answer")
                self.refused[code] = self.refused.get(code, 0) + 1
            i += 1
            await asyncio.sleep(1.0 / self.rate)

    async def stop(self):
        self.stopped = True
        if self.task:
            await self.task

    def since(self, t_ms):
        """The accepted indexes sent at or after `t_ms`."""
        return [i for i in self.accepted if self.sent_at[i] >= t_ms]

    def between(self, t0, t1):
        return [i for i in self.accepted if t0 <= self.sent_at[i] < t1]

    def accepted_between(self, t0, t1):
        """The indexes whose acceptance came between `t0` and `t1`."""
        return [i for i in self.accepted if t0 <= self.acked_at[i] < t1]

    def first_arrival(self, t_ms):
        """When the first message sent at or after `t_ms` reached `rcv` (ms), or None."""
        times = [t for s, i, _q, t in self.rcv.got if s == self.name and self.sent_at.get(i, -1) >= t_ms]
        return min(times) if times else None

    def stats(self, sent=None):
        return blocks(self.rcv, self.name, self.accepted if sent is None else sent)

    def done(self, sent=None):
        return arrived(self.rcv, self.name, self.accepted if sent is None else sent)


async def probe(snd, rcv, name, timeout):
    """QoS 0 messages `snd` -> `rcv` every 50 ms until one arrives: the
    monotonic ms it arrived at, or None within `timeout` s."""
    end = time.monotonic() + timeout
    i = 0
    while time.monotonic() < end:
        await snd.send(rcv.user, name, i, 0, timeout=0.5)
        if await until(lambda: first_time(rcv, name) is not None, 0.05):
            return first_time(rcv, name)
        i += 1
    return None


def totals(flows):
    """Summed stats of `flows` (each a (flow, sent) pair or a flow)."""
    out = {"sent": 0, "received": 0, "lost": 0, "dup": 0, "reordered": 0}
    for f in flows:
        f, sent = f if isinstance(f, tuple) else (f, None)
        s = f.stats(sent)
        for k in out:
            out[k] += s[k]
    return out


def pair(q1, q0):
    """The summary's figures for QoS 1 and QoS 0 totals side by side."""
    return {k: f"q1:{q1[k]},q0:{q0[k]}" for k in ("sent", "received", "lost", "dup", "reordered")}


def finish(ok, figs, notes, clients, settled, q1f):
    """A case's result, with what was not delivered and links stuck down noted."""
    if not settled:
        notes.append("not delivered: " + ", ".join(f"{f.name} {f.stats()['lost_idx']}" for f in q1f))
    stuck = stuck_links_note()
    if stuck:
        notes.append(stuck)
    return ok, figs, notes, clients
