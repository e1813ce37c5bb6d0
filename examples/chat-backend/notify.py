"""When to send a push notification (APNs, FCM): the question the gateway's
`online`/`offline` events answer.

The gateway tells `online` when a user's first device connects anywhere in
the cluster and `offline` (with `last_seen`) when the last one has been
gone for `presence.offline_grace_ms`, once per change, cluster-wide. So a
phone that changes networks or a page that reloads is no change, and the
backend needs no connection bookkeeping of its own to decide:

- a user whose latest event is `online` gets the message over the gateway,
  and no push;
- a user whose latest event is `offline`, or who was never online, gets a
  push, here for a mention (`@name`) in a room message, which is what chat
  apps notify a phone about (pushing every room message would flood it).

This example logs the pushes it would send and keeps the last 100 for
`GET /api/pushes`; a real backend calls its push service there.
"""

import logging
import re
import threading
import time
from collections import deque

log = logging.getLogger("chat")

MENTION = re.compile(r"@([A-Za-z0-9_.-]{1,64})")


def push_targets(text: str, sender: str, state_of) -> list:
    """The users mentioned in `text` who should get a push: not the sender,
    and not online. `state_of(user)` is `(online, last_seen)` from the last
    event, or None for a user never told of."""
    out = []
    for user in dict.fromkeys(MENTION.findall(text)):
        if user == sender:
            continue
        state = state_of(user)
        if state is None or not state[0]:
            out.append(user)
    return out


class Pushes:
    """The pushes decided, newest last (bounded)."""

    def __init__(self, keep: int = 100):
        self._lock = threading.Lock()
        self._recent = deque(maxlen=keep)

    def send(self, user: str, room: str, sender: str, text: str, last_seen) -> None:
        seen = "never online" if last_seen is None else f"last seen {last_seen}"
        log.info("push: %s (%s): %s in #%s: %s", user, seen, sender, room, text[:80])
        with self._lock:
            self._recent.append({"user": user, "room": room, "from": sender, "text": text,
                                 "last_seen": last_seen, "ts": int(time.time() * 1000)})

    def recent(self) -> list:
        with self._lock:
            return list(self._recent)
