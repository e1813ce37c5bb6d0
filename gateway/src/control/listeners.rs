//! The node's listening sockets, bound by the node (not by each shard) so
//! that they live in the process's own descriptor table: one WebSocket and
//! one raw TCP listener per shard (all on one port, `SO_REUSEPORT`), one bus
//! listener per shard (port + shard) and the admin listener.
//!
//! Each shard gets copies of its own three when its thread unshares the
//! table, and closes every other one there. The node keeps the originals:
//! an upgrade (`control::upgrade`) hands these very sockets, with whatever
//! waits in their accept queues, to the new process; a drain closes them so
//! that, once the shards have closed theirs, connects are refused at once
//! (a client then tries another node) instead of waiting in a queue nobody
//! reads.
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::node_error::{listen, os, NodeError};
use crate::config::Config;
use crate::shard::ShardFds;
use crate::sys;

/// Listen backlog of each client listener.
const BACKLOG: i32 = 4096;

/// Every listening socket of the node.
pub(crate) struct Listeners {
    /// One per shard, all on `ws_addr`.
    pub ws: Vec<OwnedFd>,
    /// One per shard, all on `tcp_addr`.
    pub tcp: Vec<OwnedFd>,
    /// One per shard (none on a single node).
    pub bus: Vec<OwnedFd>,
    /// The admin API's.
    pub admin: OwnedFd,
    /// Where they listen (ports resolved).
    pub addrs: Addrs,
}

/// Where the node's listeners listen.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Addrs {
    /// WebSocket, every shard.
    pub ws: SocketAddr,
    /// Raw TCP, every shard.
    pub tcp: SocketAddr,
    /// Bus, shard by shard.
    pub bus: Vec<SocketAddr>,
    /// Admin.
    pub admin: SocketAddr,
}

impl Listeners {
    /// Binds them all for `shards` shards, as `config` says.
    pub(crate) fn bind(config: &Config, shards: usize) -> Result<Listeners, NodeError> {
        let (ws, ws_addr) = group(config.ws_listen, shards, "WebSocket")?;
        let (tcp, tcp_addr) = group(config.tcp_listen, shards, "TCP")?;
        let (bus, bus_addrs) = bind_bus(config, shards)?;
        let admin_listen = config.admin_listen;
        let admin =
            std::net::TcpListener::bind(admin_listen).map_err(listen(admin_listen, "admin"))?;
        let admin_addr = admin
            .local_addr()
            .map_err(os("read the admin listener's address"))?;
        Ok(Listeners {
            ws,
            tcp,
            bus,
            admin: admin.into(),
            addrs: Addrs {
                ws: ws_addr,
                tcp: tcp_addr,
                bus: bus_addrs,
                admin: admin_addr,
            },
        })
    }

    /// Shard `id`'s own descriptors.
    pub(crate) fn shard(&self, id: usize) -> ShardFds {
        ShardFds {
            ws: self.ws[id].as_raw_fd(),
            tcp: self.tcp[id].as_raw_fd(),
            bus: self.bus.get(id).map(|l| l.as_raw_fd()),
        }
    }

    /// Every descriptor that shard `id` closes in its own table.
    pub(crate) fn not_for(&self, id: usize) -> Vec<RawFd> {
        let mine = self.shard(id);
        self.all()
            .into_iter()
            .filter(|fd| *fd != mine.ws && *fd != mine.tcp && Some(*fd) != mine.bus)
            .collect()
    }

    /// Every descriptor, in the order an upgrade sends them: each shard's
    /// WebSocket, TCP and (on many nodes) bus listener, then the admin's.
    pub(crate) fn all(&self) -> Vec<RawFd> {
        let mut fds = Vec::with_capacity(self.ws.len() * 3 + 1);
        for id in 0..self.ws.len() {
            fds.push(self.ws[id].as_raw_fd());
            fds.push(self.tcp[id].as_raw_fd());
            fds.extend(self.bus.get(id).map(|l| l.as_raw_fd()));
        }
        fds.push(self.admin.as_raw_fd());
        fds
    }

    /// Takes over descriptors received in [`all`](Self::all)'s order for
    /// `shards` shards, checking each is a listener at its stated address.
    pub(crate) fn adopt(
        fds: Vec<OwnedFd>,
        shards: usize,
        addrs: Addrs,
    ) -> Result<Listeners, String> {
        let per = if addrs.bus.is_empty() { 2 } else { 3 };
        if fds.len() != shards * per + 1 || (per == 3 && addrs.bus.len() != shards) {
            return Err(format!(
                "expected {} listeners for {shards} shards, got {}",
                shards * per + 1,
                fds.len()
            ));
        }
        let mut it = fds.into_iter();
        let mut next = |want: SocketAddr, what: &str| -> Result<OwnedFd, String> {
            let fd = it.next().ok_or("missing listener")?;
            match sys::local_addr(fd.as_raw_fd()) {
                Ok(a) if a == want => Ok(fd),
                Ok(a) => Err(format!("{what} listener is on {a}, expected {want}")),
                Err(e) => Err(format!("{what} listener unreadable: {e}")),
            }
        };
        let (mut ws, mut tcp, mut bus) = (Vec::new(), Vec::new(), Vec::new());
        for id in 0..shards {
            ws.push(next(addrs.ws, "WebSocket")?);
            tcp.push(next(addrs.tcp, "TCP")?);
            if per == 3 {
                bus.push(next(addrs.bus[id], "bus")?);
            }
        }
        let admin = next(addrs.admin, "admin")?;
        for fd in ws.iter().chain(&tcp).chain(&bus).chain([&admin]) {
            sys::set_nonblocking(fd.as_raw_fd()).map_err(|e| format!("listener: {e}"))?;
        }
        Ok(Listeners {
            ws,
            tcp,
            bus,
            admin,
            addrs,
        })
    }
}

/// `shards` listeners on one address (port 0: the first one's port).
fn group(
    addr: SocketAddr,
    shards: usize,
    what: &str,
) -> Result<(Vec<OwnedFd>, SocketAddr), NodeError> {
    let mut resolved = addr;
    let mut fds = Vec::with_capacity(shards);
    for _ in 0..shards {
        let (fd, bound) = sys::listener(resolved, BACKLOG).map_err(listen(resolved, what))?;
        resolved = bound;
        fds.push(fd);
    }
    Ok((fds, resolved))
}

/// Binds one bus listener per shard (port + shard, or free ports for 0).
fn bind_bus(config: &Config, shards: usize) -> Result<(Vec<OwnedFd>, Vec<SocketAddr>), NodeError> {
    let Some(base) = config.cluster.bus_listen else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut fds = Vec::with_capacity(shards);
    let mut addrs = Vec::with_capacity(shards);
    for i in 0..shards {
        let mut addr = base;
        if base.port() != 0 {
            addr.set_port(base.port() + i as u16);
        }
        let what = || format!("bus, shard {i}");
        let l = std::net::TcpListener::bind(addr).map_err(listen(addr, what()))?;
        l.set_nonblocking(true).map_err(listen(addr, what()))?;
        addrs.push(l.local_addr().map_err(listen(addr, what()))?);
        fds.push(l.into());
    }
    Ok((fds, addrs))
}
