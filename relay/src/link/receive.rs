//! The dialer's receive path: frames from the acceptor (`WELCOME`, then
//! cumulative `ACK`s), and the checks that end a connection on a protocol
//! error (bad frame, wrong version, wrong node id, `WELCOME` twice, an ack of
//! batches never sent).

use std::time::Instant;

use proto::bus::{self, Frame, Kind};

use super::{Link, LinkEvent, LinkState, PeerInfo};
use crate::timer::Timer;

/// A frame from the acceptor, copied out of the receive buffer.
enum Incoming {
    Welcome {
        version: u16,
        incarnation: u64,
        received: u64,
        node_id: String,
    },
    Ack(u64),
    Unexpected(Kind),
}

impl Link {
    /// Bytes received from the peer, in any chunking.
    pub fn handle_bytes(&mut self, now: Instant, data: &[u8]) {
        self.stats.bytes_in += data.len() as u64;
        let connected = matches!(self.state, LinkState::Handshaking | LinkState::Up);
        if self.closing || !connected {
            return;
        }
        self.rx.extend_from_slice(data);
        let mut pos = 0;
        while !self.closing {
            let incoming = match bus::parse(&self.rx[pos..], &self.config.limits) {
                Ok(None) => break,
                Err(e) => {
                    self.fail(format!("bad frame from the acceptor: {e}"));
                    break;
                }
                Ok(Some((frame, used))) => {
                    pos += used;
                    match frame {
                        Frame::Welcome(w) => Incoming::Welcome {
                            version: w.version,
                            incarnation: w.incarnation,
                            received: w.received,
                            node_id: w.node_id.to_owned(),
                        },
                        Frame::Ack(seq) => Incoming::Ack(seq),
                        other => Incoming::Unexpected(other.kind()),
                    }
                }
            };
            self.on_frame(now, incoming);
        }
        if self.closing {
            self.rx = Vec::new();
            return;
        }
        self.rx.drain(..pos);
        if self.state == LinkState::Up {
            self.timers.set(Timer::Idle, now + self.config.idle_timeout);
        }
        self.sync_stats();
    }

    fn on_frame(&mut self, now: Instant, frame: Incoming) {
        match (self.state, frame) {
            (
                LinkState::Handshaking,
                Incoming::Welcome {
                    version,
                    incarnation,
                    received,
                    node_id,
                },
            ) => {
                if version != bus::VERSION {
                    return self.fail(format!(
                        "peer speaks bus version {version}, we speak {}",
                        bus::VERSION
                    ));
                }
                if let Some(expected) = self.expect_peer.as_deref() {
                    if expected != node_id {
                        return self.fail(format!(
                            "peer says it is node {node_id:?}, expected {expected:?}"
                        ));
                    }
                }
                if self.queue.rewind(received).is_err() {
                    return self.fail(format!(
                        "WELCOME says batch {received} was received, it was never sent"
                    ));
                }
                self.up(
                    now,
                    PeerInfo {
                        node_id,
                        incarnation,
                    },
                );
            }
            (LinkState::Up, Incoming::Welcome { .. }) => self.fail("WELCOME twice".to_owned()),
            (LinkState::Up, Incoming::Ack(seq)) => {
                if self.queue.ack(seq).is_err() {
                    self.fail(format!("ACK {seq} beyond the last batch sent"));
                }
            }
            (_, Incoming::Ack(seq)) => self.fail(format!("ACK {seq} before WELCOME")),
            (_, Incoming::Unexpected(kind)) => {
                self.fail(format!("unexpected {kind:?} frame from the acceptor"))
            }
            (_, Incoming::Welcome { .. }) => self.fail("WELCOME out of turn".to_owned()),
        }
    }

    fn up(&mut self, now: Instant, peer: PeerInfo) {
        let peer_restarted = self
            .peer
            .as_ref()
            .is_some_and(|p| p.incarnation != peer.incarnation);
        self.peer = Some(peer.clone());
        self.state = LinkState::Up;
        self.backoff.reset();
        self.timers.stop(Timer::Hello);
        self.timers.set(Timer::Idle, now + self.config.idle_timeout);
        self.timers
            .set(Timer::Heartbeat, now + self.config.heartbeat);
        self.stats.ups += 1;
        self.events.push_back(LinkEvent::Up {
            peer,
            peer_restarted,
        });
    }
}
