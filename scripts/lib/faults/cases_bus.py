"""The cases about the bus itself: a slow, lossy a-b link through the proxy
(slowlink) and a node killed and started again with the same id (restart)."""

import asyncio
import base64
import json
import os
import time

from client import DIR, LONG, Client, ametric, ctl, node, now_ms, start_nodes, until
from flows import Flow, finish, pair, probe, totals
from netview import links, log_lines, watch

QUEUE_CAP = 32 << 20  # relay::Config::max_queue_bytes, per link (README: 32 MiB)


def mode(m):
    with open(os.path.join(DIR, "proxy.mode"), "w") as f:
        f.write(m + "\n")


def proxy_stats():
    try:
        with open(os.path.join(DIR, "proxy.stats")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


async def both_live(flows, mark, secs):
    """ms until the first message of each flow sent after `mark` arrived
    (None for a flow whose first one did not within `secs`)."""
    async def first(f):
        sent = f.since(mark)
        return bool(sent) and f.done(sent[:1])
    return {f.name: await watch(lambda f=f: first(f), secs) for f in flows}


async def slowlink():
    """a <-> b over the proxy: delayed, stalled and reset (chaos), then held
    until a's link queue to b passes its bound, then released."""
    mode("pass")
    ctl("route", "a", "b", "p")  # a reaches b's node address through p ...
    ctl("route", "b", "a", "p")  # ... and b reaches a's: both directions proxied
    start_nodes()
    maps = [f"{node(n)['ws'].split(':')[0]}:{hp.rsplit(':', 1)[1]}={alt}:{hp.rsplit(':', 1)[1]}"
            for n, alt in (("a", "10.77.1.1"), ("b", "10.77.1.2")) for hp in node(n)["bus"].split(",")]
    ctl("proxy-start", *maps)
    alice, bob = await Client("alice", "a").connect(), await Client("bob", "b").connect()
    blaster, sink = await Client("blaster", "a").connect(), Client("sink", "b")
    sink.discard = True
    await sink.connect()
    clients = [alice, bob, blaster, sink]
    if await probe(alice, bob, "wab", 15) is None or await probe(bob, alice, "wba", 15) is None:
        return False, {}, ["no cross-node delivery through the proxy"], clients
    rate, chaos_s = (60, 40) if LONG else (40, 8)
    flows = [Flow(alice, bob, "ab1", 1, rate).start(), Flow(alice, bob, "ab0", 0, rate).start(),
             Flow(bob, alice, "ba1", 1, rate).start(), Flow(bob, alice, "ba0", 0, rate).start()]
    by = {f.name: f for f in flows}
    q1f = [f for f in flows if f.qos]
    await until(lambda: all(len(f.accepted) >= 10 for f in flows), 10)
    # 1. chaos: 30 ms per chunk, every 1.2 s a 0.6 s stall, every 3rd stall ends in RSTs.
    t_chaos = now_ms()
    mode("chaos 30 1200 600 3")
    await asyncio.sleep(chaos_s)  # the length of the fault itself, not a wait for an event
    chaos = proxy_stats()
    mode("pass")
    t_pass = now_ms()
    live1 = await both_live([by["ab0"], by["ba0"]], t_pass, 15)
    q1_chaos = await until(lambda: all(f.done(f.between(0, t_pass)) for f in q1f), 20)
    heal_ms = None if None in live1.values() else max(live1.values())
    # 2. hold: nothing moves a <-> b while the blaster sends a's link to b
    # more than its bound; a refusal must be counted and the queue bounded.
    refused0 = await ametric("a", "gateway_bus_refused_total") or 0
    if not await reach(blaster, sink, 10):
        return False, {}, ["the sink on b got nothing from a"], clients
    mode("hold")
    t_hold = now_ms()
    payload = base64.b64encode(os.urandom(48000)).decode()
    blasted, refused, peak, end = 0, 0, 0, time.monotonic() + (60 if LONG else 30)
    extra = None
    while time.monotonic() < end:
        for _ in range(20):
            await blaster.ws.send(json.dumps({"send": {"user": "sink", "clientMsgId": f"bl{blasted}",
                                                       "payload": payload, "qos": "QOS_AT_MOST_ONCE"}}))
            blasted += 1
        refused = (await ametric("a", "gateway_bus_refused_total") or 0) - refused0
        peak = max(peak, await ametric("a", 'gateway_bus_queued_bytes{peer="b"}') or 0)
        if refused > 0 and extra is None:
            extra = blasted + 100  # a little more past the bound
        if extra is not None and blasted >= extra:
            break
    # The queue gauge is published every 2 s: read it while still held, for
    # two publications past the refusal.
    end = time.monotonic() + 4.5
    while time.monotonic() < end:
        peak = max(peak, await ametric("a", 'gateway_bus_queued_bytes{peer="b"}') or 0)
        await asyncio.sleep(0.25)
    held_ms = round(now_ms() - t_hold)
    mode("pass")
    t_release = now_ms()
    live2 = await both_live([by["ab0"], by["ba0"]], t_release, 20)
    drained = await watch(lambda: _queue_below("a", 1 << 20), 30)
    # Their next messages bring what waited in the inbox (envelopes refused
    # at the bound): let the flows run a little, then stop and settle.
    await until(lambda: all(len(f.since(t_release)) >= 20 for f in q1f), 10)
    for f in flows:
        await f.stop()
    settled = await until(lambda: all(f.done() for f in q1f), 20)
    q1, q0 = totals(q1f), totals([f for f in flows if not f.qos])
    ps = proxy_stats()
    ok = {"the a-b bus went through the proxy": ps.get("conns", 0) >= 4 and ps.get("bytes_fwd", 0) > QUEUE_CAP,
          "QoS 1 of the chaos delivered once it ended": q1_chaos,
          "live both ways after the chaos": heal_ms is not None,
          "refusals counted at the bound": refused > 0,
          "queue held at its 32 MiB bound": QUEUE_CAP - (2 << 20) <= peak <= QUEUE_CAP + (1 << 20),
          "live both ways after the release": None not in live2.values(),
          "queue drained after the release": drained is not None,
          "accepted QoS 1 all delivered": settled and q1["lost"] == 0,
          "QoS 1 once and in order": q1["dup"] == 0 and q1["reordered"] == 0}
    figs = {**pair(q1, q0), "heal_ms": heal_ms}
    q0_chaos = totals([(f, f.between(t_chaos, t_pass)) for f in flows if not f.qos])
    notes = [
        f"chaos {chaos_s} s: {chaos.get('stalls')} stalls of 600 ms, {chaos.get('resets')} resets (RST both sides),"
        f" 30 ms per chunk; QoS 0 lost in it {q0_chaos['lost']}/{q0_chaos['sent']}; live both ways"
        f" {live1} ms after it ended; QoS 1 sent by then all delivered: {q1_chaos}",
        f"hold {held_ms} ms: {blasted} QoS 0 messages of 48 KB blasted a->b; a refused {refused:.0f} envelopes"
        f" (gateway_bus_refused_total); a's queue to b read at {peak / (1 << 20):.2f} MiB while held (bound 32 MiB"
        f" per link); under 1 MiB again {drained} ms after the release",
        f"after the release: live both ways {live2} ms; sink got {sink.frames} frames"
        f" ({_events(sink) or 'no close'}); proxy totals {ps}",
        f"wire duplicates dropped by seq: {alice.wire_dups + bob.wire_dups}, seq gaps {alice.seq_gaps + bob.seq_gaps}",
    ]
    return finish(ok, figs, notes, clients, settled, q1f)


async def reach(snd, sink, secs):
    """QoS 0 messages `snd` -> the sink every 50 ms until it counts one more
    frame (the sink does not read them)."""
    base, end, i = sink.frames, time.monotonic() + secs, 0
    while time.monotonic() < end:
        await snd.send(sink.user, "wsink", i, 0, timeout=0.5)
        i += 1
        if await until(lambda: sink.frames > base, 0.05):
            return True
    return False


async def _queue_below(nid, limit):
    q = await ametric(nid, 'gateway_bus_queued_bytes{peer="b"}')
    return q is not None and q < limit


def _events(c):
    return "; ".join(e for _t, e in c.events)


async def restart():
    """b killed (-9) under traffic and started at once with the same id (a
    new incarnation) while a's links to the old one drain."""
    start_nodes()
    alice, carol = await Client("alice", "a").connect(), await Client("carol", "c").connect()
    bob = await Client("bob", "b", reconnect=True).connect()
    clients = [alice, carol, bob]
    for s in (alice, carol):
        if await probe(s, bob, f"w{s.user}", 10) is None:
            return False, {}, [f"no delivery {s.user} -> bob before the restart"], clients
    rate = 60 if LONG else 40
    flows = [Flow(alice, bob, "ab1", 1, rate, retry=True).start(), Flow(carol, bob, "cb1", 1, rate, retry=True).start(),
             Flow(alice, bob, "ab0", 0, rate).start()]
    q1f = flows[:2]
    inc0 = _incarnation("a", "b")
    await until(lambda: all(len(f.accepted) >= rate for f in flows), 10)  # a second of traffic
    t_kill = now_ms()
    ctl("node-kill", "b", "KILL")
    ctl("node-start", "b")
    t_ready = now_ms()
    back = await until(lambda: sum(1 for _t, e in bob.events if e == "authOk") >= 2, 15)
    reconnect_ms = round(next(t for t, e in bob.events if e == "authOk" and t > t_kill) - t_kill) if back else None
    new_inc = await watch(lambda: _new_inc("a", inc0), 15)
    # Live again: a QoS 0 message sent after the kill reaches bob (those sent
    # before he is back and his interest is known are lost: QoS 0).
    live = await until(lambda: flows[2].first_arrival(t_kill) is not None, 15)
    heal_ms = round(flows[2].first_arrival(t_kill) - t_kill) if live else None
    await until(lambda: all(len(f.since(t_ready)) >= rate * (10 if LONG else 3) for f in q1f), 40)
    for f in flows:
        await f.stop()
    settled = await until(lambda: all(f.done() for f in q1f), 15)
    q1, q0 = totals(q1f), totals(flows[2:])
    lost0 = flows[2].stats()
    lost_at = [round(flows[2].sent_at[i] - t_kill) for i in flows[2].stats()["lost_idx"]]
    others = log_lines("another process uses this node id")
    ok = {"bob reconnected": back,
          "a saw the new incarnation": new_inc is not None,
          "a->b live again": heal_ms is not None,
          "accepted QoS 1 all delivered": settled and q1["lost"] == 0,
          "QoS 1 once and in order": q1["dup"] == 0 and q1["reordered"] == 0,
          "nothing at or below last_seq came again": bob.wire_dups == 0}
    figs = {**pair(q1, q0), "heal_ms": heal_ms}
    notes = [
        f"b killed and restarted in {round(t_ready - t_kill)} ms (new incarnation seen by a after {new_inc} ms);"
        f" bob back (last_seq in the URL) {reconnect_ms} ms after the kill; first QoS 0 sent after the kill"
        f" delivered {heal_ms} ms after it",
        f"bob: {bob.wire_dups} deliveries at or below his last seq (README: with last_seq nothing comes again),"
        f" {bob.seq_gaps} seq gaps, {bob.gap_frames} gap frames; QoS 0 lost {lost0['lost']}/{lost0['sent']},"
        f" sent at (ms from the kill) {lost_at}... (README: QoS 0 to a dead node is lost)",
        f"links after: a->b {await links('a', 'b')}, c->b {await links('c', 'b')};"
        f" 'another process uses this node id' logged {len(others)} times",
    ]
    return finish(ok, figs, notes, clients, settled, q1f)


def _incarnation(nid, of):
    from client import admin
    body = admin(nid, "/nodes")
    for n in json.loads(body or '{"nodes": []}')["nodes"]:
        if n["id"] == of:
            return n["incarnation"]
    return None


async def _new_inc(nid, old):
    inc = await asyncio.to_thread(_incarnation, nid, "b")
    return inc is not None and inc != old


CASES = {"slowlink": slowlink, "restart": restart}
