"""SQLite state of the chat backend: room history and who is online.

One connection per thread (sqlite3 connections must stay on the thread that
opened them), WAL so the web server reads while the stream workers write.

- `messages`: one row per chat message, keyed by the gateway's `msg_id`, so
  an upstream entry handled twice (a worker died before its XACK, a claimed
  entry) is stored once.
- `connections`: one row per live gateway connection (node, conn), from the
  lifecycle events; a user is online while they have at least one row. A
  set of connections rather than a counter, so a connect or disconnect event
  read twice changes nothing.
- `users_state`: the gateway's cluster-wide `online`/`offline` events per
  user (`online`, `last_seen`): what the push-notification decision reads
  (`notify.py`).
"""

import sqlite3
import threading

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    msg_id TEXT PRIMARY KEY,
    room   TEXT NOT NULL,
    user   TEXT NOT NULL,
    text   TEXT NOT NULL,
    ts     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_room ON messages (room, ts);
CREATE TABLE IF NOT EXISTS connections (
    node   TEXT NOT NULL,
    conn   TEXT NOT NULL,
    user   TEXT NOT NULL,
    device TEXT NOT NULL,
    since  INTEGER NOT NULL,
    PRIMARY KEY (node, conn)
);
CREATE TABLE IF NOT EXISTS users_state (
    user      TEXT PRIMARY KEY,
    online    INTEGER NOT NULL,
    last_seen INTEGER
);
"""


class Store:
    def __init__(self, path: str):
        self.path = path
        self._local = threading.local()
        self._db().executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    # ---- history

    def add_message(self, msg_id: str, room: str, user: str, text: str, ts: int) -> bool:
        """Stores a message; False when one with this id is already there."""
        cur = self._db().execute(
            "INSERT OR IGNORE INTO messages (msg_id, room, user, text, ts) VALUES (?, ?, ?, ?, ?)",
            (msg_id, room, user, text, ts),
        )
        return cur.rowcount == 1

    def history(self, room: str, limit: int = 50) -> list:
        """The last `limit` messages of `room`, oldest first."""
        rows = self._db().execute(
            "SELECT msg_id, room, user, text, ts FROM messages WHERE room = ?"
            " ORDER BY ts DESC, rowid DESC LIMIT ?",
            (room, limit),
        ).fetchall()
        return [
            {"type": "msg", "id": r["msg_id"], "room": r["room"], "user": r["user"],
             "text": r["text"], "ts": r["ts"]}
            for r in reversed(rows)
        ]

    # ---- presence

    def connected(self, node: str, conn: str, user: str, device: str, ts: int) -> bool:
        """Records a connection (a reused id replaces the stale row); True when written."""
        cur = self._db().execute(
            "INSERT OR REPLACE INTO connections (node, conn, user, device, since)"
            " VALUES (?, ?, ?, ?, ?)",
            (node, conn, user, device, ts),
        )
        return cur.rowcount == 1

    def disconnected(self, node: str, conn: str) -> bool:
        """Forgets a connection; False when it was not recorded."""
        cur = self._db().execute(
            "DELETE FROM connections WHERE node = ? AND conn = ?", (node, conn)
        )
        return cur.rowcount == 1

    def online(self) -> list:
        """[{"user", "connections"}] of every user with a live connection, by name."""
        rows = self._db().execute(
            "SELECT user, COUNT(*) AS n FROM connections GROUP BY user ORDER BY user"
        ).fetchall()
        return [{"user": r["user"], "connections": r["n"]} for r in rows]

    def set_user_state(self, user: str, online: bool, last_seen) -> None:
        """The latest `online`/`offline` event of a user (events read twice set the same)."""
        self._db().execute(
            "INSERT OR REPLACE INTO users_state (user, online, last_seen) VALUES (?, ?, ?)",
            (user, 1 if online else 0, last_seen),
        )

    def user_state(self, user: str):
        """(online, last_seen) from the last event; None for a user never told of."""
        row = self._db().execute(
            "SELECT online, last_seen FROM users_state WHERE user = ?", (user,)
        ).fetchone()
        return None if row is None else (bool(row["online"]), row["last_seen"])
