//! Messages with descriptors between two processes: a `SOCK_SEQPACKET`
//! socket pair (message boundaries kept, both ends told when the other dies)
//! and `SCM_RIGHTS`. The upgrade's handover channel (`control::upgrade`).
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::cvt;

/// Most descriptors one message carries (the kernel's `SCM_MAX_FD` is 253).
pub(crate) const MAX_FDS: usize = 253;

/// A connected `SOCK_SEQPACKET` pair, close-on-exec both.
pub(crate) fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: socketpair writes two fds into the live array or returns -1.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn cmsg_space(n: usize) -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    unsafe { libc::CMSG_SPACE((n * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// Sends one message, `bytes` with `fds` attached (at most [`MAX_FDS`]).
/// Blocks until the kernel takes it; never raises SIGPIPE.
pub(crate) fn send_msg(sock: &impl AsRawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    send_msg_flags(sock, [&[], bytes], fds, 0)
}

/// `send_msg` with `flags` added (`MSG_DONTWAIT`: `WouldBlock` when the
/// channel is full, and nothing sent).
/// The message is `parts` one after the other (a record's chunk: its flag
/// byte and its bytes, not copied together).
fn send_msg_flags(
    sock: &impl AsRawFd,
    parts: [&[u8]; 2],
    fds: &[RawFd],
    flags: i32,
) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::other("too many descriptors for one message"));
    }
    let mut iov = parts.map(|p| libc::iovec {
        iov_base: p.as_ptr() as *mut libc::c_void,
        iov_len: p.len(),
    });
    // u64 words keep the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; cmsg_space(fds.len()).div_ceil(8)];
    // SAFETY: msghdr is plain data; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = iov.len() as _;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = cmsg_space(fds.len()) as _;
        // SAFETY: the control buffer has room for one header and the fds
        // (CMSG_SPACE); CMSG_FIRSTHDR points into it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr().cast::<u8>(),
                libc::CMSG_DATA(cmsg),
                std::mem::size_of_val(fds),
            );
        }
    }
    loop {
        // SAFETY: msg and everything it points to are live.
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL | flags) };
        if n >= 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Receives one message of at most `max` bytes and its descriptors (owned,
/// close-on-exec), waiting at most `timeout`. `Ok(None)`: the other end
/// closed. A message larger than `max`, or with more than [`MAX_FDS`]
/// descriptors, is an error (what did arrive is closed).
pub(crate) fn recv_msg(
    sock: &impl AsRawFd,
    max: usize,
    timeout: Duration,
) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    wait_readable(sock.as_raw_fd(), timeout)?;
    // Not zeroed first (4% of the new process's CPU while a million
    // connections came ahead, measured): the kernel
    // writes the first `n` bytes, and only those are kept.
    let mut buf: Vec<u8> = Vec::with_capacity(max);
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: max,
    };
    let mut control = vec![0u64; cmsg_space(MAX_FDS).div_ceil(8)];
    // SAFETY: msghdr is plain data; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = (control.len() * 8) as _;
    let n = loop {
        // SAFETY: msg and everything it points to are live; the kernel
        // writes at most the buffers' sizes.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: walks the control messages the kernel wrote, within
    // msg_controllen; each SCM_RIGHTS payload is an array of fds now ours.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..len / std::mem::size_of::<RawFd>() {
                    let fd = std::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    fds.push(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0 {
        return Err(io::Error::other("handover message truncated"));
    }
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    // SAFETY: recvmsg wrote `n` bytes (at most `max`, the capacity) at the
    // start of `buf`.
    unsafe { buf.set_len(n.min(max)) };
    Ok(Some((buf, fds)))
}

/// Bytes of a record per message (well under the socket's send buffer).
const CHUNK: usize = 32 * 1024;

/// Sends one record of any size: `bytes` in chunks, `fds` (at most
/// [`MAX_FDS`]) with the first. Each chunk starts with a byte that is 1 on
/// the last one.
pub(crate) fn send_record(sock: &impl AsRawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut chunks = bytes.chunks(CHUNK).peekable();
    let mut first = true;
    loop {
        let chunk = chunks.next().unwrap_or(&[]);
        let last = chunks.peek().is_none();
        let flag = [last as u8];
        send_msg_flags(sock, [&flag, chunk], if first { fds } else { &[] }, 0)?;
        first = false;
        if last {
            return Ok(());
        }
    }
}

/// Sends a record of at most one chunk as `send_record` does, without
/// waiting: `Ok(false)` when the channel is full (nothing was sent).
pub(crate) fn try_send_record(
    sock: &impl AsRawFd,
    bytes: &[u8],
    fds: &[RawFd],
) -> io::Result<bool> {
    if bytes.len() > CHUNK {
        return Err(io::Error::other("record too long to send without waiting"));
    }
    match send_msg_flags(sock, [&[1], bytes], fds, libc::MSG_DONTWAIT) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(e),
    }
}

/// Receives one record `send_record` sent, of at most `max` bytes, each
/// chunk within `timeout`. `Ok(None)`: the other end closed first.
pub(crate) fn recv_record(
    sock: &impl AsRawFd,
    max: usize,
    timeout: Duration,
) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    let mut bytes = Vec::new();
    let mut fds = Vec::new();
    loop {
        let Some((mut chunk, got)) = recv_msg(sock, CHUNK + 1, timeout)? else {
            return Ok(None);
        };
        fds.extend(got);
        if bytes.is_empty() && chunk.first() == Some(&1) && chunk.len() <= max + 1 {
            // A record in one message (nearly all): its buffer is the
            // record's, not copied into a fresh one.
            chunk.remove(0);
            return Ok(Some((chunk, fds)));
        }
        let Some((&last, body)) = chunk.split_first() else {
            return Err(io::Error::other("empty record chunk"));
        };
        if bytes.len() + body.len() > max {
            return Err(io::Error::other("record over its bound"));
        }
        bytes.extend_from_slice(body);
        if last == 1 {
            return Ok(Some((bytes, fds)));
        }
    }
}

fn wait_readable(fd: RawFd, timeout: Duration) -> io::Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut p = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: polls one live pollfd.
        let n = unsafe { libc::poll(&mut p, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        match n {
            n if n > 0 => return Ok(()),
            0 => return Err(io::Error::from(io::ErrorKind::TimedOut)),
            _ => {
                let err = io::Error::last_os_error();
                if err.kind() != io::ErrorKind::Interrupted {
                    return Err(err);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    #[test]
    fn a_descriptor_crosses_and_names_the_same_file() {
        let (a, b) = super::seqpacket_pair().unwrap();
        let (r, w) = super::seqpacket_pair().unwrap();
        super::send_msg(&a, b"hello", &[w.as_raw_fd()]).unwrap();
        drop(w);
        let (bytes, fds) = super::recv_msg(&b, 64, Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert_eq!(bytes, b"hello");
        assert_eq!(fds.len(), 1);
        // The received end is the pair's other end: a message through it
        // reaches `r`.
        super::send_msg(&fds[0], b"through", &[]).unwrap();
        let (got, none) = super::recv_msg(&r, 64, Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert_eq!(got, b"through");
        assert!(none.is_empty());
        drop(a);
        assert!(super::recv_msg(&b, 64, Duration::from_secs(5))
            .unwrap()
            .is_none());
    }

    #[test]
    fn a_record_spans_chunks_and_keeps_its_descriptors() {
        let (a, b) = super::seqpacket_pair().unwrap();
        let (_r, w) = super::seqpacket_pair().unwrap();
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let sender = std::thread::spawn(move || {
            super::send_record(&a, &big, &[w.as_raw_fd()]).unwrap();
            super::send_record(&a, b"", &[]).unwrap();
            big
        });
        let (got, fds) = super::recv_record(&b, 1 << 20, Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert_eq!(got, sender.join().unwrap());
        assert_eq!(fds.len(), 1);
        let (empty, _) = super::recv_record(&b, 1 << 20, Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn an_oversized_message_is_refused_not_cut() {
        let (a, b) = super::seqpacket_pair().unwrap();
        super::send_msg(&a, &[7u8; 100], &[]).unwrap();
        assert!(super::recv_msg(&b, 10, Duration::from_secs(5)).is_err());
        assert!(super::send_msg(&a, b"x", &[0; super::MAX_FDS + 1]).is_err());
    }
}
