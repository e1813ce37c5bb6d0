"""The fault cases of scripts/faults.sh. Usage (inside the clients'
namespace, as faults.sh runs it): cases.py CASE. Each case starts its own
nodes (net.sh), prints one summary line `faults: CASE PASS|FAIL figures...`
with its observations under it, and exits 0 on PASS, 1 on FAIL."""

import asyncio
import sys
import time
import traceback

from client import LONG, Client, alisted, ctl, now_ms, start_nodes, summary, until
from flows import Flow, pair, probe, totals
from netview import bus_up, watch


def q1_clean(q1):
    """Nothing twice, nothing out of order (losses are checked apart)."""
    return q1["dup"] == 0 and q1["reordered"] == 0


async def partition():
    """a and b cut from each other, both still reaching Redis (and c)."""
    start_nodes()
    alice, bob = await Client("alice", "a").connect(), await Client("bob", "b").connect()
    clients = [alice, bob]
    if await probe(alice, bob, "wab", 10) is None or await probe(bob, alice, "wba", 10) is None:
        return False, {}, ["no cross-node delivery before the cut"], clients
    rate, cut_s = (60, 30) if LONG else (40, 7)
    flows = [Flow(alice, bob, "ab1", 1, rate).start(), Flow(alice, bob, "ab0", 0, rate).start(),
             Flow(bob, alice, "ba1", 1, rate).start(), Flow(bob, alice, "ba0", 0, rate).start()]
    q1f = [f for f in flows if f.qos]
    await until(lambda: all(len(f.accepted) >= 20 for f in flows), 10)
    t_cut = now_ms()
    ctl("cut", "a", "b")
    notes = []
    # Both nodes still reach Redis: the registry must keep listing all three
    # for the whole cut; the links must be seen down (heartbeats, 5 s).
    missing, down_ms, end = set(), None, time.monotonic() + cut_s
    while time.monotonic() < end:
        for nid in "ab":
            ids = await alisted(nid)
            if ids is not None and ids != ["a", "b", "c"]:
                missing.add(f"{nid} listed {ids}")
        if down_ms is None and await bus_up("a", "b") == 0 and await bus_up("b", "a") == 0:
            down_ms = round(now_ms() - t_cut)
        await asyncio.sleep(0.25)
    t_heal = now_ms()
    ctl("heal", "a", "b")
    during = {f: f.between(t_cut, t_heal) for f in flows}
    got_during = sum(1 for f in q1f for s, i, _q, t in f.rcv.got if s == f.name and t < t_heal and f.sent_at.get(i, 0) >= t_cut)
    backlog = await until(lambda: all(f.done(during[f]) for f in q1f), 30)
    heal_ms = round(now_ms() - t_heal) if backlog else None
    up_ms = await watch(lambda: _both_up("a", "b"), 15)
    # Fresh traffic after the heal, then stop and let everything land.
    mark = now_ms()
    fresh = await until(lambda: all(f.done(f.since(mark)) and f.since(mark) for f in q1f), 15)
    for f in flows:
        await f.stop()
    settled = await until(lambda: all(f.done() for f in q1f), 20)
    q1, q0 = totals(q1f), totals([f for f in flows if not f.qos])
    q0_cut = totals([(f, during[f]) for f in flows if not f.qos])
    ok = {"QoS 1 of the cut all delivered after the heal": backlog and settled,
          "QoS 1 once and in order": q1_clean(q1),
          "fresh QoS 1 flows after the heal": fresh,
          "registry kept all 3 nodes": not missing,
          "links seen down during the cut": down_ms is not None,
          "links back up after the heal": up_ms is not None}
    figs = {**pair(q1, q0), "heal_ms": heal_ms}
    notes += [f"cut {cut_s} s: QoS 1 accepted during it {sum(len(during[f]) for f in q1f)},"
              f" delivered before the heal {got_during}; QoS 0 sent during it {q0_cut['sent']},"
              f" lost {q0_cut['lost']} (README: a broken bus link loses nothing while both nodes live, QoS 0 included)",
              f"links seen down {down_ms} ms after the cut; back up (2/2 each way) {up_ms} ms after the heal;"
              f" backlog delivered {heal_ms} ms after the heal",
              f"wire duplicates dropped by seq: {alice.wire_dups + bob.wire_dups}, seq gaps {alice.seq_gaps + bob.seq_gaps}"]
    if missing:
        notes.append("registry lost a node during the cut: " + "; ".join(sorted(missing)))
    if not settled:
        notes.append("not delivered: " + ", ".join(f"{f.name} {f.stats()['lost_idx']}" for f in q1f))
    return ok, figs, notes, clients


async def _both_up(x, y):
    return await bus_up(x, y) == 2 and await bus_up(y, x) == 2


CASES = {"partition": partition}


async def main(name):
    try:
        mod = CASES.get(name)
        if mod is None:
            for m in ("cases_redis", "cases_bus"):
                mod = getattr(__import__(m), "CASES", {}).get(name)
                if mod:
                    break
        if mod is None:
            print(f"faults: unknown case {name}", flush=True)
            return 2
        t0 = time.monotonic()
        ok, figs, notes, clients = await mod()
        figs["took_s"] = round(time.monotonic() - t0, 1)
        summary(name, ok, figs, notes)
        for c in clients:
            await c.close()
        return 0 if (ok if isinstance(ok, bool) else all(ok.values())) else 1
    except Exception:  # a broken case is a FAIL with its trace, never a pass
        summary(name, False, {}, traceback.format_exc().splitlines())
        return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
