//! The dialer's receive path: frames from the acceptor (`WELCOME`, then
//! cumulative `ACK`s), and the checks that end a connection on a protocol
//! error (bad frame, wrong version, wrong node id, `WELCOME` twice, an ack of
//! batches never sent).

use std::time::Instant;

use proto::bus::{self, Frame, Kind};

use super::{Link, LinkEvent, LinkState, PeerInfo};
use crate::auth::{self, Role};
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
    Auth {
        nonce: [u8; bus::NONCE_LEN],
        proofs: Vec<u8>,
    },
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
                        Frame::Auth(a) => Incoming::Auth {
                            nonce: *a.nonce,
                            proofs: a.proofs.to_vec(),
                        },
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
                if self.nonce.is_some() && !self.acceptor_proved {
                    return self.refuse(format!(
                        "node {node_id:?} answered without proving the cluster secret (has it none?)"
                    ));
                }
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
            (LinkState::Handshaking, Incoming::Auth { nonce, proofs }) => {
                self.on_auth(&nonce, &proofs)
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
            (_, Incoming::Auth { .. }) => self.fail("AUTH out of turn".to_owned()),
        }
    }

    /// The acceptor's nonce and proofs: checked, then ours go out.
    fn on_auth(&mut self, theirs: &[u8; bus::NONCE_LEN], proofs: &[u8]) {
        let Some(ours) = self.nonce else {
            return self
                .refuse("the acceptor asks for a cluster secret: this node has none".into());
        };
        if self.acceptor_proved {
            return self.fail("AUTH twice".to_owned());
        }
        let secrets = &self.config.secrets;
        let hello = self.hello();
        let chunks = proofs.chunks_exact(bus::PROOF_LEN);
        if !auth::verify(secrets, Role::Acceptor, &ours, theirs, &hello, chunks) {
            return self.refuse("the acceptor did not prove the cluster secret".to_owned());
        }
        let mine = auth::prove(secrets, Role::Dialer, &ours, theirs, &hello);
        let mut out = Vec::new();
        bus::encode_auth(&ours, &mine, &mut out);
        self.control.extend_from_slice(&out);
        self.acceptor_proved = true;
    }

    /// An acceptor that did not authenticate: the connection ends, counted.
    fn refuse(&mut self, reason: String) {
        self.stats.auth_failures += 1;
        self.fail(reason);
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
