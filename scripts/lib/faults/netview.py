"""What the nodes' admin ports say about the cluster, read off the event loop."""

import asyncio
import time

from client import aadmin, alisted, now_ms


async def bus_up(nid, peer):
    """Links `nid` has up to `peer` (one per shard): an int; 0 when it has
    no link to it at all; None when the admin port does not answer."""
    body = await aadmin(nid, "/metrics")
    if body is None:
        return None
    for line in body.splitlines():
        if line.startswith(f'gateway_bus_links_up{{peer="{peer}"'):
            return int(line.rsplit(" ", 1)[1])
    return 0


async def all_up(nodes="abc"):
    """Every node's links to every other node are all up (one per shard)."""
    for x in nodes:
        for y in nodes:
            if x != y and await bus_up(x, y) != 2:
                return False
    return True


async def links_table(nodes="abc"):
    """`x->y up/links` for every ordered pair, for a note."""
    out = []
    for x in nodes:
        for y in nodes:
            if x != y:
                out.append(f"{x}->{y} {await links(x, y)}")
    return ", ".join(out)


async def links(nid, peer):
    """`up/links` of `nid` toward `peer`, "none" (no link), "no answer"."""
    body = await aadmin(nid, "/metrics")
    if body is None:
        return "no answer"
    for line in body.splitlines():
        if line.startswith(f'gateway_bus_links_up{{peer="{peer}"'):
            return line.rsplit(" ", 1)[1] + "/" + line.split('links="')[1].split('"')[0]
    return "none"


async def watch(pred, secs, step=0.1):
    """Polls the coroutine function `pred` for up to `secs` s: the ms it took
    to hold, or None."""
    t0, end = now_ms(), time.monotonic() + secs
    while time.monotonic() < end:
        if await pred():
            return round(now_ms() - t0)
        await asyncio.sleep(step)
    return None


async def listing(nid, node):
    """Whether `nid`'s /nodes lists `node` (None: no answer)."""
    ids = await alisted(nid)
    return None if ids is None else node in ids


def log_lines(text, nodes="abc"):
    """The lines of this case's node logs that contain `text`, colours
    stripped, as (node, line)."""
    import os
    import re

    from client import DIR

    out = []
    for n in nodes:
        try:
            with open(os.path.join(DIR, f"node-{n}.log"), errors="replace") as f:
                for line in f:
                    if text in line:
                        out.append((n, re.sub(r"\x1b\[[0-9;]*m", "", line).strip()))
        except OSError:
            pass
    return out


def stuck_links_note():
    """One line naming the links a peer's WELCOME kept down (relay: `WELCOME
    says batch N was received, it was never sent`), or None."""
    hits = log_lines("was received, it was never sent")
    if not hits:
        return None
    per = {}
    for n, line in hits:
        shard = line.split("shard=")[1].split()[0] if "shard=" in line else "?"
        peer = line.split("peer=")[1].split()[0] if "peer=" in line else "?"
        batch = line.split("WELCOME says batch ")[1].split()[0]
        key = f"{n} shard {shard} -> {peer}"
        per.setdefault(key, [0, batch])[0] += 1
    return ("links refused by their peer's WELCOME ('batch N was received, it was never sent'; the"
            " peer kept its dedupe state while this node dropped and re-added it): "
            + "; ".join(f"{k}: {c} times (batch {b})" for k, (c, b) in sorted(per.items())))
