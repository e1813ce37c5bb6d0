//! This shard's bus port: accepts links from peers and runs one task per
//! link, turning each envelope into a message for the shard that owns its
//! name on this node (`peer`). The dedupe state of every link a peer shard
//! opened here (`relay::Seen`) outlives the link, so a resent batch is
//! recognised after a reconnect.
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use relay::InboundEvent;

use super::sock::{Read, Sock};
use super::InboundHandle;
use crate::shard::Shard;
use crate::stats::ShardStats;

impl Shard {
    pub(super) async fn accept_bus(self: Rc<Self>, fd: RawFd) {
        // SAFETY: the node bound this listener for this shard alone; the
        // other shards closed their copies of the number.
        let std_listener = unsafe { std::net::TcpListener::from_raw_fd(fd) };
        let listener = match monoio::net::TcpListener::from_std(std_listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(shard = self.id, "bus: cannot listen: {e}");
                return;
            }
        };
        loop {
            match listener.accept().await {
                // Handed to an upgrade's new process: a peer that reached
                // this process is closed unread (it dials again and reaches
                // the new one); this copy of the listener closes.
                Ok(_) if self.handed_over.get() => return,
                Ok((stream, from)) => {
                    // SAFETY: the descriptor was just taken from the stream.
                    let fd = unsafe { OwnedFd::from_raw_fd(stream.into_raw_fd()) };
                    match self.bus_tls_conn(None).map(|tls| Sock::new(fd, tls)) {
                        Ok(Ok(sock)) => {
                            monoio::spawn(self.clone().inbound_task(sock, from.ip()));
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(shard = self.id, "bus: cannot take a link: {e}")
                        }
                        Err(e) => tracing::warn!(shard = self.id, "bus: cannot take a link: {e}"),
                    }
                }
                Err(e) => {
                    tracing::warn!(shard = self.id, "bus: accept failed: {e}");
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    async fn inbound_task(self: Rc<Self>, mut sock: Sock, from: std::net::IpAddr) {
        let handle = Rc::new(InboundHandle {
            node: Default::default(),
            close: Default::default(),
            wake: Default::default(),
        });
        self.bus.inbound.borrow_mut().push(handle.clone());
        let mut inbound = relay::Inbound::new(
            self.bus.identity.clone(),
            self.bus.config.borrow().clone(),
            self.tick_clock(),
        );
        let mut buf = Vec::new();
        let mut peer: Option<(Arc<str>, u16)> = None;
        let mut last_reason = String::new();
        'session: loop {
            // While an upgrade moves the connections nothing is read, so
            // nothing is acknowledged: after a commit the link closes unread
            // and the peer sends it again, to the new process.
            self.gate.passed().await;
            if handle.close.get() || self.handed_over.get() {
                break 'session;
            }
            let mut closed = false;
            loop {
                match sock.read(&mut buf) {
                    Read::Data => {
                        let now = self.tick_clock();
                        let mut seen = self.bus.seen.borrow_mut();
                        inbound.handle_bytes(now, &buf, &mut seen);
                    }
                    Read::Empty => break,
                    Read::Closed => {
                        closed = true;
                        break;
                    }
                }
                while let Some(ev) = inbound.poll_event() {
                    match ev {
                        InboundEvent::Hello { peer: id } => {
                            let node: Arc<str> = Arc::from(id.node_id.as_str());
                            *handle.node.borrow_mut() = Some(node.clone());
                            peer = Some((node, id.shard));
                        }
                        InboundEvent::Envelope(bytes) => {
                            ShardStats::inc(&self.stats.bus_envelopes_in);
                            if let Some((node, shard)) = &peer {
                                self.on_envelope(node, *shard, &bytes);
                            }
                        }
                        InboundEvent::Closed { reason } => {
                            tracing::debug!(shard = self.id, "bus: inbound link closed: {reason}");
                            last_reason = reason;
                            closed = true;
                        }
                    }
                }
            }
            while let Some(b) = inbound.poll_transmit() {
                if !sock.write(b) {
                    closed = true;
                }
            }
            if !sock.flush() || closed || handle.close.get() || inbound.wants_close() {
                break 'session;
            }
            let now = self.tick_clock();
            let wait = inbound
                .poll_timeout()
                .map(|at| at.saturating_duration_since(now));
            sock.wait(&handle.wake, wait).await;
            inbound.handle_timeout(self.tick_clock());
        }
        let failures = inbound.stats().auth_failures;
        if failures > 0 {
            self.bus_auth_failed(from, failures, &last_reason);
        }
        if let Some(e) = sock.tls_error.take() {
            // No certificate of the cluster CA, or a broken record.
            self.bus_auth_failed(from, 1, &format!("TLS: {e}"));
        }
        self.bus
            .inbound
            .borrow_mut()
            .retain(|h| !Rc::ptr_eq(h, &handle));
    }
}
