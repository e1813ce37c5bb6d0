//! The test clients' socket: timeouts on every read and write, EINTR retried.
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;

use super::IO_TIMEOUT;

/// A client socket with `IO_TIMEOUT` on every read and write, which retries
/// EINTR: any signal handled in the test process interrupts socket calls that
/// have a timeout, even under SA_RESTART (signal(7)); such reads were seen
/// failing with EINTR here.
pub struct Socket(pub(super) TcpStream);

pub fn timed(stream: TcpStream) -> Socket {
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_nodelay(true).unwrap();
    Socket(stream)
}

fn retry<T>(mut op: impl FnMut() -> std::io::Result<T>) -> std::io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        retry(|| self.0.read(buf))
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        retry(|| self.0.write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        retry(|| self.0.flush())
    }
}
