//! Listening sockets and `accept`.
//!
//! The node binds every listener itself (one per shard and port, all with
//! `SO_REUSEPORT`, so the kernel spreads connections over the shards), in
//! the process's own descriptor table: an upgrade hands these very sockets to
//! the new process, accept queues included. Shards accept on readiness from
//! their epoll set with a non-blocking `accept4`, so a shard that stops
//! accepting has no accept in flight that could take a connection nobody
//! will serve.
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::{cvt, setsockopt_int};

/// A non-blocking listening socket on `addr` with `SO_REUSEADDR` and
/// `SO_REUSEPORT`, and the address it got (a port 0 resolved).
pub(crate) fn listener(addr: SocketAddr, backlog: i32) -> io::Result<(OwnedFd, SocketAddr)> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let flags = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: socket returns a new fd or -1.
    let fd = cvt(unsafe { libc::socket(family, flags, 0) })?;
    // SAFETY: fd was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    let (storage, len) = to_sockaddr(addr);
    // SAFETY: storage holds a valid address of `len` bytes.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len,
        )
    })?;
    // SAFETY: listen on a socket we own.
    cvt(unsafe { libc::listen(fd.as_raw_fd(), backlog) })?;
    let bound = local_addr(fd.as_raw_fd())?;
    Ok((fd, bound))
}

/// The address a socket is bound to.
pub(crate) fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain data, large enough for any address.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most `len` bytes into storage.
    cvt(unsafe {
        libc::getsockname(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    from_sockaddr(&storage).ok_or_else(|| io::Error::other("not an IP socket"))
}

/// Takes one waiting connection off a non-blocking listener: its descriptor
/// (non-blocking, close-on-exec) and the peer's address; `None` when none
/// is waiting.
pub(crate) fn accept(fd: RawFd) -> io::Result<Option<(RawFd, IpAddr)>> {
    // SAFETY: sockaddr_storage is plain data, large enough for any address.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: accept4 writes at most `len` bytes into storage and returns a
    // new fd or -1.
    let conn = unsafe {
        libc::accept4(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    };
    if conn < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
            // The connection was reset while queued: nothing to serve.
            Some(libc::ECONNABORTED) | Some(libc::EPROTO) => Ok(None),
            _ => Err(err),
        };
    }
    let ip = from_sockaddr(&storage).map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |a| a.ip());
    Ok(Some((conn, ip)))
}

fn to_sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data, large enough for any address.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_in fits in sockaddr_storage and is plain data.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_in6 fits in sockaddr_storage and is plain data.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_scope_id = a.scope_id();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

fn from_sockaddr(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the kernel filled a sockaddr_in for AF_INET.
            let sin = unsafe { &*(storage as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::new(ip.into(), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the kernel filled a sockaddr_in6 for AF_INET6.
            let sin6 = unsafe { &*(storage as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(sin6.sin6_port)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;

    #[test]
    fn listens_resolves_port_zero_and_accepts() {
        let (fd, addr) = super::listener("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        assert_ne!(addr.port(), 0);
        assert!(super::accept(fd.as_raw_fd()).unwrap().is_none());
        // A second listener on the same port joins the reuseport group.
        let (second, again) = super::listener(addr, 16).unwrap();
        assert_eq!(again, addr);
        let _client = std::net::TcpStream::connect(addr).unwrap();
        // Wait (with a deadline) until one of the group has it queued.
        let mut fds = [fd.as_raw_fd(), second.as_raw_fd()].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: polls two live pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, 10_000) };
        assert_eq!(n, 1, "exactly one listener of the group has it");
        let ready = fds.iter().find(|p| p.revents != 0).unwrap().fd;
        let got = super::accept(ready).unwrap();
        let (conn, ip) = got.expect("the connection was accepted");
        assert_eq!(ip, addr.ip());
        crate::sys::close(conn);
    }
}
