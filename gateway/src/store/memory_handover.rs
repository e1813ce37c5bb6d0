//! The in-process store as a value another process can take over (an
//! upgrade): every user's inbox (messages, device cursors, dedupe window)
//! and the global append order, as a protobuf message.
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use prost::Message;

use super::memory::{MemoryStore, UserInbox};
use super::Stored;

#[derive(Clone, PartialEq, prost::Message)]
struct StoreState {
    #[prost(message, repeated, tag = "1")]
    users: Vec<InboxState>,
    #[prost(message, repeated, tag = "2")]
    order: Vec<OrderEntry>,
    /// The room logs (`room_log`), encoded by them.
    #[prost(bytes = "vec", tag = "3")]
    rooms: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct InboxState {
    #[prost(string, tag = "1")]
    user: String,
    #[prost(uint64, tag = "2")]
    last_seq: u64,
    #[prost(message, repeated, tag = "3")]
    msgs: Vec<StoredWire>,
    #[prost(uint64, tag = "4")]
    dropped_upto: u64,
    #[prost(string, repeated, tag = "5")]
    cursor_devices: Vec<String>,
    #[prost(uint64, repeated, tag = "6")]
    cursor_seqs: Vec<u64>,
    #[prost(string, repeated, tag = "7")]
    unconfirmed: Vec<String>,
    /// The dedupe window, oldest first.
    #[prost(message, repeated, tag = "8")]
    dedupe: Vec<DedupeEntry>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct StoredWire {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(string, tag = "2")]
    msg_id: String,
    #[prost(string, tag = "3")]
    from: String,
    #[prost(string, tag = "4")]
    room: String,
    #[prost(bytes = "bytes", tag = "5")]
    payload: bytes::Bytes,
    #[prost(uint64, tag = "6")]
    timestamp_ms: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DedupeEntry {
    #[prost(string, tag = "1")]
    from: String,
    #[prost(string, tag = "2")]
    client_msg_id: String,
    #[prost(uint64, tag = "3")]
    seq: u64,
    #[prost(string, tag = "4")]
    msg_id: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct OrderEntry {
    #[prost(string, tag = "1")]
    user: String,
    #[prost(uint64, tag = "2")]
    seq: u64,
    #[prost(uint64, tag = "3")]
    bytes: u64,
    #[prost(uint64, tag = "4")]
    timestamp_ms: u64,
}

impl MemoryStore {
    /// Everything held, encoded.
    pub(crate) fn export_state(&self) -> Vec<u8> {
        let users = self
            .users
            .iter()
            .map(|(user, inbox)| InboxState {
                user: user.to_string(),
                last_seq: inbox.last_seq,
                msgs: inbox
                    .msgs
                    .iter()
                    .map(|m| StoredWire {
                        seq: m.seq,
                        msg_id: m.msg_id.clone(),
                        from: m.from.clone(),
                        room: m.room.clone(),
                        payload: m.payload.clone(),
                        timestamp_ms: m.timestamp_ms,
                    })
                    .collect(),
                dropped_upto: inbox.dropped_upto,
                cursor_devices: inbox.cursors.iter().map(|(d, _)| d.to_string()).collect(),
                cursor_seqs: inbox.cursors.iter().map(|(_, s)| *s).collect(),
                unconfirmed: inbox.unconfirmed.iter().map(|d| d.to_string()).collect(),
                dedupe: inbox
                    .dedupe_order
                    .iter()
                    .filter_map(|key| {
                        inbox.dedupe.get(key).map(|(seq, id)| DedupeEntry {
                            from: key.0.clone(),
                            client_msg_id: key.1.clone(),
                            seq: *seq,
                            msg_id: id.clone(),
                        })
                    })
                    .collect(),
            })
            .collect();
        let order = self
            .order
            .iter()
            .map(|(user, seq, bytes, ts)| OrderEntry {
                user: user.to_string(),
                seq: *seq,
                bytes: *bytes as u64,
                timestamp_ms: *ts,
            })
            .collect();
        let rooms = self.rooms.export();
        StoreState {
            users,
            order,
            rooms,
        }
        .encode_to_vec()
    }

    /// Takes over what `export_state` wrote (replacing what is held).
    pub(crate) fn import_state(&mut self, bytes: &[u8]) -> Result<(), prost::DecodeError> {
        let st = StoreState::decode(bytes)?;
        self.rooms.import(&st.rooms)?;
        let mut names: HashMap<String, Arc<str>> = HashMap::new();
        let mut name = |s: String| {
            names
                .entry(s.clone())
                .or_insert_with(|| Arc::from(s))
                .clone()
        };
        let (mut held, mut total) = (0, 0);
        let mut users = HashMap::with_capacity(st.users.len());
        for u in st.users {
            let msgs: VecDeque<Stored> = u
                .msgs
                .into_iter()
                .map(|m| Stored {
                    seq: m.seq,
                    msg_id: m.msg_id,
                    from: m.from,
                    room: m.room,
                    payload: m.payload,
                    timestamp_ms: m.timestamp_ms,
                })
                .collect();
            held += msgs.len();
            total += msgs.iter().map(|m| m.payload.len()).sum::<usize>();
            let mut inbox = UserInbox {
                last_seq: u.last_seq,
                msgs,
                dropped_upto: u.dropped_upto,
                cursors: u
                    .cursor_devices
                    .into_iter()
                    .zip(u.cursor_seqs)
                    .map(|(d, s)| (name(d), s))
                    .collect(),
                unconfirmed: u.unconfirmed.into_iter().map(&mut name).collect(),
                ..Default::default()
            };
            for d in u.dedupe {
                let key = (d.from, d.client_msg_id);
                inbox.dedupe.insert(key.clone(), (d.seq, d.msg_id));
                inbox.dedupe_order.push_back(key);
            }
            users.insert(name(u.user), inbox);
        }
        let order = st
            .order
            .into_iter()
            .map(|o| (name(o.user), o.seq, o.bytes as usize, o.timestamp_ms))
            .collect();
        self.users = users;
        self.order = order;
        self.held = held;
        self.bytes = total;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::memory::MemoryLimits;
    use super::super::{Done, Op, Store, Stored, WhenFull};
    use super::MemoryStore;

    fn store() -> MemoryStore {
        let limits = MemoryLimits {
            per_user: 100,
            total_bytes: 1 << 20,
            retention: std::time::Duration::from_secs(3600),
            dedupe_window: 16,
        };
        MemoryStore::new(limits, Box::new(|| 1_000))
    }

    fn append(s: &mut MemoryStore, user: &str, body: &str, client_msg_id: &str) -> Done {
        s.submit(Op::Append {
            user: Arc::from(user),
            msg: Stored::for_test("bob", body, 1),
            client_msg_id: client_msg_id.into(),
            online: vec![Arc::from("phone")],
            when_full: WhenFull::DropOldest,
            reply: None,
        });
        let mut out = Vec::new();
        s.completed(&mut out);
        out.pop().unwrap()
    }

    #[test]
    fn inboxes_cursors_and_dedupe_survive_the_handover() {
        let mut old = store();
        append(&mut old, "alice", "one", "c1");
        append(&mut old, "alice", "two", "c2");
        append(&mut old, "carol", "three", "");
        let mut new = store();
        new.import_state(&old.export_state()).unwrap();
        assert_eq!(new.held(), old.held());
        // The sequence goes on, and a retried client id is still known.
        let Done::Appended { result, .. } = append(&mut new, "alice", "four", "c3") else {
            panic!("not an append")
        };
        assert_eq!(result.unwrap().seq, 3);
        let Done::Appended {
            result, duplicate, ..
        } = append(&mut new, "alice", "two again", "c2")
        else {
            panic!("not an append")
        };
        assert_eq!(result.unwrap().seq, 2, "deduped as before the handover");
        assert!(duplicate);
    }
}
