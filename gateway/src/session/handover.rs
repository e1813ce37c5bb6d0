//! A session as a value another process can take over (an upgrade,
//! `control::upgrade`): `export` writes everything the protocol state holds
//! into a protobuf message ([`SessionState`], tagged fields, so a later
//! binary can read an older one), `import` rebuilds the session. Times
//! travel as ages relative to the exporter's `now` (an `Instant` means
//! nothing in another process).
//!
//! What moves: the phase, wire, id, user, device, rooms, token expiry, the
//! bytes waiting to be written, a partial frame and a fragmented WebSocket
//! message, the liveness stamp, the QoS 1 window (every unacknowledged
//! frame, the cursors, the retransmit backoff) and the room grants.
//! A closing session does not move (it finishes where it is).
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;
use proto::v1::ServerFrame;

use super::backoff::Backoff;
use super::input::Partial;
use super::qos::QosState;
use super::{Env, Phase, Session};
use crate::outbound::{Outbound, Wire};

/// One session, for another process.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct SessionState {
    #[prost(uint64, tag = "1")]
    pub id: u64,
    /// 0 WebSocket protobuf, 1 WebSocket JSON, 2 raw TCP, 3 and 4 the
    /// first two with permessage-deflate, 5 an SSE stream.
    #[prost(uint32, tag = "2")]
    pub wire: u32,
    /// 0 upgrade, 1 auth, 2 open.
    #[prost(uint32, tag = "3")]
    pub phase: u32,
    #[prost(bool, tag = "4")]
    pub syncing: bool,
    #[prost(string, optional, tag = "5")]
    pub user: Option<String>,
    #[prost(string, tag = "6")]
    pub device: String,
    #[prost(string, repeated, tag = "7")]
    pub rooms: Vec<String>,
    /// Bytes queued for the socket, not yet written.
    #[prost(bytes = "vec", tag = "8")]
    pub out: Vec<u8>,
    /// Bytes of an incomplete frame.
    #[prost(bytes = "vec", tag = "9")]
    pub partial: Vec<u8>,
    /// A fragmented WebSocket message in progress.
    #[prost(message, optional, tag = "10")]
    pub fragments: Option<Fragments>,
    #[prost(uint64, tag = "11")]
    pub stamp_age_ms: u64,
    #[prost(uint32, tag = "12")]
    pub expires_at: u32,
    #[prost(uint64, tag = "13")]
    pub known: u64,
    #[prost(message, optional, tag = "14")]
    pub qos: Option<QosWire>,
    /// The token's `rooms` claim as grants (JSON), if it had one.
    #[prost(string, optional, tag = "15")]
    pub grants: Option<String>,
    /// Positions in the rooms with history (`session::rooms`; kept by the
    /// shard, filled in by it).
    #[prost(message, repeated, tag = "16")]
    pub rooms_at: Vec<RoomAt>,
    /// permessage-deflate: the client's window in bits (0: none).
    #[prost(uint32, tag = "17")]
    pub inflate_bits: u32,
    /// The client's last bytes, which its next compressed message may
    /// refer to (kept by the shard, filled in by it).
    #[prost(bytes = "vec", tag = "18")]
    pub inflate_window: Vec<u8>,
}

/// A connection's position in one room with history.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct RoomAt {
    #[prost(string, tag = "1")]
    pub room: String,
    #[prost(uint64, tag = "2")]
    pub epoch: u64,
    #[prost(uint64, tag = "3")]
    pub last: u64,
}

/// A fragmented WebSocket message so far.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Fragments {
    #[prost(bool, tag = "1")]
    pub text: bool,
    #[prost(bytes = "vec", tag = "2")]
    pub buf: Vec<u8>,
    /// Compressed (RSV1 on its first frame).
    #[prost(bool, tag = "3")]
    pub compressed: bool,
}

/// The QoS 1 window and cursors (see `qos::QosState`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct QosWire {
    #[prost(uint64, tag = "1")]
    pub delivered: u64,
    #[prost(uint64, tag = "2")]
    pub floor: u64,
    #[prost(uint64, tag = "3")]
    pub acked: u64,
    #[prost(uint64, tag = "4")]
    pub pending_ack: u64,
    /// Sequence numbers of the frames in flight, in order.
    #[prost(uint64, repeated, tag = "5")]
    pub inflight_seqs: Vec<u64>,
    /// The frames in flight (protobuf `ServerFrame`s), in order.
    #[prost(bytes = "vec", repeated, tag = "6")]
    pub inflight: Vec<Vec<u8>>,
    #[prost(uint64, tag = "7")]
    pub rto_ms: u64,
    #[prost(uint64, tag = "8")]
    pub since_age_ms: u64,
    #[prost(bool, tag = "9")]
    pub armed: bool,
    #[prost(bool, tag = "10")]
    pub lagging: bool,
    #[prost(bool, tag = "11")]
    pub read_failed: bool,
    #[prost(uint64, tag = "12")]
    pub announced: u64,
    #[prost(bool, tag = "13")]
    pub resumed: bool,
}

/// Why a state could not be taken over.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ImportError {
    #[error("unknown wire {0}")]
    Wire(u32),
    #[error("a compression window of {0} bits")]
    InflateBits(u32),
    #[error("phase {0} does not move")]
    Phase(u32),
    #[error("a frame in flight is unreadable")]
    Frame,
    #[error("a fragmented message is over the frame limit")]
    Fragments,
    #[error("the rooms claim is unreadable")]
    Grants,
}

fn age(now: Instant, then: Instant) -> u64 {
    now.saturating_duration_since(then).as_millis() as u64
}

fn before(now: Instant, age_ms: u64) -> Instant {
    now.checked_sub(Duration::from_millis(age_ms))
        .unwrap_or(now)
}

impl Session {
    /// True when this session can move to another process (it is not
    /// closing).
    pub(crate) fn movable(&self) -> bool {
        self.phase < Phase::Closing
    }

    /// Sets or clears the driver's mark (`shard::Conn::session_mut`).
    pub(crate) fn mark(&mut self, changed: bool) {
        self.changed = changed;
    }

    /// The driver's mark.
    pub(crate) fn marked(&self) -> bool {
        self.changed
    }

    /// Whether `other` asks the router for the same as this one: the same
    /// user, device, wire and rooms (an upgrade's import keeps the routes
    /// of a state that came ahead when only other things changed).
    pub(crate) fn same_routes(&self, other: &Session) -> bool {
        self.user == other.user
            && self.device == other.device
            && self.wire == other.wire
            && self.rooms() == other.rooms()
    }

    /// This session as a value; `grants` are its room grants, if any.
    pub(crate) fn export(
        &self,
        now: Instant,
        grants: Option<&crate::grants::Grants>,
    ) -> SessionState {
        let (partial, fragments) = match &self.partial {
            Some(p) => p.export(),
            None => (Vec::new(), None),
        };
        SessionState {
            id: self.id,
            wire: match self.wire {
                Wire::WsProto => 0,
                Wire::WsJson => 1,
                Wire::Tcp => 2,
                Wire::WsProtoDeflate => 3,
                Wire::WsJsonDeflate => 4,
                Wire::Sse => 5,
            },
            phase: match self.phase {
                Phase::Upgrade => 0,
                Phase::Auth => 1,
                _ => 2,
            },
            syncing: self.syncing,
            user: self.user.as_deref().map(str::to_owned),
            device: self.device.to_string(),
            rooms: self.rooms.iter().map(|r| r.to_string()).collect(),
            out: self.out.clone(),
            partial,
            fragments,
            stamp_age_ms: age(now, self.stamp),
            expires_at: self.expires_at,
            known: self.known,
            qos: self.qos.as_deref().map(|q| q.export(now)),
            grants: grants.map(|g| g.to_claim().to_string()),
            rooms_at: Vec::new(),
            inflate_bits: u32::from(self.inflate_bits),
            inflate_window: Vec::new(),
        }
    }

    /// Rebuilds an exported session at `now`; also returns its grants.
    pub(crate) fn import(
        st: SessionState,
        now: Instant,
        env: &Env,
    ) -> Result<(Session, Option<crate::grants::Grants>), ImportError> {
        let wire = match st.wire {
            0 => Wire::WsProto,
            1 => Wire::WsJson,
            2 => Wire::Tcp,
            3 => Wire::WsProtoDeflate,
            4 => Wire::WsJsonDeflate,
            5 => Wire::Sse,
            w => return Err(ImportError::Wire(w)),
        };
        let phase = match st.phase {
            0 => Phase::Upgrade,
            1 => Phase::Auth,
            2 => Phase::Open,
            p => return Err(ImportError::Phase(p)),
        };
        let max = env.limits.max_frame_bytes;
        let partial = Partial::import(st.partial, st.fragments, wire, max)?;
        let qos = match st.qos {
            Some(q) => Some(Box::new(QosState::import(q, now, env)?)),
            None => None,
        };
        let grants = match st.grants {
            Some(json) => {
                let v: serde_json::Value =
                    serde_json::from_str(&json).map_err(|_| ImportError::Grants)?;
                Some(crate::grants::Grants::from_claim(&v).map_err(|_| ImportError::Grants)?)
            }
            None => None,
        };
        let device = match st.device.is_empty() {
            true => env.no_device.clone(),
            false => Arc::from(st.device),
        };
        let session = Session {
            wire,
            phase,
            syncing: st.syncing,
            timeout_moved: true,
            peer_closed: false,
            fin_sent: false,
            changed: false,
            id: st.id,
            user: st.user.map(Arc::from),
            device,
            rooms: st.rooms.into_iter().map(Arc::from).collect(),
            out: st.out,
            partial: partial.map(Box::new),
            stamp: before(now, st.stamp_age_ms),
            expires_at: st.expires_at,
            bye: 0,
            qos,
            known: st.known,
            inflate_bits: match st.inflate_bits {
                0 => 0,
                b @ 8..=15 => b as u8,
                b => return Err(ImportError::InflateBits(b)),
            },
        };
        Ok((session, grants))
    }
}

impl Partial {
    fn export(&self) -> (Vec<u8>, Option<Fragments>) {
        let fragments =
            self.ws
                .as_ref()
                .and_then(|a| a.pending())
                .map(|(text, compressed, buf)| Fragments {
                    text,
                    buf: buf.to_vec(),
                    compressed,
                });
        (self.buf.clone(), fragments)
    }

    fn import(
        buf: Vec<u8>,
        fragments: Option<Fragments>,
        wire: Wire,
        max: usize,
    ) -> Result<Option<Partial>, ImportError> {
        if buf.is_empty() && fragments.is_none() {
            return Ok(None);
        }
        let ws = match (wire, fragments) {
            (Wire::Tcp | Wire::Sse, _) => None,
            (_, Some(f)) => Some(
                proto::ws::Assembler::resume(max, f.text, f.compressed, f.buf)
                    .ok_or(ImportError::Fragments)?,
            ),
            (_, None) => Some(proto::ws::Assembler::new(max)),
        };
        Ok(Some(Partial { buf, ws }))
    }
}

impl QosState {
    fn export(&self, now: Instant) -> QosWire {
        QosWire {
            delivered: self.delivered,
            floor: self.floor,
            acked: self.acked,
            pending_ack: self.pending_ack,
            inflight_seqs: self.inflight.iter().map(|(seq, _)| *seq).collect(),
            inflight: self
                .inflight
                .iter()
                .map(|(_, msg)| msg.frame().encode_to_vec())
                .collect(),
            rto_ms: self.backoff.rto().as_millis() as u64,
            since_age_ms: age(now, self.backoff.since()),
            armed: self.armed,
            lagging: self.lagging,
            read_failed: self.read_failed,
            announced: self.announced,
            resumed: self.resumed,
        }
    }

    fn import(q: QosWire, now: Instant, env: &Env) -> Result<QosState, ImportError> {
        if q.inflight.len() != q.inflight_seqs.len() {
            return Err(ImportError::Frame);
        }
        let inflight = q
            .inflight_seqs
            .into_iter()
            .zip(q.inflight)
            .map(|(seq, bytes)| {
                ServerFrame::decode(&bytes[..])
                    .map(|f| (seq, Outbound::new(f)))
                    .map_err(|_| ImportError::Frame)
            })
            .collect::<Result<_, _>>()?;
        let mut backoff = Backoff::new(
            Duration::from_millis(env.qos.retransmit_ms),
            Duration::from_millis(env.qos.retransmit_max_ms),
            before(now, q.since_age_ms),
        );
        backoff.set_rto(Duration::from_millis(q.rto_ms));
        Ok(QosState {
            delivered: q.delivered,
            floor: q.floor,
            acked: q.acked,
            pending_ack: q.pending_ack,
            inflight,
            backoff,
            armed: q.armed,
            lagging: q.lagging,
            read_failed: q.read_failed,
            announced: q.announced,
            resumed: q.resumed,
        })
    }
}
