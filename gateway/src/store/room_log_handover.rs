//! The room logs as a value another process can take over (an upgrade):
//! every log with its epoch, top, messages and dedupe keys. The logs keep
//! their epochs, so members recover across the upgrade as if nothing
//! happened; the new process's own new logs get epochs of its own seed.
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use prost::Message;

use super::{Log, RoomLogs};
use crate::store::rooms::RoomEntry;
use crate::store::Stored;

#[derive(Clone, PartialEq, prost::Message)]
struct LogsState {
    #[prost(message, repeated, tag = "1")]
    logs: Vec<LogState>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LogState {
    #[prost(string, tag = "1")]
    room: String,
    #[prost(uint64, tag = "2")]
    epoch: u64,
    #[prost(uint64, tag = "3")]
    top: u64,
    #[prost(message, repeated, tag = "4")]
    msgs: Vec<EntryWire>,
    /// Dedupe keys in offset order: (from, client message id, offset).
    #[prost(message, repeated, tag = "5")]
    dedupe: Vec<DedupeWire>,
    #[prost(uint64, tag = "6")]
    touched: u64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct EntryWire {
    #[prost(uint64, tag = "1")]
    offset: u64,
    #[prost(string, tag = "2")]
    msg_id: String,
    #[prost(string, tag = "3")]
    from: String,
    #[prost(bytes = "bytes", tag = "4")]
    payload: bytes::Bytes,
    #[prost(uint64, tag = "5")]
    timestamp_ms: u64,
    #[prost(bool, tag = "6")]
    qos1: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DedupeWire {
    #[prost(string, tag = "1")]
    from: String,
    #[prost(string, tag = "2")]
    client_msg_id: String,
    #[prost(uint64, tag = "3")]
    offset: u64,
}

impl RoomLogs {
    /// Every log, encoded.
    pub(crate) fn export(&self) -> Vec<u8> {
        let logs = (self.logs.iter())
            .map(|(room, log)| LogState {
                room: room.to_string(),
                epoch: log.epoch,
                top: log.top,
                msgs: (log.msgs.iter())
                    .map(|e| EntryWire {
                        offset: e.msg.seq,
                        msg_id: e.msg.msg_id.clone(),
                        from: e.msg.from.clone(),
                        payload: e.msg.payload.clone(),
                        timestamp_ms: e.msg.timestamp_ms,
                        qos1: e.qos1,
                    })
                    .collect(),
                dedupe: (log.dedupe_order.iter())
                    .map(|(offset, (from, id))| DedupeWire {
                        from: from.clone(),
                        client_msg_id: id.clone(),
                        offset: *offset,
                    })
                    .collect(),
                touched: log.touched,
            })
            .collect();
        LogsState { logs }.encode_to_vec()
    }

    /// Takes over what `export` wrote (replacing every log held).
    pub(crate) fn import(&mut self, bytes: &[u8]) -> Result<(), prost::DecodeError> {
        let st = LogsState::decode(bytes)?;
        let (mut logs, mut all) = (HashMap::new(), Vec::new());
        let (mut held, mut total) = (0, 0);
        for l in st.logs {
            let room: Arc<str> = Arc::from(l.room);
            let msgs: VecDeque<RoomEntry> = (l.msgs.into_iter())
                .map(|m| RoomEntry {
                    qos1: m.qos1,
                    msg: Stored {
                        seq: m.offset,
                        msg_id: m.msg_id,
                        from: m.from,
                        room: room.to_string(),
                        payload: m.payload,
                        timestamp_ms: m.timestamp_ms,
                    },
                })
                .collect();
            for e in &msgs {
                let bytes = e.msg.payload.len();
                all.push((e.msg.timestamp_ms, room.clone(), e.msg.seq, bytes));
                (held, total) = (held + 1, total + bytes);
            }
            let dedupe_order: VecDeque<(u64, (String, String))> = (l.dedupe.into_iter())
                .map(|d| (d.offset, (d.from, d.client_msg_id)))
                .collect();
            let dedupe = (dedupe_order.iter())
                .map(|(offset, key)| (key.clone(), *offset))
                .collect();
            let log = Log {
                epoch: l.epoch,
                top: l.top,
                msgs,
                dedupe,
                dedupe_order,
                touched: l.touched,
            };
            logs.insert(room, log);
        }
        // The order across rooms: by time, then offset (what the bounds
        // drop first).
        all.sort_by_key(|a| (a.0, a.2));
        self.order = all.into_iter().map(|(_, r, o, b)| (r, o, b)).collect();
        (self.logs, self.held, self.bytes) = (logs, held, total);
        Ok(())
    }
}
