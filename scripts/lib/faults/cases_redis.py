"""The cases about Redis: a node cut from it (rediscut) and a Redis Cluster
master killed with its replica promoted (failover)."""

import asyncio
import base64
import json
import os
import time

from client import LONG, Client, aadmin, alisted, ametric, ctl, now_ms, start_nodes, until
from flows import Flow, finish, pair, probe, totals
from netview import all_up, links, links_table, listing, watch


def q1_clean(q1):
    """Nothing twice, nothing out of order (losses are checked apart)."""
    return q1["dup"] == 0 and q1["reordered"] == 0


async def rediscut():
    """a loses its link to Redis (not to b and c) for longer than the
    registry TTL, then gets it back."""
    ttl = int(os.environ.get("FAULTS_TTL_MS", "3000"))
    start_nodes()
    alice, dave, bob = Client("alice", "a"), Client("dave", "a"), Client("bob", "b")
    clients = [alice, dave, bob]
    for c in clients:
        await c.connect()
    if await probe(alice, bob, "wab", 10) is None or await probe(bob, alice, "wba", 10) is None:
        return False, {}, ["no cross-node delivery before the cut"], clients
    rate, cut_s = (40, 25) if LONG else (25, 2.5 * ttl / 1000)
    # QoS 1 senders on a retry UNAVAILABLE with the same clientMsgId, as the
    # README asks of clients (a retry is answered from the dedupe record).
    flows = [Flow(alice, bob, "ab1", 1, rate, retry=True, timeout=15).start(), Flow(alice, bob, "ab0", 0, rate).start(),
             Flow(bob, alice, "ba1", 1, rate).start(), Flow(bob, alice, "ba0", 0, rate).start(),
             Flow(alice, dave, "ad0", 0, rate).start(), Flow(alice, dave, "ad1", 1, rate, retry=True, timeout=15).start()]
    by = {f.name: f for f in flows}
    q1f = [f for f in flows if f.qos]
    await until(lambda: all(len(f.accepted) >= 10 for f in flows), 10)
    err0 = await ametric("a", "gateway_registry_errors_total")
    t_cut = now_ms()
    ctl("cut", "a", "r")
    # The README: an entry not refreshed expires within the TTL and the peers
    # drop the node (config: "killed, cut from Redis"); the cut node keeps
    # its last view ("Redis stops"). Watch both for the whole cut.
    gone = {"b": None, "c": None}
    a_view, seen_links, routed_a, end = set(), [], 0, time.monotonic() + cut_s
    probes = []  # a QoS 1 send on a every second of the cut, each on its own: when answered, how
    while time.monotonic() < end:
        if len(probes) < (now_ms() - t_cut) // 1000 + 1:
            probes.append(asyncio.create_task(_timed(dave, alice, f"pq{len(probes)}", t_cut)))
        for nid in "bc":
            if gone[nid] is None and await listing(nid, "a") is False:
                gone[nid] = round(now_ms() - t_cut)
        a_view.add(",".join(await alisted("a") or ["no answer"]))
        state = f"a->b {await links('a', 'b')}, b->a {await links('b', 'a')}"
        if not seen_links or seen_links[-1][1] != state:
            seen_links.append((round(now_ms() - t_cut), state))
        r = await aadmin("b", "/route?user=zed")
        if gone["b"] is not None and r and json.loads(r).get("node") == "a":
            routed_a += 1
        await asyncio.sleep(0.2)
    t_heal = now_ms()
    during = {f: f.between(t_cut, t_heal) for f in flows}
    ctl("heal", "a", "r")
    await asyncio.wait(probes, timeout=30)
    back = {nid: await watch(lambda nid=nid: listing(nid, "a"), 15) for nid in "bc"}
    errs = (await ametric("a", "gateway_registry_errors_total") or 0) - (err0 or 0)
    # Live both ways again: the first QoS 0 message sent after the heal arrives.
    mark = now_ms()
    live = {n: await watch(lambda n=n: _first_in(by[n], mark), 10) for n in ("ab0", "ba0")}
    heal_ms = None if None in live.values() else round(max(live.values()) + mark - t_heal)
    # Every link back up (the README: links have their own heartbeats; when
    # Redis answers the nodes find each other again).
    all_ms = await watch(all_up, 10)
    after_links = await links_table()
    # The flows go on: their next QoS 1 messages are the "next message" that
    # brings what waited in the inbox (README, Many nodes: Routing).
    for f in flows:
        await f.stop()
    settled = await until(lambda: all(f.done() for f in q1f), 15)
    resumed = False
    if not settled:  # what the README offers next: reconnect and resume
        resumed = True
        for c in (alice, bob):
            await c.close()
            c.closing = False
            await c.connect()
        settled = await until(lambda: all(f.done() for f in q1f), 10)
    q1, q0 = totals(q1f), totals([f for f in flows if not f.qos])
    local0 = by["ad0"].stats(during[by["ad0"]])
    # A send may be stored in the instant the link goes down: those of the
    # cut's first second are not judged.
    judged = {n: by[n].accepted_between(t_cut + 1000, t_heal) for n in ("ab1", "ad1")}
    refused = dict(alice.refusals)
    ok = {"peers dropped a within 2 ttl": None not in gone.values() and max(gone.values()) <= 2 * ttl,
          "/route never answered a": routed_a == 0,
          "local QoS 0 on a delivered": local0["lost"] == 0,
          "no QoS 1 accepted on a without Redis": not any(judged.values()),
          "a listed again": None not in back.values(),
          "QoS 0 live both ways after the heal": heal_ms is not None,
          "every link up after the heal": all_ms is not None,
          "accepted QoS 1 all delivered": settled,
          "QoS 1 once and in order": q1_clean(q1)}
    figs = {**pair(q1, q0), "heal_ms": heal_ms}
    cross0 = {n: by[n].stats(during[by[n]]) for n in ("ab0", "ba0")}
    post0 = {n: by[n].stats(by[n].since(t_heal)) for n in ("ab0", "ba0")}
    notes = [
        f"cut {cut_s:.1f} s (ttl {ttl} ms): b dropped a from /nodes after {gone['b']} ms, c after {gone['c']} ms;"
        f" b's /route answered a {routed_a} times after that",
        f"a's own /nodes during the cut: {' | '.join(sorted(a_view))}; a's registry errors +{errs:.0f}",
        "links (up/per shard) during the cut, at +ms: " + " | ".join(f"{t}: {x}" for t, x in seen_links),
        f"a QoS 1 send on a every second of the cut, alone (sent at +ms, answered at +ms, code):"
        f" {[p.result() if p.done() else 'no answer' for p in probes]}; of those refused, delivered anyway (stored late): {_unasked(alice, 'pq')}",
        f"QoS 1 senders on a (retrying): accepted during the cut's last {cut_s - 1:.1f} s:"
        f" {len(judged['ab1'])} to bob, {len(judged['ad1'])} to dave (local); answers not accepted (whole case) {refused}",
        f"QoS 0 during the cut: a->a (local) {local0['received']}/{local0['sent']} delivered;"
        f" a->b {cross0['ab0']['received']}/{cross0['ab0']['sent']}; b->a {cross0['ba0']['received']}/{cross0['ba0']['sent']}",
        f"clients on a during the cut: {_events(alice, t_cut, t_heal) or 'no goAway, error or close'}",
        f"after the heal: listed again by b {back['b']} ms, c {back['c']} ms; first QoS 0 sent after it"
        f" delivered a->b {live['ab0']} ms, b->a {live['ba0']} ms later; every link up again {all_ms} ms"
        f" later (links then: {after_links});"
        f" QoS 0 sent after the heal lost a->b {post0['ab0']['lost']}/{post0['ab0']['sent']},"
        f" b->a {post0['ba0']['lost']}/{post0['ba0']['sent']};"
        f" accepted QoS 1 all delivered: {settled}{' (only after a reconnect with resume)' if resumed else ''}",
        f"wire duplicates dropped by seq: {sum(c.wire_dups for c in clients)}, seq gaps {sum(c.seq_gaps for c in clients)}",
    ]
    return finish(ok, figs, notes, clients, settled, q1f)


async def _timed(snd, rcv, name, t0):
    t = now_ms()
    r = await snd.send(rcv.user, name, 0, 1, timeout=30)
    code = "no answer" if r is None else ("accepted" if r.get("accepted") else r.get("code"))
    return round(t - t0), round(now_ms() - t0), code


async def _first_in(flow, mark):
    sent = flow.since(mark)
    return bool(sent) and flow.done(sent[:1])


def _unasked(rcv, prefix):
    return sum(1 for s, _i, _q, _t in rcv.got if s.startswith(prefix))


def _events(c, t0, t1):
    return "; ".join(e for t, e in c.events if t0 <= t <= t1)


def crc16(data):
    """Redis Cluster's key hash (CRC16/XMODEM)."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def user_slot(user):
    """The slot of a user's keys: their hash tag is the name in base64url."""
    return crc16(base64.urlsafe_b64encode(user.encode()).rstrip(b"=")) % 16384


RC_PORTS = [7001, 7002, 7003, 7004, 7005, 7006]


def masters(ask):
    """{port: [(lo, hi)...]} of the masters not marked failing, as server
    `ask` sees them; {} when it does not answer."""
    out = ctl("rc-cli", str(ask), "cluster", "nodes", check=False)
    res = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) < 8 or "master" not in f[2] or "fail" in f[2]:
            continue
        port = int(f[1].split("@")[0].rsplit(":", 1)[1])
        res[port] = [tuple(map(int, r.split("-"))) if "-" in r else (int(r), int(r))
                     for r in f[8:] if not r.startswith("[")]
    return res


def owner(ms, slot):
    return next((p for p, rs in ms.items() if any(lo <= slot <= hi for lo, hi in rs)), None)


async def failover():
    """The Redis Cluster master holding the registry and both users' keys
    is killed (-9); its replica takes over."""
    # A failover longer than the registry TTL (cluster-node-timeout 3000 ms,
    # as any production timeout is): every entry expires meanwhile.
    ctl("rc-start", "3000")
    ms = masters(RC_PORTS[0])
    victim = owner(ms, crc16(b"cluster") % 16384)
    # Users whose keys live on the victim too.
    names = [f"{p}{i}" for p in ("alice", "bob") for i in range(500)]
    on_victim = [n for n in names if owner(ms, user_slot(n)) == victim]
    u_a = next(n for n in on_victim if n.startswith("alice"))
    u_b = next(n for n in on_victim if n.startswith("bob"))
    start_nodes()
    alice, bob = await Client(u_a, "a").connect(), await Client(u_b, "b").connect()
    clients = [alice, bob]
    if await probe(alice, bob, "wab", 10) is None or await probe(bob, alice, "wba", 10) is None:
        return False, {}, ["no cross-node delivery before the failover"], clients
    rate = 60 if LONG else 40
    flows = [Flow(alice, bob, "ab1", 1, rate, retry=True).start(), Flow(bob, alice, "ba1", 1, rate, retry=True).start(),
             Flow(alice, bob, "ab0", 0, rate).start(), Flow(bob, alice, "ba0", 0, rate).start()]
    by = {f.name: f for f in flows}
    q1f = flows[:2]
    await until(lambda: all(len(f.accepted) >= 30 for f in flows), 15)
    refr0 = {n: await ametric(n, "gateway_registry_refreshes_total") for n in "abc"}
    t_kill = now_ms()
    ctl("rc-kill", str(victim))
    ask = next(p for p in RC_PORTS if p != victim)
    fewest, promoted = {n: 3 for n in "abc"}, None
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if promoted is None:
            now_owner = owner(masters(ask), crc16(b"cluster") % 16384)
            if now_owner not in (None, victim):
                promoted = (round(now_ms() - t_kill), now_owner)
                t_prom = now_ms()
        for n in "abc":
            ids = await alisted(n)
            if ids is not None:
                fewest[n] = min(fewest[n], len(ids))
        if promoted and now_ms() - t_prom > (10000 if LONG else 3000):
            break
        await asyncio.sleep(0.2)
    if promoted is None:
        return False, {}, [f"the replica of {victim} was not promoted within 30 s"], clients
    # Whatever is sent from now on must all arrive, live, both ways.
    mark = now_ms()
    live = {n: await watch(lambda n=n: _first_in(by[n], mark), 10) for n in ("ab0", "ba0")}
    await until(lambda: all(len(f.since(mark)) >= 20 for f in q1f), 10)
    for f in flows:
        await f.stop()
    settled = await until(lambda: all(f.done() for f in q1f), 10 if None not in live.values() else 3)
    resumed = False
    if not settled:  # the README's next step: reconnect and resume
        resumed = True
        for c in clients:
            await c.close()
            c.closing = False
            await c.connect()
        settled = await until(lambda: all(f.done() for f in q1f), 10)
    listed_all = {n: await watch(lambda n=n: _lists_all(n), 10) for n in "abc"}
    all_ms = await watch(all_up, 10)
    after_links = await links_table()
    refr = {n: (await ametric(n, "gateway_registry_refreshes_total") or 0) - (refr0[n] or 0) for n in "abc"}
    q1, q0 = totals(q1f), totals(flows[2:])
    phases = {"before": (0, t_kill), "failover": (t_kill, t_prom), "after": (t_prom, now_ms() + 1)}
    lost = {k: sum(f.stats(f.between(*v))["lost"] for f in q1f) for k, v in phases.items()}
    late = [f.stats(f.since(mark)) for f in q1f]
    late0 = {n: by[n].stats(by[n].since(mark)) for n in ("ab0", "ba0")}
    ok = {"QoS 1 sent after the failover all delivered": all(x["lost"] == 0 for x in late),
          "QoS 1 once and in order": q1["dup"] == 0 and q1["reordered"] == 0,
          "registry lists all 3 again": None not in listed_all.values(),
          "registry refreshes go on": all(v > 0 for v in refr.values()),
          "QoS 0 live both ways after the failover": None not in live.values(),
          "every link up after the failover": all_ms is not None}
    figs = {**pair(q1, q0), "heal_ms": promoted[0]}
    notes = [
        f"killed master :{victim} (slots of the registry, {u_a} and {u_b}); :{promoted[1]} took them"
        f" {promoted[0]} ms later (cluster-node-timeout 3000 ms; registry ttl 3000 ms)",
        f"QoS 1 lost by phase (accepted, never delivered): before the kill {lost['before']},"
        f" during the failover {lost['failover']}, after the promotion {lost['after']}"
        f" (a write the old master acknowledged but had not replicated may be lost);"
        f" sent after the cluster settled: {sum(x['sent'] for x in late)}, lost {sum(x['lost'] for x in late)}",
        f"answers not accepted (retried): {alice.refusals} / {bob.refusals}; wire duplicates dropped by seq"
        f" {alice.wire_dups + bob.wire_dups}, seq gaps {alice.seq_gaps + bob.seq_gaps}, gap frames"
        f" {alice.gap_frames + bob.gap_frames}; all delivered {settled}{' (after a resume)' if resumed else ''}",
        f"live again after the cluster settled: first QoS 0 a->b after {live['ab0']} ms, b->a after"
        f" {live['ba0']} ms; QoS 0 sent from then on lost a->b {late0['ab0']['lost']}/{late0['ab0']['sent']},"
        f" b->a {late0['ba0']['lost']}/{late0['ba0']['sent']}",
        f"registry: fewest nodes listed during the failover {fewest}; all 3 listed again after"
        f" {listed_all} ms; refreshes since the kill {refr}; every link up {all_ms} ms later"
        f" (links then: {after_links})",
    ]
    return finish(ok, figs, notes, clients, settled, q1f)


async def _lists_all(n):
    return await alisted(n) == ["a", "b", "c"]


CASES = {"rediscut": rediscut, "failover": failover}
