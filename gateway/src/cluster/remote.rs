//! Which peer nodes want a name: the remote half of the interest table,
//! kept by the name's owner shard (`mesh::Mesh::owner`).
//!
//! An entry records who said it: the peer node and the peer shard that owns
//! the name there (its [`Origin`]). A `Reset` from a peer shard (its
//! snapshot follows) forgets what that shard said before; a peer that
//! leaves the registry is forgotten whole. Plain data, no IO.
//!
//! A `Reset` whose sender ends its snapshot with a `SnapshotEnd` only marks
//! what the shard said before as stale: stale entries still route until
//! the end, where those the snapshot did not say again go. The `Reset`
//! reaches every shard of this node and each `Interest` only its name's
//! owner, so a message routed between the two would otherwise find nobody
//! and be dropped though the peer still wants it.
use std::collections::HashMap;
use std::sync::Arc;

use smallvec::SmallVec;

/// What kind of name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A user (its devices).
    User,
    /// A room (its members).
    Room,
}

/// The peer shard that said it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The peer's node id.
    pub node: Arc<str>,
    /// The peer's shard that owns the name there.
    pub shard: u16,
}

/// Who said it, and whether only before a `Reset` whose snapshot has not
/// ended yet.
#[derive(Debug, Clone)]
struct Said {
    origin: Origin,
    stale: bool,
}

type Origins = SmallVec<[Said; 1]>;

/// The remote interest of the names one shard owns.
#[derive(Default)]
pub(crate) struct RemoteInterest {
    users: HashMap<Arc<str>, Origins>,
    rooms: HashMap<Arc<str>, Origins>,
}

impl RemoteInterest {
    fn map(&mut self, kind: Kind) -> &mut HashMap<Arc<str>, Origins> {
        match kind {
            Kind::User => &mut self.users,
            Kind::Room => &mut self.rooms,
        }
    }

    /// `origin` gained (`on`) or lost its interest in `name`.
    pub(crate) fn set(&mut self, kind: Kind, name: Arc<str>, origin: Origin, on: bool) {
        let map = self.map(kind);
        if on {
            let origins = map.entry(name).or_default();
            match origins.iter_mut().find(|s| s.origin == origin) {
                Some(said) => said.stale = false,
                None => origins.push(Said {
                    origin,
                    stale: false,
                }),
            }
        } else if let Some(origins) = map.get_mut(&name) {
            origins.retain(|s| s.origin != origin);
            if origins.is_empty() {
                map.remove(&name);
            }
        }
    }

    /// Forgets what `node`'s shard `shard` said, and what its shards at or
    /// above `shards` said (the peer restarted with fewer shards). With
    /// `end_follows`, what `shard` said only goes stale until
    /// [`snapshot_end`](Self::snapshot_end).
    pub(crate) fn reset(&mut self, node: &str, shard: u16, shards: u16, end_follows: bool) {
        let said = |s: &Said| &*s.origin.node == node && s.origin.shard == shard;
        // Shards a restart removed go at once; without an end to come,
        // what `shard` said goes too.
        let gone = |s: &Said| &*s.origin.node == node && s.origin.shard >= shards;
        self.retain(|s| !gone(s) && (end_follows || !said(s)));
        if end_follows {
            for s in self.saids_mut().filter(|s| said(s)) {
                s.stale = true;
            }
        }
    }

    /// `node`'s shard `shard` ended its snapshot: what it said before and
    /// not again goes.
    pub(crate) fn snapshot_end(&mut self, node: &str, shard: u16) {
        self.retain(|s| !(s.stale && &*s.origin.node == node && s.origin.shard == shard));
    }

    /// Forgets everything `node` said (it left the registry).
    pub(crate) fn forget(&mut self, node: &str) {
        self.retain(|s| &*s.origin.node != node);
    }

    fn saids_mut(&mut self) -> impl Iterator<Item = &mut Said> {
        self.users
            .values_mut()
            .chain(self.rooms.values_mut())
            .flatten()
    }

    fn retain(&mut self, keep: impl Fn(&Said) -> bool) {
        for map in [&mut self.users, &mut self.rooms] {
            map.retain(|_, origins| {
                origins.retain(|s| keep(s));
                !origins.is_empty()
            });
        }
    }

    /// The distinct peer nodes interested in `name`.
    pub(crate) fn nodes(&self, kind: Kind, name: &str) -> SmallVec<[Arc<str>; 4]> {
        let map = match kind {
            Kind::User => &self.users,
            Kind::Room => &self.rooms,
        };
        let mut nodes: SmallVec<[Arc<str>; 4]> = SmallVec::new();
        // Stale entries too: their snapshot has not ended.
        for s in map.get(name).into_iter().flatten() {
            if !nodes.contains(&s.origin.node) {
                nodes.push(s.origin.node.clone());
            }
        }
        nodes
    }

    /// Names with remote interest, users and rooms.
    #[cfg(test)]
    pub(crate) fn len(&self) -> (usize, usize) {
        (self.users.len(), self.rooms.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(node: &str, shard: u16) -> Origin {
        Origin {
            node: Arc::from(node),
            shard,
        }
    }

    fn names(t: &RemoteInterest, kind: Kind, name: &str) -> Vec<String> {
        t.nodes(kind, name).iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn interest_is_a_set_of_nodes_per_name() {
        let mut t = RemoteInterest::default();
        let r: Arc<str> = Arc::from("r");
        t.set(Kind::Room, r.clone(), o("b", 0), true);
        t.set(Kind::Room, r.clone(), o("b", 0), true);
        t.set(Kind::Room, r.clone(), o("b", 1), true);
        t.set(Kind::Room, r.clone(), o("c", 0), true);
        assert_eq!(names(&t, Kind::Room, "r"), ["b", "c"]);
        assert!(names(&t, Kind::User, "r").is_empty(), "kinds are apart");
        t.set(Kind::Room, r.clone(), o("b", 0), false);
        assert_eq!(
            names(&t, Kind::Room, "r"),
            ["b", "c"],
            "b's shard 1 still said it"
        );
        t.set(Kind::Room, r.clone(), o("b", 1), false);
        t.set(Kind::Room, r.clone(), o("c", 0), false);
        assert_eq!(t.len(), (0, 0));
    }

    #[test]
    fn reset_forgets_one_shard_and_the_shards_a_restart_removed() {
        let mut t = RemoteInterest::default();
        for (name, shard) in [("u0", 0), ("u1", 1), ("u3", 3)] {
            t.set(Kind::User, Arc::from(name), o("b", shard), true);
        }
        t.set(Kind::User, Arc::from("u1"), o("c", 1), true);
        t.reset("b", 1, 2, false);
        assert_eq!(names(&t, Kind::User, "u0"), ["b"]);
        assert_eq!(
            names(&t, Kind::User, "u1"),
            ["c"],
            "only b's shard 1 forgotten"
        );
        assert!(
            names(&t, Kind::User, "u3").is_empty(),
            "b runs 2 shards now"
        );
        t.forget("c");
        assert_eq!(t.len(), (1, 0));
    }

    #[test]
    fn a_reset_with_an_end_keeps_routing_until_the_end() {
        let mut t = RemoteInterest::default();
        for name in ["kept", "dropped"] {
            t.set(Kind::User, Arc::from(name), o("b", 1), true);
        }
        t.set(Kind::User, Arc::from("other"), o("b", 0), true);
        t.set(Kind::Room, Arc::from("r"), o("b", 3), true);
        t.reset("b", 1, 3, true);
        // Between the reset and the snapshot's end, b still gets both.
        assert_eq!(names(&t, Kind::User, "kept"), ["b"]);
        assert_eq!(names(&t, Kind::User, "dropped"), ["b"]);
        assert!(
            names(&t, Kind::Room, "r").is_empty(),
            "shards a restart removed go at once"
        );
        t.set(Kind::User, Arc::from("kept"), o("b", 1), true);
        t.set(Kind::User, Arc::from("new"), o("b", 1), true);
        t.snapshot_end("b", 0);
        assert_eq!(
            names(&t, Kind::User, "dropped"),
            ["b"],
            "another shard's end"
        );
        t.snapshot_end("b", 1);
        assert_eq!(names(&t, Kind::User, "kept"), ["b"]);
        assert_eq!(names(&t, Kind::User, "new"), ["b"]);
        assert!(
            names(&t, Kind::User, "dropped").is_empty(),
            "not said again"
        );
        assert_eq!(names(&t, Kind::User, "other"), ["b"], "b's shard 0 said it");
        // A second end changes nothing: nothing is stale.
        t.snapshot_end("b", 1);
        assert_eq!(t.len(), (3, 0));
    }
}
