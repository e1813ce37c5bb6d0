//! Non-blocking socket calls on a connection's raw descriptor: reads go
//! into the worker's shared buffer (so idle connections hold none), small
//! writes go straight to the socket.
use std::io;
use std::os::fd::AsRawFd;

use monoio::net::TcpStream;

/// What a non-blocking `recv` gave.
pub enum Recv {
    /// Bytes were read into the buffer.
    Data(usize),
    /// Nothing to read now.
    WouldBlock,
    /// The peer closed the connection.
    Eof,
}

/// One `recv(MSG_DONTWAIT)` into `buf`.
pub fn recv(fd: i32, buf: &mut [u8]) -> io::Result<Recv> {
    // SAFETY: buf is a valid writable region of buf.len() bytes.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
    if n > 0 {
        return Ok(Recv::Data(n as usize));
    }
    if n == 0 {
        return Ok(Recv::Eof);
    }
    let e = io::Error::last_os_error();
    match e.kind() {
        io::ErrorKind::WouldBlock => Ok(Recv::WouldBlock),
        io::ErrorKind::Interrupted => Ok(Recv::WouldBlock),
        _ => Err(e),
    }
}

/// One `send(MSG_DONTWAIT | MSG_NOSIGNAL)`; returns bytes written (0 when
/// the socket buffer is full).
pub fn send_now(fd: i32, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: bytes is a valid readable region of bytes.len() bytes.
    let n = unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n >= 0 {
        return Ok(n as usize);
    }
    let e = io::Error::last_os_error();
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
        _ => Err(e),
    }
}

/// Writes all of `bytes`, waiting for writability when the buffer is full.
pub async fn send_all(stream: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    while !bytes.is_empty() {
        let n = send_now(fd, bytes)?;
        if n == 0 {
            stream.writable(false).await?;
            continue;
        }
        bytes = bytes.get(n..).unwrap_or_default();
    }
    Ok(())
}

/// Shuts both directions of `fd` down: the connection's task sees EOF.
pub fn shutdown(fd: i32) {
    // SAFETY: shutdown on a descriptor we own; errors are harmless here.
    unsafe {
        libc::shutdown(fd, libc::SHUT_RDWR);
    }
}

/// The failure key of an IO error.
pub fn cause(stage: &str, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => format!("{stage}_{}", errno_name(code)),
        None => format!("{stage}_{:?}", e.kind()).to_lowercase(),
    }
}

fn errno_name(code: i32) -> String {
    match code {
        libc::ECONNREFUSED => "econnrefused".into(),
        libc::ECONNRESET => "econnreset".into(),
        libc::ETIMEDOUT => "etimedout".into(),
        libc::EADDRNOTAVAIL => "eaddrnotavail".into(),
        libc::EMFILE => "emfile".into(),
        libc::ENFILE => "enfile".into(),
        libc::EPIPE => "epipe".into(),
        libc::ENOBUFS => "enobufs".into(),
        libc::ENOMEM => "enomem".into(),
        other => format!("errno{other}"),
    }
}
