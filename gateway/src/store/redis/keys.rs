//! Key layout of a user's inbox in Redis.
//!
//! Every key of a user carries the same Redis Cluster hash tag, `{<tag>}`,
//! so one Lua script can touch all of them on one node. The tag is the user
//! name in unpadded base64url (`A-Z a-z 0-9 - _`), so a user name containing
//! `:`, `{` or `}` can neither break out of the tag nor collide with another
//! user's keys. The empty user name, which has no base64 digits, gets `~`.
//!
//! ```text
//! {prefix}:{<tag>}:seq                  INCR counter; never expires
//! {prefix}:{<tag>}:acked                highest seq freed by acks; never expires
//! {prefix}:{<tag>}:inbox                ZSET score = seq, member = Deliver
//! {prefix}:{<tag>}:cursors              HASH device -> acked seq
//! {prefix}:{<tag>}:dropped              highest seq dropped by the per-user bound
//! {prefix}:{<tag>}:d:<from>:<client id> "seq:msg_id", for dedupe (both base64url)
//! {prefix}:{<tag>}:presence             HASH node id -> the node's connections (JSON), on a cluster
//! ```
//!
//! A room's history has its own tag, `r.` and the room name in base64url
//! (the `.` is not a base64url digit, so no room tag equals a user tag):
//!
//! ```text
//! {prefix}:{r.<tag>}:top                the last offset given (INCR)
//! {prefix}:{r.<tag>}:epoch              the log's epoch (16 hex digits)
//! {prefix}:{r.<tag>}:log                ZSET score = offset, member = 13-digit ms timestamp + Deliver
//! {prefix}:{r.<tag>}:d:<from>:<client>  "offset:msg_id", for dedupe
//! ```
//! All of a room's keys expire together `rooms.history_secs` after its last
//! append or read: a room silent that long starts a new epoch.
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// The cluster presence of `user` (`crate::cluster::presence`).
pub(crate) fn presence_key(prefix: &str, user: &str) -> String {
    format!("{prefix}:{{{}}}:presence", encode(user))
}

/// The keys of one user.
pub(super) struct UserKeys {
    /// `{prefix}:{<tag>}:`, the common start of every key.
    base: String,
}

impl UserKeys {
    /// The keys of `user` under `prefix` (which must not contain braces).
    pub(super) fn new(prefix: &str, user: &str) -> UserKeys {
        UserKeys {
            base: format!("{prefix}:{{{}}}:", encode(user)),
        }
    }

    /// The sequence counter.
    pub(super) fn seq(&self) -> String {
        format!("{}seq", self.base)
    }

    /// The highest sequence freed because every device acknowledged it.
    pub(super) fn acked(&self) -> String {
        format!("{}acked", self.base)
    }

    /// The sorted set of stored messages.
    pub(super) fn inbox(&self) -> String {
        format!("{}inbox", self.base)
    }

    /// The hash of device cursors.
    pub(super) fn cursors(&self) -> String {
        format!("{}cursors", self.base)
    }

    /// The highest sequence dropped by the per-user bound.
    pub(super) fn dropped(&self) -> String {
        format!("{}dropped", self.base)
    }

    /// The dedupe record of a sender's client message id.
    pub(super) fn dedupe(&self, from: &str, client_msg_id: &str) -> String {
        format!("{}d:{}:{}", self.base, encode(from), encode(client_msg_id))
    }
}

/// The keys of one room's history.
pub(super) struct RoomKeys {
    base: String,
}

impl RoomKeys {
    /// The keys of `room` under `prefix`.
    pub(super) fn new(prefix: &str, room: &str) -> RoomKeys {
        RoomKeys {
            base: format!("{prefix}:{{r.{}}}:", encode(room)),
        }
    }

    /// The offset counter.
    pub(super) fn top(&self) -> String {
        format!("{}top", self.base)
    }

    /// The epoch.
    pub(super) fn epoch(&self) -> String {
        format!("{}epoch", self.base)
    }

    /// The sorted set of messages.
    pub(super) fn log(&self) -> String {
        format!("{}log", self.base)
    }

    /// The dedupe record of a sender's client message id.
    pub(super) fn dedupe(&self, from: &str, client_msg_id: &str) -> String {
        format!("{}d:{}:{}", self.base, encode(from), encode(client_msg_id))
    }
}

/// Unpadded base64url, or `~` for the empty string.
fn encode(s: &str) -> String {
    if s.is_empty() {
        "~".to_owned()
    } else {
        URL_SAFE_NO_PAD.encode(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(key: &str) -> &str {
        let open = key.find('{').expect("open brace");
        let close = key[open..].find('}').expect("close brace") + open;
        &key[open + 1..close]
    }

    #[test]
    fn every_key_of_a_user_shares_one_hash_tag() {
        let k = UserKeys::new("im", "a:{b}");
        let keys = [
            k.seq(),
            k.acked(),
            k.inbox(),
            k.cursors(),
            k.dropped(),
            k.dedupe("x:}", "{1"),
        ];
        for key in &keys {
            assert_eq!(tag(key), tag(&keys[0]), "{key}");
            assert!(key.starts_with("im:{"), "{key}");
            assert_eq!(key.matches('{').count(), 1, "{key}");
        }
    }

    #[test]
    fn a_room_has_one_tag_and_never_a_users() {
        let r = RoomKeys::new("im", "a");
        let keys = [r.top(), r.epoch(), r.log(), r.dedupe("x", "y")];
        for key in &keys {
            assert_eq!(tag(key), tag(&keys[0]), "{key}");
        }
        assert_ne!(tag(&keys[0]), tag(&UserKeys::new("im", "a").seq()));
        assert_ne!(tag(&keys[0]), tag(&UserKeys::new("im", "r.a").seq()));
    }

    #[test]
    fn names_with_separators_do_not_collide() {
        let a = UserKeys::new("im", "a:b").dedupe("c", "d");
        let b = UserKeys::new("im", "a").dedupe("b:c", "d");
        let c = UserKeys::new("im", "a:b").dedupe("c:d", "");
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(
            UserKeys::new("im", "").seq(),
            UserKeys::new("im", "~").seq()
        );
    }
}
