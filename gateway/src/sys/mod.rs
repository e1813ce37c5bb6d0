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
//! `listen`: listeners and accept; `fdpass`: descriptors between processes
//! (the upgrade's handover).
mod fdpass;
mod listen;

pub(crate) use fdpass::{
    recv_msg, recv_record, send_msg, send_record, seqpacket_pair, try_send_record, MAX_FDS,
};
pub(crate) use listen::{accept, listener, local_addr};

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// `N` random bytes from the kernel (`getrandom(2)`): a secret (the one
/// that signs SSE POST keys).
pub(crate) fn random_bytes<const N: usize>() -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a valid writable region of `rest.len()` bytes.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n > 0 {
            filled += n as usize;
        } else if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(buf)
}

/// Clock ticks per second (`/proc`'s CPU times) and the page size in
/// bytes (`statm`'s unit); 100 and 4096 when the system does not say.
pub(crate) fn clock_ticks_and_page_size() -> (u64, u64) {
    // SAFETY: sysconf reads a system constant.
    let (hz, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (
        u64::try_from(hz).ok().filter(|v| *v > 0).unwrap_or(100),
        u64::try_from(page).ok().filter(|v| *v > 0).unwrap_or(4096),
    )
}

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

/// Gives the calling thread the lowest CPU priority (`SCHED_IDLE`, and
/// nice 19 should that be refused): after an upgrade's commit, what an old
/// shard still does (forgetting its moved connections, draining the rest)
/// must not take the CPU from the new process, which serves everyone. At
/// nice 19 alone, 80 old shards busy at once weigh more than one serving
/// thread together (80 x 15 against 1024); `SCHED_IDLE` threads run only
/// on CPU no other thread wants. Unprivileged (a thread may always lower
/// its own priority); never undone, the process exits.
/// A failure leaves the priority as it was.
pub(crate) fn lowest_priority_for_this_thread() {
    // SAFETY: setpriority takes plain integers; on Linux PRIO_PROCESS with
    // 0 names the calling thread.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a live sched_param; on Linux pid 0 names the calling thread.
    unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
}

/// Puts `/dev/null` on standard input (descriptor 0).
pub(crate) fn null_stdin() -> io::Result<()> {
    // SAFETY: a NUL-terminated path and flags; returns a new fd or -1.
    let null = cvt(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    // SAFETY: dup2 onto 0 replaces whatever is there (nothing, or a stale
    // copy); `null` is ours to close unless it is 0 already.
    let r = cvt(unsafe { libc::dup2(null, 0) });
    if null != 0 {
        close(null);
    }
    r.map(|_| ())
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

/// Removes `fd` from an epoll set. Needed before closing a descriptor whose
/// file another table or process also holds (a listener): epoll watches the
/// file, not the number.
pub(crate) fn epoll_del(epfd: RawFd, fd: RawFd) {
    // SAFETY: EPOLL_CTL_DEL ignores the event argument; an fd not in the
    // set is an error without effect.
    unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_DEL, fd, std::ptr::null_mut()) };
}

/// Puts a descriptor in non-blocking mode.
pub(crate) fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a descriptor number; errors are returned.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(|_| ())
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

pub(super) fn cvt(ret: i32) -> io::Result<i32> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Blocks SIGTERM, SIGINT, SIGHUP and SIGUSR2 in the calling thread, so they are
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
        libc::sigaddset(&mut set, libc::SIGUSR2);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

/// Tells systemd (a `Type=notify` unit: `$NOTIFY_SOCKET`) the node's state,
/// e.g. `READY=1`; does nothing when not run by systemd. Best effort: a
/// lost notice is systemd's timeout to report, not the node's to die of.
pub(crate) fn notify_systemd(state: &str) {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name),
        None => SocketAddr::from_pathname(std::path::Path::new(&path)),
    };
    let sent = (addr.ok())
        .zip(UnixDatagram::unbound().ok())
        .map(|(addr, sock)| sock.send_to_addr(state.as_bytes(), &addr));
    if !matches!(sent, Some(Ok(_))) {
        tracing::warn!("cannot notify systemd ({state:?})");
    }
}
