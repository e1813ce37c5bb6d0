#!/usr/bin/env python3
"""An example chat backend behind the gateway.

It mints the clients' tokens, reads what they send to the backend from the
gateway's upstream stream, keeps the history of each room in SQLite and
publishes every message to its room through the downstream stream; it keeps
who is online from the gateway's lifecycle events; and it serves a chat
page built on the JavaScript SDK. See README.md next to this file.

    python3 backend.py --redis redis://127.0.0.1:6379/ --jwt-secret devsecret
"""

import argparse
import logging
import os
import signal
import socket
import sys
import threading

import redis

from chatstore import Store
from notify import Pushes
from streams import EventsReader, UpstreamReader
from web import App, serve

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--redis", default="redis://127.0.0.1:6379/", help="the gateway's Redis")
    p.add_argument("--jwt-secret", default=os.environ.get("CHAT_JWT_SECRET"),
                   help="HS256 secret, the gateway's --jwt-secret (or $CHAT_JWT_SECRET)")
    p.add_argument("--gateway-ws", default="ws://127.0.0.1:8080/ws",
                   help="the gateway's WebSocket URL, handed to the page at login")
    p.add_argument("--host", default="127.0.0.1", help="HTTP listen address")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (0: any free port)")
    p.add_argument("--db", default=os.path.join(HERE, "chat.db"), help="SQLite file")
    p.add_argument("--rooms", default="lobby,general,random", help="rooms in every token's claim")
    p.add_argument("--token-ttl", type=int, default=3600, help="token lifetime in seconds")
    p.add_argument("--group", default="chat", help="consumer group on gw:upstream")
    p.add_argument("--events-group", default="chat-presence", help="consumer group on gw:events")
    p.add_argument("--consumer", default=f"{socket.gethostname()}-{os.getpid()}",
                   help="this worker's consumer name in both groups")
    p.add_argument("--sdk-dir", default=os.path.join(REPO, "clients", "js", "src"),
                   help="served under /sdk/")
    p.add_argument("-v", "--verbose", action="store_true", help="log every HTTP request")
    a = p.parse_args(argv)
    if not a.jwt_secret:
        p.error("--jwt-secret is required (the same as the gateway's)")
    a.rooms = [r.strip() for r in a.rooms.split(",") if r.strip()]
    return a


def main(argv=None) -> int:
    a = parse_args(argv if argv is not None else sys.argv[1:])
    logging.basicConfig(level=logging.DEBUG if a.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    log = logging.getLogger("chat")
    if not os.path.isdir(a.sdk_dir):
        log.warning("no SDK at %s: the page will not load (--sdk-dir)", a.sdk_dir)

    store = Store(a.db)
    r = redis.Redis.from_url(a.redis, socket_timeout=10, health_check_interval=30)
    stop = threading.Event()
    pushes = Pushes()
    readers = [
        UpstreamReader(r, a.group, a.consumer, stop, store, a.rooms, pushes),
        EventsReader(r, a.events_group, a.consumer, stop, store),
    ]
    app = App(store, a.jwt_secret, a.gateway_ws, a.rooms, a.token_ttl,
              os.path.join(HERE, "static"), a.sdk_dir, pushes)
    try:
        server = serve(app, a.host, a.port)
    except OSError as e:
        print(f"backend: cannot listen on {a.host}:{a.port}: {e}", file=sys.stderr)
        return 1

    def shutdown(*_):
        stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    for t in readers:
        t.start()
    host, port = server.server_address[:2]
    log.info("serving http://%s:%d (gateway %s, redis %s, db %s)", host, port, a.gateway_ws, a.redis, a.db)
    print(f"ready http={host}:{port}", flush=True)
    server.serve_forever(poll_interval=0.5)
    server.server_close()
    for t in readers:
        t.join(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
