//! The router's tables: who is connected here, who is in which room
//! here, and, for the names this shard owns, the node-wide view.
//!
//! Local tables map names to connection keys of this shard. Owner tables hold
//! the node-wide presence of the users this shard owns and, for the rooms it
//! owns, which shards have at least one member. All of it is plain data with
//! no IO, tested on its own.
use std::sync::Arc;

use smallvec::SmallVec;

use crate::mesh::{PresenceEntry, ShardId};

/// Connection key in the shard's slab.
pub(crate) type ConnKey = usize;

/// The tables' maps hash with foldhash, seeded at random per map (names
/// come from clients, so not a fixed hash that one could flood a bucket
/// of): about a third of SipHash's cost for short names, which mattered
/// where a shard adds a million entries at once (an upgrade's import).
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// The routing tables of one shard.
///
/// Per-user lists keep one entry inline: most users have one connection,
/// and a heap allocation per user would cost more than the entry itself.
#[derive(Default)]
pub(crate) struct Tables {
    users: HashMap<Arc<str>, SmallVec<[ConnKey; 1]>>,
    rooms: HashMap<Arc<str>, HashSet<ConnKey>>,
    presence: HashMap<Arc<str>, SmallVec<[PresenceEntry; 1]>>,
    interest: HashMap<Arc<str>, Vec<ShardId>>,
}

impl Tables {
    /// Makes room for `n` more users here and as many owned (an upgrade's
    /// import, which would otherwise grow both tables many times over).
    pub(crate) fn reserve(&mut self, n: usize) {
        self.users.reserve(n);
        self.presence.reserve(n);
    }

    /// Adds a local connection of `user`.
    pub(crate) fn add_user(&mut self, user: &Arc<str>, key: ConnKey) {
        self.users.entry(user.clone()).or_default().push(key);
    }

    /// Removes a local connection of `user`.
    pub(crate) fn remove_user(&mut self, user: &str, key: ConnKey) {
        if let Some(keys) = self.users.get_mut(user) {
            keys.retain(|k| *k != key);
            if keys.is_empty() {
                self.users.remove(user);
            }
        }
    }

    /// Local connections of `user`.
    pub(crate) fn user_conns(&self, user: &str) -> &[ConnKey] {
        self.users.get(user).map_or(&[], SmallVec::as_slice)
    }

    /// Adds a local member; true when it is the room's first local member.
    pub(crate) fn join(&mut self, room: &Arc<str>, key: ConnKey) -> bool {
        let members = self.rooms.entry(room.clone()).or_default();
        members.insert(key) && members.len() == 1
    }

    /// Removes a local member; true when the room has no local member left.
    pub(crate) fn leave(&mut self, room: &str, key: ConnKey) -> bool {
        let Some(members) = self.rooms.get_mut(room) else {
            return false;
        };
        if !members.remove(&key) {
            return false;
        }
        if members.is_empty() {
            self.rooms.remove(room);
            return true;
        }
        false
    }

    /// Local members of `room`.
    pub(crate) fn room_members(&self, room: &str) -> impl Iterator<Item = ConnKey> + '_ {
        self.rooms.get(room).into_iter().flatten().copied()
    }

    /// Owner side: a connection of `user` came online; true when it is the
    /// user's first on this node.
    pub(crate) fn online(&mut self, user: Arc<str>, entry: PresenceEntry) -> bool {
        let entries = self.presence.entry(user).or_default();
        entries.push(entry);
        entries.len() == 1
    }

    /// Owner side: a connection of `user` went away; true when it was the
    /// user's last on this node.
    pub(crate) fn offline(&mut self, user: &str, shard: ShardId, conn_id: u64) -> bool {
        let Some(entries) = self.presence.get_mut(user) else {
            return false;
        };
        let before = entries.len();
        entries.retain(|e| !(e.shard == shard && e.conn_id == conn_id));
        if entries.is_empty() {
            self.presence.remove(user);
            return before > 0;
        }
        false
    }

    /// Owner side: the users with a connection on this node.
    pub(crate) fn owned_users(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.presence.keys()
    }

    /// Owner side: the rooms with a member on this node.
    pub(crate) fn owned_rooms(&self) -> impl Iterator<Item = &Arc<str>> + '_ {
        self.interest.keys()
    }

    /// Owner side: every connection of `user` on this node.
    pub(crate) fn presence(&self, user: &str) -> &[PresenceEntry] {
        self.presence.get(user).map_or(&[], SmallVec::as_slice)
    }

    /// Owner side: the distinct shards holding `user`, in ascending order.
    pub(crate) fn user_shards(&self, user: &str) -> Vec<ShardId> {
        let mut shards: Vec<ShardId> = self.presence(user).iter().map(|e| e.shard).collect();
        shards.sort_unstable();
        shards.dedup();
        shards
    }

    /// Owner side: `shard` gained (`on`) or lost its interest in `room`;
    /// true when that made the room's first (`on`) or last (`!on`)
    /// interested shard of this node.
    pub(crate) fn interest(&mut self, room: Arc<str>, shard: ShardId, on: bool) -> bool {
        if on {
            let shards = self.interest.entry(room).or_default();
            if !shards.contains(&shard) {
                shards.push(shard);
                return shards.len() == 1;
            }
        } else if let Some(shards) = self.interest.get_mut(&room) {
            let before = shards.len();
            shards.retain(|s| *s != shard);
            if shards.is_empty() {
                self.interest.remove(&room);
                return before > 0;
            }
        }
        false
    }

    /// Owner side: the shards with members of `room`.
    pub(crate) fn room_shards(&self, room: &str) -> &[ShardId] {
        self.interest.get(room).map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbound::Wire;

    fn entry(shard: ShardId, conn_id: u64) -> PresenceEntry {
        PresenceEntry {
            shard,
            conn_id,
            device: Arc::from("phone"),
            wire: Wire::Tcp,
        }
    }

    #[test]
    fn users_track_every_local_connection() {
        let mut t = Tables::default();
        let alice: Arc<str> = Arc::from("alice");
        t.add_user(&alice, 1);
        t.add_user(&alice, 2);
        assert_eq!(t.user_conns("alice"), &[1, 2]);
        t.remove_user("alice", 1);
        assert_eq!(t.user_conns("alice"), &[2]);
        t.remove_user("alice", 2);
        assert!(t.user_conns("alice").is_empty());
    }

    #[test]
    fn join_and_leave_report_first_and_last_member() {
        let mut t = Tables::default();
        let room: Arc<str> = Arc::from("r");
        assert!(t.join(&room, 1));
        assert!(!t.join(&room, 2));
        assert!(!t.join(&room, 2), "joining twice is not a new first member");
        assert!(!t.leave("r", 1));
        assert!(!t.leave("r", 9), "a non-member leaving changes nothing");
        assert!(t.leave("r", 2));
        assert_eq!(t.room_members("r").count(), 0);
    }

    #[test]
    fn presence_lists_devices_across_shards() {
        let mut t = Tables::default();
        let u: Arc<str> = Arc::from("u");
        assert!(t.online(u.clone(), entry(3, 10)), "the node's first");
        assert!(!t.online(u.clone(), entry(1, 11)));
        assert!(!t.online(u.clone(), entry(3, 12)));
        assert_eq!(t.user_shards("u"), vec![1, 3]);
        assert!(!t.offline("u", 3, 10));
        assert_eq!(t.presence("u").len(), 2);
        assert!(!t.offline("u", 1, 11));
        assert!(t.offline("u", 3, 12), "the node's last");
        assert!(!t.offline("u", 3, 12));
        assert!(t.presence("u").is_empty());
        assert!(t.user_shards("u").is_empty());
    }

    #[test]
    fn interest_is_a_set_of_shards() {
        let mut t = Tables::default();
        let r: Arc<str> = Arc::from("r");
        assert!(t.interest(r.clone(), 0, true), "the node's first");
        assert!(!t.interest(r.clone(), 0, true));
        assert!(!t.interest(r.clone(), 2, true));
        assert_eq!(t.room_shards("r"), &[0, 2]);
        assert!(!t.interest(r.clone(), 0, false));
        assert!(t.interest(r.clone(), 2, false), "the node's last");
        assert!(!t.interest(r.clone(), 2, false));
        assert!(t.room_shards("r").is_empty());
    }
}
