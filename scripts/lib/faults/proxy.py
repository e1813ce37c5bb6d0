"""A small TCP proxy that makes a link slow and lossy, for scripts/faults.sh.

    proxy.py --src IP --mode-file PATH --stats PATH LISTEN_IP:PORT=TARGET_IP:PORT...

Listens on each LISTEN address and forwards every connection to its TARGET
(connecting from --src). What it does to the bytes is read from the mode
file (checked every 50 ms; a missing file is `pass`), one line:

    pass                        forward at once
    slow DELAY_MS               each chunk held DELAY_MS (order kept)
    chaos DELAY_MS PERIOD_MS STALL_MS RESET_EVERY
                                slow, and every PERIOD_MS nothing moves for
                                STALL_MS; every RESET_EVERY-th stall ends
                                with every connection reset (RST)
    hold                        nothing is read or written (new connections
                                are accepted and held too)

Sockets get small buffers (SO_RCVBUF/SO_SNDBUF 64 KiB), so a held link
fills the sender's queue rather than the proxy's kernel. The counters
(connections, stalls, resets, bytes each way) are written to --stats
twice a second, on every change of mode and at exit (SIGTERM).
"""

import argparse
import asyncio
import json
import signal
import socket
import struct
import time

BUF = 64 * 1024


class State:
    def __init__(self, mode_file, stats_file):
        self.mode_file, self.stats_file = mode_file, stats_file
        self.mode = ["pass"]
        self.held = False  # nothing moves (hold, or a chaos stall)
        self.conns = set()  # the session tasks
        # bytes_fwd: dialer -> acceptor (whichever node dialed); bytes_back: the answers.
        self.stats = {"conns": 0, "stalls": 0, "resets": 0, "bytes_fwd": 0, "bytes_back": 0}
        self.moved = asyncio.Event()
        self.moved.set()

    def set_held(self, held):
        self.held = held
        if held:
            self.moved.clear()
        else:
            self.moved.set()

    def write_stats(self):
        with open(self.stats_file, "w") as f:
            json.dump({**self.stats, "mode": " ".join(self.mode)}, f)

    def delay(self):
        if self.mode[0] in ("slow", "chaos") and len(self.mode) > 1:
            return int(self.mode[1]) / 1000
        return 0.0

    def reset_all(self):
        """Every connection, both sides, closed with an RST (by its task)."""
        for task in list(self.conns):
            task.cancel()
        self.stats["resets"] += 1


async def control(st):
    """Follows the mode file; drives chaos' stalls and resets; writes the
    counters twice a second."""
    cycle_t, stalls, written = time.monotonic(), 0, 0.0
    while True:
        if time.monotonic() - written >= 0.5:
            st.write_stats()
            written = time.monotonic()
        try:
            with open(st.mode_file) as f:
                mode = f.read().split() or ["pass"]
        except OSError:
            mode = ["pass"]
        if mode != st.mode:
            st.mode = mode
            cycle_t = time.monotonic()
            st.set_held(mode[0] == "hold")
            st.write_stats()
        if mode[0] == "chaos":
            period, stall, every = int(mode[2]) / 1000, int(mode[3]) / 1000, int(mode[4])
            t = time.monotonic() - cycle_t
            if not st.held and t >= period:
                st.set_held(True)
                st.stats["stalls"] += 1
            elif st.held and t >= period + stall:
                stalls += 1
                if every and stalls % every == 0:
                    st.reset_all()
                st.set_held(False)
                cycle_t = time.monotonic()
        await asyncio.sleep(0.05)


async def pump(st, src, dst, key):
    """src -> dst, chunk by chunk, delayed and held as the mode says."""
    loop = asyncio.get_running_loop()
    queue = asyncio.Queue()

    async def writer():
        while True:
            due, data = await queue.get()
            if data is None:
                break
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            await st.moved.wait()
            await loop.sock_sendall(dst, data)
            st.stats[key] += len(data)

    w = asyncio.create_task(writer())
    try:
        while True:
            await st.moved.wait()
            data = await loop.sock_recv(src, BUF)
            if not data:
                break
            await queue.put((time.monotonic() + st.delay(), data))
        await queue.put((0, None))
        await w
        dst.shutdown(socket.SHUT_WR)
    except OSError:  # one side failed: the other direction ends too
        w.cancel()
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def small(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUF)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)


async def serve(st, listen, target, src_ip):
    loop = asyncio.get_running_loop()
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    small(lsock)
    lsock.bind(listen)
    lsock.listen(128)
    lsock.setblocking(False)
    while True:
        c, _ = await loop.sock_accept(lsock)
        asyncio.create_task(session(st, c, target, src_ip))


async def session(st, c, target, src_ip):
    loop = asyncio.get_running_loop()
    c.setblocking(False)
    st.stats["conns"] += 1
    u = socket.socket()
    small(u)
    u.setblocking(False)
    try:
        u.bind((src_ip, 0))
        await asyncio.wait_for(loop.sock_connect(u, target), 3)
    except (OSError, asyncio.TimeoutError):
        c.close()
        u.close()
        return
    me = asyncio.current_task()
    st.conns.add(me)
    try:
        await asyncio.gather(pump(st, c, u, "bytes_fwd"), pump(st, u, c, "bytes_back"))
    except asyncio.CancelledError:  # reset_all: linger 0, so close sends an RST
        for s in (c, u):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        st.conns.discard(me)
        c.close()
        u.close()


def addr(text):
    host, port = text.rsplit(":", 1)
    return host, int(port)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", required=True)
    ap.add_argument("--mode-file", required=True)
    ap.add_argument("--stats", required=True)
    ap.add_argument("maps", nargs="+")
    a = ap.parse_args()
    st = State(a.mode_file, a.stats)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    tasks = [asyncio.create_task(control(st))]
    for m in a.maps:
        listen, target = m.split("=")
        tasks.append(asyncio.create_task(serve(st, addr(listen), addr(target), a.src)))
    st.write_stats()
    print("proxy ready", " ".join(a.maps), flush=True)
    await stop.wait()
    st.write_stats()


if __name__ == "__main__":
    asyncio.run(main())
