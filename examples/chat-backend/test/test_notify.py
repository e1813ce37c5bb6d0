"""The push decision (notify.py), without Redis or a gateway:
python3 -m unittest discover -s examples/chat-backend/test -p 'test_*.py'"""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from notify import Pushes, push_targets  # noqa: E402


class PushTargets(unittest.TestCase):
    def test_only_mentioned_users_who_are_not_online(self):
        states = {"bob": (True, None), "carol": (False, 1764600000000)}
        got = push_targets("hi @bob @carol @dave @carol", "alice", states.get)
        # bob is online (no push), carol went offline, dave was never online.
        self.assertEqual(got, ["carol", "dave"])

    def test_never_the_sender_and_nothing_without_a_mention(self):
        self.assertEqual(push_targets("note to self @alice", "alice", lambda u: None), [])
        self.assertEqual(push_targets("hello all", "alice", lambda u: None), [])

    def test_pushes_keep_the_latest(self):
        p = Pushes(keep=2)
        for i in range(3):
            p.send("bob", "general", "alice", f"m{i}", None)
        self.assertEqual([x["text"] for x in p.recent()], ["m1", "m2"])


if __name__ == "__main__":
    unittest.main()
