//! Which peer nodes want a name: the remote half of the interest table,
//! kept by the name's owner shard (`mesh::Mesh::owner`).
//!
//! An entry records who said it: the peer node and the peer shard that owns
//! the name there (its [`Origin`]). A `Reset` from a peer shard (its
//! snapshot follows) forgets what that shard said before; a peer that
//! leaves the registry is forgotten whole. Plain data, no IO.
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

type Origins = SmallVec<[Origin; 1]>;

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
            if !origins.contains(&origin) {
                origins.push(origin);
            }
        } else if let Some(origins) = map.get_mut(&name) {
            origins.retain(|o| *o != origin);
            if origins.is_empty() {
                map.remove(&name);
            }
        }
    }

    /// Forgets what `node`'s shard `shard` said, and what its shards at or
    /// above `shards` said (the peer restarted with fewer shards).
    pub(crate) fn reset(&mut self, node: &str, shard: u16, shards: u16) {
        self.retain(|o| !(&*o.node == node && (o.shard == shard || o.shard >= shards)));
    }

    /// Forgets everything `node` said (it left the registry).
    pub(crate) fn forget(&mut self, node: &str) {
        self.retain(|o| &*o.node != node);
    }

    fn retain(&mut self, keep: impl Fn(&Origin) -> bool) {
        for map in [&mut self.users, &mut self.rooms] {
            map.retain(|_, origins| {
                origins.retain(|o| keep(o));
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
        for o in map.get(name).into_iter().flatten() {
            if !nodes.contains(&o.node) {
                nodes.push(o.node.clone());
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
        t.reset("b", 1, 2);
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
}
