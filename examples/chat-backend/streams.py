"""The backend's two readers of the gateway's Redis streams.

- `gw:upstream`: what clients send to the backend. A chat message
  (`{"room", "text"}` in `payload`) is stored in the history and published
  to its room through `gw:downstream` (QoS 1, `id` = the gateway's msg_id,
  so a message handled twice reaches each member once).
- `gw:events` (gateway started with `--events`): connect and disconnect
  keep the set of live connections; each batch that changes it pushes the
  online list to every online user (QoS 0). `online` and `offline` (one
  per user per change, cluster-wide) keep each user's state, which decides
  the push notifications of mentions (`notify.py`).

Each reader is one consumer of its own group (created at the start of the
stream, MKSTREAM) and XACKs an entry only after handling it, so a backend
killed midway handles it again on restart (its own pending entries are read
first) or another worker claims it after `CLAIM_IDLE_MS`.
"""

import json
import logging
import threading
import time

import redis

from notify import Pushes, push_targets

log = logging.getLogger("chat")

UPSTREAM, EVENTS, DOWNSTREAM = "gw:upstream", "gw:events", "gw:downstream"
CLAIM_IDLE_MS = 30_000
MAX_TEXT = 2000


def room_allowed(room: str, patterns) -> bool:
    """The gateway's pattern rule: exact, or a prefix before a trailing `*`."""
    return any(room == p or (p.endswith("*") and room.startswith(p[:-1])) for p in patterns)


class GroupReader(threading.Thread):
    """Reads `stream` as `consumer` of `group`; handles entries, then XACKs them."""

    def __init__(self, r: redis.Redis, stream: str, group: str, consumer: str, stop: threading.Event):
        super().__init__(name=f"{group}:{stream}", daemon=True)
        self.r, self.stream, self.group, self.consumer, self.stop = r, stream, group, consumer, stop

    def handle(self, entry_id: str, fields: dict) -> None:
        raise NotImplementedError

    def after_batch(self) -> None:
        """Called after a batch was handled, before it is acknowledged."""

    def run(self) -> None:
        backlog, delay, next_claim = True, 0.1, 0.0
        while not self.stop.is_set():
            try:
                self._ensure_group()
                if time.monotonic() >= next_claim:
                    self._claim()
                    next_claim = time.monotonic() + CLAIM_IDLE_MS / 3000
                # After a (re)start, first what this consumer read and did not ack.
                resp = self.r.xreadgroup(
                    self.group, self.consumer, {self.stream: "0" if backlog else ">"},
                    count=100, block=None if backlog else 2000,
                )
                entries = resp[0][1] if resp else []
                if backlog and not entries:
                    backlog = False
                self._process(entries)
                delay = 0.1
            except redis.ResponseError as e:
                if "NOGROUP" in str(e):
                    log.warning("%s: group %s is gone (Redis restarted?), creating it again",
                                self.stream, self.group)
                else:
                    log.error("%s: %s, retrying in %.1fs", self.stream, e, delay)
                    delay = self._pause(delay)
                backlog, self._created = True, False
            except (redis.ConnectionError, redis.TimeoutError) as e:
                log.warning("%s: redis unavailable (%s), retrying in %.1fs", self.stream, e, delay)
                backlog, self._created = True, False
                delay = self._pause(delay)

    def _pause(self, delay: float) -> float:
        self.stop.wait(delay)
        return min(delay * 2, 5.0)

    _created = False

    def _ensure_group(self) -> None:
        if self._created:
            return
        try:
            self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            log.info("%s: created consumer group %s", self.stream, self.group)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise
        self._created = True

    def _claim(self) -> None:
        """Takes over entries another worker read and left unacknowledged."""
        start = "0-0"
        while True:
            resp = self.r.xautoclaim(self.stream, self.group, self.consumer, CLAIM_IDLE_MS, start, count=100)
            start, entries = resp[0], resp[1]
            if entries:
                log.info("%s: claimed %d idle entries", self.stream, len(entries))
            self._process(entries)
            if start in (b"0-0", "0-0"):
                return

    def _process(self, entries) -> None:
        if not entries:
            return
        for entry_id, fields in entries:
            if not fields:  # trimmed from the stream while pending
                continue
            try:
                self.handle(entry_id.decode(), {k.decode(): v for k, v in fields.items()})
            except redis.RedisError:
                raise  # not acknowledged: read again once Redis answers
            except Exception:  # a bad entry must not block the stream
                log.exception("%s: dropping entry %s", self.stream, entry_id)
        self.after_batch()
        self.r.xack(self.stream, self.group, *[e[0] for e in entries])


def _s(fields: dict, key: str) -> str:
    return fields.get(key, b"").decode("utf-8", "replace")


class UpstreamReader(GroupReader):
    def __init__(self, r, group, consumer, stop, store, rooms, pushes: Pushes):
        super().__init__(r, UPSTREAM, group, consumer, stop)
        self.store, self.rooms, self.pushes = store, rooms, pushes

    def handle(self, entry_id: str, f: dict) -> None:
        user, msg_id = _s(f, "user"), _s(f, "msg_id") or f"up-{entry_id}"
        try:
            body = json.loads(f.get("payload", b""))
        except ValueError:
            body = None
        room = body.get("room") if isinstance(body, dict) else None
        text = body.get("text") if isinstance(body, dict) else None
        if not isinstance(room, str) or not isinstance(text, str) or not text.strip():
            return self._tell(user, f"not a chat message: {f.get('payload', b'')[:80]!r}")
        if not room_allowed(room, self.rooms):
            return self._tell(user, f"room {room!r} is not one of {self.rooms}")
        text = text[:MAX_TEXT]
        ts = int(_s(f, "ts") or time.time() * 1000)
        if not self.store.add_message(msg_id, room, user, text, ts):
            log.info("upstream: %s seen before, publishing it again", msg_id)
        out = {"type": "msg", "id": msg_id, "room": room, "user": user, "text": text, "ts": ts}
        self.r.xadd(DOWNSTREAM, {"room": room, "payload": json.dumps(out), "qos": "1", "id": msg_id},
                    maxlen=100_000, approximate=True)
        # A mention of someone the gateway says is offline: a push.
        for target in push_targets(text, user, self.store.user_state):
            state = self.store.user_state(target)
            self.pushes.send(target, room, user, text, state[1] if state else None)

    def _tell(self, user: str, text: str) -> None:
        log.info("upstream: %s: %s", user, text)
        if user:
            body = json.dumps({"type": "error", "text": text})
            self.r.xadd(DOWNSTREAM, {"user": user, "payload": body, "qos": "0"}, maxlen=100_000, approximate=True)


class EventsReader(GroupReader):
    def __init__(self, r, group, consumer, stop, store):
        super().__init__(r, EVENTS, group, consumer, stop)
        self.store, self.changed = store, False

    def handle(self, entry_id: str, f: dict) -> None:
        kind, node, conn = _s(f, "type"), _s(f, "node"), _s(f, "conn")
        if kind == "connect":
            ts = int(_s(f, "ts") or time.time() * 1000)
            self.changed |= self.store.connected(node, conn, _s(f, "user"), _s(f, "device"), ts)
        elif kind == "disconnect":
            self.changed |= self.store.disconnected(node, conn)
        elif kind in ("online", "offline"):
            seen = _s(f, "last_seen")
            self.store.set_user_state(_s(f, "user"), kind == "online", int(seen) if seen else None)

    def after_batch(self) -> None:
        """One presence push per batch of events, not one per event."""
        if not self.changed:
            return
        online = self.store.online()
        if online:
            body = json.dumps({"type": "presence", "online": online})
            users = ",".join(u["user"] for u in online)
            self.r.xadd(DOWNSTREAM, {"users": users, "payload": body, "qos": "0"},
                        maxlen=100_000, approximate=True)
        self.changed = False
