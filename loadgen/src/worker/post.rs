//! The SSE fallback's POSTs (`--wire sse`): each on a connection of its
//! own, as a browser's `fetch` would, answered 204 once the gateway's
//! session took the frames. Spawned, so a connection's task never waits on
//! one; a POST that is not answered 204 is noted (`post_<status>`), and the
//! stream's own session decides what it means (a closed session ends the
//! stream too).
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::Duration;

use monoio::net::TcpStream;

use super::io::{self, Recv};
use super::Worker;

/// How long a POST may take, connect to answer.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// Posts `body` (JSON frames, one per line) to `path` at `dest`.
pub(super) fn spawn(w: &Rc<Worker>, dest: SocketAddr, path: Rc<str>, body: Vec<u8>) {
    let w = w.clone();
    monoio::spawn(async move {
        let cause = match monoio::time::timeout(POST_TIMEOUT, post(dest, &path, &body)).await {
            Ok(Ok(204)) => return,
            Ok(Ok(status)) => format!("post_{status}"),
            Ok(Err(e)) => io::cause("post", &e),
            Err(_) => "post_timeout".into(),
        };
        w.shared.note(&cause);
    });
}

async fn post(dest: SocketAddr, path: &str, body: &[u8]) -> std::io::Result<u16> {
    let stream = TcpStream::connect_addr(dest).await?;
    let _ = stream.set_nodelay(true);
    io::send_all(&stream, &crate::target::sse::post_request(path, body)).await?;
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        stream.readable(false).await?;
        match io::recv(stream.as_raw_fd(), &mut chunk)? {
            Recv::Data(n) => head.extend_from_slice(&chunk[..n]),
            Recv::WouldBlock => continue,
            Recv::Eof => break,
        }
        if let Ok(Some((_, status))) = crate::target::sse::status(&head) {
            return Ok(status);
        }
    }
    match crate::target::sse::status(&head) {
        Ok(Some((_, status))) => Ok(status),
        _ => Err(std::io::Error::other("no answer")),
    }
}
