"""The backend's HTTP side: the chat page, the SDK it imports, a JSON API.

- `POST /api/login {"user", "device"?}` -> `{"token", "ws", "user", "rooms",
  "expiresAt"}`: an HS256 token the gateway accepts (same secret), with the
  rooms claim. No password: this is a demo of the plumbing, not of accounts.
- `GET /api/history?room=R&limit=50` -> `{"room", "messages": [...]}`, oldest first.
- `GET /api/online` -> `{"online": [{"user", "connections"}]}`.
- `GET /api/presence?user=U` -> `{"user", "online", "last_seen"}`: the
  gateway's last `online`/`offline` event of the user.
- `GET /api/pushes` -> `{"pushes": [{"user", "room", "from", "text",
  "last_seen", "ts"}]}`: the last push notifications decided (`notify.py`).
- `GET /` and `/static/...`: the page; `GET /sdk/...`: `clients/js/src/` of
  the repository (the SDK, ES modules, no build step).
"""

import json
import logging
import mimetypes
import os
import re
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import tokens

log = logging.getLogger("chat.web")

USER_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
DEVICE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_BODY = 4096


class App:
    """What the handlers need: the store, the secret, the addresses."""

    def __init__(self, store, secret, gateway_ws, rooms, token_ttl, static_dir, sdk_dir, pushes=None):
        self.store, self.secret, self.gateway_ws = store, secret, gateway_ws
        self.pushes = pushes
        self.rooms, self.token_ttl = rooms, token_ttl
        self.mounts = {"/static/": static_dir, "/sdk/": sdk_dir}
        self.index = os.path.join(static_dir, "index.html")


class Handler(BaseHTTPRequestHandler):
    app: App  # set on the class by serve()
    protocol_version = "HTTP/1.1"
    server_version = "chat-backend"

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)

    # ---- dispatch

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/api/history":
            q = parse_qs(url.query)
            room = q.get("room", [""])[0]
            if not room:
                return self._json(400, {"error": "room is required"})
            try:
                limit = max(1, min(int(q.get("limit", ["50"])[0]), 500))
            except ValueError:
                return self._json(400, {"error": "limit must be a number"})
            return self._json(200, {"room": room, "messages": self.app.store.history(room, limit)})
        if url.path == "/api/online":
            return self._json(200, {"online": self.app.store.online()})
        if url.path == "/api/presence":
            user = parse_qs(url.query).get("user", [""])[0]
            state = self.app.store.user_state(user)
            return self._json(200, {"user": user, "online": bool(state and state[0]),
                                    "last_seen": state[1] if state else None})
        if url.path == "/api/pushes":
            return self._json(200, {"pushes": self.app.pushes.recent() if self.app.pushes else []})
        if url.path in ("/", "/index.html"):
            return self._file(self.app.index)
        for prefix, root in self.app.mounts.items():
            if url.path.startswith(prefix):
                return self._file(_inside(root, url.path[len(prefix):]))
        self._json(404, {"error": "not found"})

    def do_POST(self):
        url = urlsplit(self.path)
        if url.path != "/api/login":
            return self._json(404, {"error": "not found"})
        body = self._body()
        if body is None:
            return self._json(400, {"error": "expected a JSON object"})
        user, device = body.get("user"), body.get("device") or ""
        if not isinstance(user, str) or not USER_RE.match(user):
            return self._json(400, {"error": "user: 1-32 letters, digits, '_', '.', '-'"})
        if not isinstance(device, str) or (device and not DEVICE_RE.match(device)):
            return self._json(400, {"error": "device: 1-64 letters, digits, '_', '.', '-'"})
        a = self.app
        token = tokens.mint(a.secret, user, a.rooms, a.token_ttl, device)
        self._json(200, {"token": token, "ws": a.gateway_ws, "user": user, "rooms": a.rooms,
                         "expiresAt": int(time.time()) + a.token_ttl})

    # ---- helpers

    def _body(self):
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if n <= 0 or n > MAX_BODY:
            return None
        try:
            body = json.loads(self.rfile.read(n))
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def _json(self, status: int, obj) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _file(self, path) -> None:
        if not path or not os.path.isfile(path):
            return self._json(404, {"error": "not found"})
        with open(path, "rb") as f:
            data = f.read()
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if path.endswith((".js", ".mjs")):
            ctype = "text/javascript"  # module scripts need a JavaScript type
        self.send_response(200)
        self.send_header("Content-Type", f"{ctype}; charset=utf-8" if ctype.startswith("text/") else ctype)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _inside(root: str, rel: str):
    """`root/rel`, or None when `rel` climbs out of `root`."""
    root = os.path.realpath(root)
    path = os.path.realpath(os.path.join(root, rel))
    return path if path.startswith(root + os.sep) else None


def serve(app: App, host: str, port: int) -> ThreadingHTTPServer:
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server
