//! The task of one outgoing link: connect (with the link's backoff), move
//! bytes between the socket and the `relay::Link`, and send the interest
//! snapshot each time the link comes up.
use std::os::fd::{FromRawFd, IntoRawFd, OwnedFd};
use std::rc::Rc;
use std::time::Instant;

use relay::LinkEvent;

use super::sock::{self, Read, Sock};
use super::PeerLink;
use crate::shard::Shard;

impl Shard {
    pub(super) async fn link_task(self: Rc<Self>, pl: Rc<PeerLink>) {
        let mut buf = Vec::new();
        while !pl.removed.get() {
            let now = self.tick_clock();
            if pl.link.borrow_mut().poll_connect(now) {
                let connect = monoio::net::TcpStream::connect(pl.addr);
                let timeout = self.bus.config.borrow().hello_timeout;
                match monoio::time::timeout(timeout, connect).await {
                    Ok(Ok(stream)) => {
                        // SAFETY: the descriptor was just taken from the stream.
                        let fd = unsafe { OwnedFd::from_raw_fd(stream.into_raw_fd()) };
                        let sock = match self.bus_tls_conn(Some(pl.addr.ip())) {
                            Ok(tls) => Sock::new(fd, tls).map_err(|e| e.to_string()),
                            Err(e) => Err(e.to_string()),
                        };
                        match sock {
                            Ok(s) => self.run_link(&pl, s, &mut buf).await,
                            Err(e) => {
                                tracing::warn!(shard = self.id, peer = %pl.peer.id, "bus: cannot open a link: {e}");
                                pl.link.borrow_mut().connect_failed(self.tick_clock());
                            }
                        }
                    }
                    _ => pl.link.borrow_mut().connect_failed(self.tick_clock()),
                }
                self.link_events(&pl);
                continue;
            }
            let wait = wait_for(&pl.link.borrow(), now);
            sock::idle(&pl.wake, wait).await;
            let now = self.tick_clock();
            pl.link.borrow_mut().handle_timeout(now);
            self.link_events(&pl);
        }
    }

    /// Runs one TCP session of the link until it closes.
    async fn run_link(&self, pl: &PeerLink, mut sock: Sock, buf: &mut Vec<u8>) {
        pl.link.borrow_mut().transport_up(self.tick_clock());
        loop {
            let mut closed = false;
            loop {
                match sock.read(buf) {
                    Read::Data => {
                        let now = self.tick_clock();
                        pl.link.borrow_mut().handle_bytes(now, buf);
                    }
                    Read::Empty => break,
                    Read::Closed => {
                        closed = true;
                        break;
                    }
                }
            }
            self.link_events(pl);
            let now = self.tick_clock();
            // Whatever the router queued since the last write goes out now:
            // the task runs once the router yields, so this is one batch
            // per routing round (the link's own deadline is the backstop).
            pl.link.borrow_mut().flush(now);
            loop {
                let bytes = pl.link.borrow_mut().poll_transmit(now);
                match bytes {
                    Some(b) => {
                        if !sock.write(b) {
                            closed = true;
                            break;
                        }
                    }
                    None => break,
                }
            }
            if !sock.flush() || closed || pl.removed.get() || pl.link.borrow().wants_close() {
                if let Some(e) = sock.tls_error.take() {
                    // The peer's certificate, or ours to it, did not pass.
                    self.bus_auth_failed(pl.addr.ip(), 1, &format!("TLS: {e}"));
                }
                break;
            }
            let wait = wait_for(&pl.link.borrow(), now);
            sock.wait(&pl.wake, wait).await;
            let now = self.tick_clock();
            pl.link.borrow_mut().handle_timeout(now);
        }
        pl.link.borrow_mut().transport_down(self.tick_clock());
    }

    fn link_events(&self, pl: &PeerLink) {
        let failures = pl.link.borrow().stats().auth_failures;
        let new = failures.saturating_sub(pl.auth_failures.replace(failures));
        loop {
            let ev = pl.link.borrow_mut().poll_event();
            match ev {
                Some(LinkEvent::Up {
                    peer,
                    peer_restarted,
                }) => {
                    tracing::info!(shard = self.id, peer = %peer.node_id, peer_restarted, "bus: link up");
                    self.snapshot(pl);
                }
                Some(LinkEvent::Down { reason }) => {
                    if new > 0 {
                        self.bus_auth_failed(pl.addr.ip(), new, &reason);
                    }
                    tracing::debug!(shard = self.id, peer = %pl.peer.id, "bus: link down: {reason}");
                }
                None => break,
            }
        }
    }
}

/// How long the task may sleep before the link wants its timeout handled.
fn wait_for(link: &relay::Link, now: Instant) -> Option<std::time::Duration> {
    link.poll_timeout()
        .map(|at| at.saturating_duration_since(now))
}
