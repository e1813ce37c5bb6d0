//! The few system calls the gateway makes outside monoio, each wrapped once.
//!
//! Why outside monoio: a connection must hold no buffer and no task while
//! idle, so its readiness is tracked by the shard's epoll set (see
//! `shard::poller`) and reads `recv` with `MSG_DONTWAIT` into the shard's
//! scratch buffer; writes are one non-blocking `send` per connection per
//! flush round (the kernel's TCP send costs the same however it is
//! submitted, see `shared/BENCH-NOTES.md`).
//! Cross-shard wake-ups use eventfds created before the shards unshare their
//! fd tables, so the same fd number names the same eventfd in every table.
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Gives the calling thread its own file-descriptor table.
///
/// Must run before the thread builds its io_uring ring: io_uring's worker
/// threads inherit the table of the thread that created them.
pub(crate) fn unshare_files() -> io::Result<()> {
    // SAFETY: unshare only changes the calling thread's kernel state.
    cvt(unsafe { libc::unshare(libc::CLONE_FILES) }).map(|_| ())
}

/// Pins the calling thread to one CPU.
pub(crate) fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET bounds-checks against its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        cvt(libc::sched_setaffinity(
            0,
            std::mem::size_of::<libc::cpu_set_t>(),
            &set,
        ))?;
    }
    Ok(())
}

/// Number of CPUs this process may run on.
pub(crate) fn online_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// A new non-blocking eventfd.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd returns a new fd or -1.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd (wakes whoever polls it). Never blocks.
pub(crate) fn eventfd_signal(fd: RawFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live stack buffer; EAGAIN (counter full)
    // means the reader is already due to wake, so the result is ignored.
    unsafe { libc::write(fd, one.as_ptr().cast(), one.len()) };
}

/// Resets an eventfd's counter. Never blocks.
pub(crate) fn eventfd_drain(fd: RawFd) {
    let mut buf = [0u8; 8];
    // SAFETY: reads at most 8 bytes into a live stack buffer.
    unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
}

/// Duplicates a descriptor into the calling thread's table.
pub(crate) fn dup(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC returns a new fd or -1.
    let new = cvt(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: new was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Closes a descriptor number in the calling thread's table.
pub(crate) fn close(fd: RawFd) {
    // SAFETY: the caller names an fd it inherited and no longer uses.
    unsafe { libc::close(fd) };
}

/// A new epoll set.
pub(crate) fn epoll_create() -> io::Result<OwnedFd> {
    // SAFETY: epoll_create1 returns a new fd or -1.
    let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: fd was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds `fd` to an epoll set, edge-triggered, for input, output and hang-up,
/// reporting `token` with its events. Closing `fd` removes it again.
pub(crate) fn epoll_add(epfd: RawFd, fd: RawFd, token: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event {
        events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
        u64: token,
    };
    // SAFETY: passes a live epoll_event; the kernel copies it.
    cvt(unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(|_| ())
}

/// Collects ready events without waiting; returns how many were filled in.
pub(crate) fn epoll_poll(epfd: RawFd, events: &mut [libc::epoll_event]) -> usize {
    let max = events.len().min(i32::MAX as usize) as i32;
    // SAFETY: the kernel writes at most `max` entries into the live slice.
    let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), max, 0) };
    n.max(0) as usize
}

/// Disables Nagle's algorithm: frames are coalesced by the shard instead.
pub(crate) fn set_nodelay(fd: RawFd) {
    // SAFETY: passes a pointer to a live i32 with its exact size; a failure
    // (socket already gone) is caught by the next read or write.
    unsafe {
        let one: i32 = 1;
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        );
    }
}

/// Outcome of a non-blocking socket call.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Io {
    /// This many bytes moved (0 on recv means the peer closed).
    Done(usize),
    /// Nothing to do now: wait for readiness.
    WouldBlock,
}

/// Non-blocking `recv` into the spare capacity of `buf`.
pub(crate) fn recv(fd: RawFd, buf: &mut Vec<u8>) -> io::Result<Io> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: the kernel writes at most spare.len() bytes into spare, which
    // is owned, allocated capacity of buf.
    let n = unsafe {
        libc::recv(
            fd,
            spare.as_mut_ptr().cast(),
            spare.len(),
            libc::MSG_DONTWAIT,
        )
    };
    match nonblocking(n)? {
        Io::Done(n) => {
            // SAFETY: the kernel initialised n bytes of the spare capacity.
            unsafe { buf.set_len(buf.len() + n) };
            Ok(Io::Done(n))
        }
        Io::WouldBlock => Ok(Io::WouldBlock),
    }
}

/// Non-blocking `send` of `data`; never raises SIGPIPE.
pub(crate) fn send(fd: RawFd, data: &[u8]) -> io::Result<Io> {
    // SAFETY: reads data.len() bytes from a live slice.
    let n = unsafe {
        libc::send(
            fd,
            data.as_ptr().cast(),
            data.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    nonblocking(n)
}

/// Half-closes the write side (sends FIN after queued bytes).
pub(crate) fn shutdown_write(fd: RawFd) {
    // SAFETY: shutdown on a socket fd we own; errors (already closed) are moot.
    unsafe { libc::shutdown(fd, libc::SHUT_WR) };
}

/// Sets an integer socket option.
pub(crate) fn setsockopt_int(
    fd: &impl AsRawFd,
    level: i32,
    name: i32,
    value: i32,
) -> io::Result<()> {
    // SAFETY: passes a pointer to a live i32 with its exact size.
    cvt(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    })
    .map(|_| ())
}

fn nonblocking(n: isize) -> io::Result<Io> {
    if n >= 0 {
        return Ok(Io::Done(n as usize));
    }
    let err = io::Error::last_os_error();
    match err.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(Io::WouldBlock),
        _ => Err(err),
    }
}

fn cvt(ret: i32) -> io::Result<i32> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Binds (without listening) a socket with `SO_REUSEPORT` to `addr`, so a
/// port 0 is resolved once and every shard can then bind the same port.
/// A socket that never listens never receives a connection.
pub(crate) fn bind_probe(
    addr: std::net::SocketAddr,
) -> io::Result<(std::net::SocketAddr, OwnedFd)> {
    let family = if addr.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    // SAFETY: socket returns a new fd or -1.
    let fd = cvt(unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: fd was just created and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    setsockopt_int(&fd, libc::SOL_SOCKET, libc::SO_REUSEPORT, 1)?;
    // SAFETY: sockaddr_storage is plain data, large enough for any address.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match addr {
        std::net::SocketAddr::V4(a) => {
            // SAFETY: sockaddr_in fits in sockaddr_storage and is plain data.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            std::mem::size_of::<libc::sockaddr_in>()
        }
        std::net::SocketAddr::V6(a) => {
            // SAFETY: sockaddr_in6 fits in sockaddr_storage and is plain data.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: storage holds a valid address of `len` bytes.
    cvt(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len as libc::socklen_t,
        )
    })?;
    let mut out_len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname writes at most out_len bytes into storage.
    cvt(unsafe {
        libc::getsockname(
            fd.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut out_len,
        )
    })?;
    let port = match addr {
        // SAFETY: the kernel filled a sockaddr_in for an AF_INET socket.
        std::net::SocketAddr::V4(_) => {
            u16::from_be(unsafe { (*(&storage as *const _ as *const libc::sockaddr_in)).sin_port })
        }
        // SAFETY: the kernel filled a sockaddr_in6 for an AF_INET6 socket.
        std::net::SocketAddr::V6(_) => u16::from_be(unsafe {
            (*(&storage as *const _ as *const libc::sockaddr_in6)).sin6_port
        }),
    };
    let mut resolved = addr;
    resolved.set_port(port);
    Ok((resolved, fd))
}

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread, so they are
/// handled on a thread that shares the process's original fd table (the
/// signal handler writes to a self-pipe by fd number).
pub(crate) fn block_shutdown_signals() -> io::Result<()> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset; the mask
    // change affects only the calling thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}
