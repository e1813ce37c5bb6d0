//! Reading a connection: bytes from the socket into a pooled buffer, split
//! into frames by the sans-IO codecs of `proto`, handed to the session.
//!
//! The buffer is taken from the shard's pool when the socket is readable and
//! given back as soon as no partial frame is left in it, so an idle
//! connection holds none. It grows only up to the frame limit plus a header.
use std::os::fd::RawFd;

use proto::codec::Encoding;
use proto::v1::ErrorCode;
use proto::ws::{self, Assembler, Event, Role};

use super::tables::ConnKey;
use super::{Phase, Shard};
use crate::metrics::ShardStats;
use crate::sys::{self, Io};

/// How reading ended.
pub(super) enum ReadEnd {
    /// Socket drained; wait for readiness again.
    Again,
    /// The peer closed, the socket failed, or the session is closing.
    Closed,
}

/// A fatal protocol error: the client gets this code and the connection closes.
pub(super) struct Fatal(pub ErrorCode, pub String);

/// Per-connection read state, owned by the connection task.
pub(super) struct Reader {
    buf: Vec<u8>,
    ws: Option<Assembler>,
}

impl Reader {
    pub(super) fn new(websocket: bool, max_message: usize) -> Reader {
        Reader {
            buf: Vec::new(),
            ws: websocket.then(|| Assembler::new(max_message)),
        }
    }

    /// Reads what the socket has and processes every complete frame.
    pub(super) fn on_readable(&mut self, shard: &Shard, key: ConnKey, fd: RawFd) -> ReadEnd {
        let limit = shard.node.config.limits.max_frame_bytes + 64;
        let limit = limit.max(shard.node.config.limits.max_handshake_bytes);
        let end = loop {
            if self.buf.capacity() == 0 {
                self.buf = shard.take_buf();
            }
            if self.buf.len() == self.buf.capacity() {
                let grow = self
                    .buf
                    .len()
                    .min(limit.saturating_sub(self.buf.len()))
                    .max(1024);
                self.buf.reserve(grow);
            }
            let spare = self.buf.capacity() - self.buf.len();
            match sys::recv(fd, &mut self.buf) {
                Ok(Io::Done(0)) | Err(_) => break ReadEnd::Closed,
                Ok(Io::WouldBlock) => break ReadEnd::Again,
                Ok(Io::Done(n)) => {
                    ShardStats::add(&shard.stats.bytes_in, n as u64);
                    shard.touch(key);
                    if let Err(Fatal(code, msg)) = self.process(shard, key) {
                        shard.fail(key, code, &msg);
                        break ReadEnd::Closed;
                    }
                    if shard.phase(key) == Some(Phase::Closing) {
                        break ReadEnd::Closed;
                    }
                    if n < spare {
                        break ReadEnd::Again;
                    }
                }
            }
        };
        if self.buf.is_empty() {
            shard.put_buf(std::mem::take(&mut self.buf));
        }
        end
    }

    /// Drains and discards input while a closing connection lingers.
    pub(super) fn discard(&mut self, shard: &Shard, fd: RawFd) -> ReadEnd {
        if self.buf.capacity() == 0 {
            self.buf = shard.take_buf();
        }
        let end = loop {
            self.buf.clear();
            match sys::recv(fd, &mut self.buf) {
                Ok(Io::Done(0)) | Err(_) => break ReadEnd::Closed,
                Ok(Io::WouldBlock) => break ReadEnd::Again,
                Ok(Io::Done(_)) => {}
            }
        };
        self.buf.clear();
        shard.put_buf(std::mem::take(&mut self.buf));
        end
    }

    fn process(&mut self, shard: &Shard, key: ConnKey) -> Result<(), Fatal> {
        let max = shard.node.config.limits.max_frame_bytes;
        let mut pos = 0;
        let result = loop {
            match shard.phase(key) {
                Some(Phase::Closing) | None => break Ok(()),
                Some(Phase::Upgrade) => {
                    let max_head = shard.node.config.limits.max_handshake_bytes;
                    match proto::handshake::parse_request(&self.buf[pos..], max_head) {
                        Ok(Some((used, req))) => {
                            pos += used;
                            shard.on_upgrade(key, req);
                        }
                        Ok(None) => break Ok(()),
                        Err(e) => {
                            shard.reject_upgrade(key, e.status(), &e.to_string());
                            break Ok(());
                        }
                    }
                }
                Some(_) => {
                    let step = match &mut self.ws {
                        Some(asm) => ws_step(shard, key, asm, &mut self.buf[pos..], max),
                        None => tcp_step(shard, key, &self.buf[pos..], max),
                    };
                    match step {
                        Ok(Some(used)) => pos += used,
                        Ok(None) => break Ok(()),
                        Err(e) => break Err(e),
                    }
                }
            }
        };
        self.buf.drain(..pos);
        result
    }
}

fn tcp_step(shard: &Shard, key: ConnKey, buf: &[u8], max: usize) -> Result<Option<usize>, Fatal> {
    match proto::frame::decode(buf, max) {
        Ok(Some((used, payload))) => {
            shard.on_payload(key, Encoding::Proto, payload)?;
            Ok(Some(used))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(Fatal(ErrorCode::FrameTooLarge, e.to_string())),
    }
}

fn ws_step(
    shard: &Shard,
    key: ConnKey,
    asm: &mut Assembler,
    buf: &mut [u8],
    max: usize,
) -> Result<Option<usize>, Fatal> {
    let head = match ws::decode_frame(buf, Role::Server, max) {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(None),
        Err(e) => {
            let code = if e.close_code() == 1009 {
                ErrorCode::FrameTooLarge
            } else {
                ErrorCode::BadFrame
            };
            return Err(Fatal(code, e.to_string()));
        }
    };
    let used = head.header_len + head.payload_len;
    let payload = &buf[head.header_len..used];
    let event = asm.push(head, payload).map_err(|e| {
        let code = if e.close_code() == 1009 {
            ErrorCode::FrameTooLarge
        } else {
            ErrorCode::BadFrame
        };
        Fatal(code, e.to_string())
    })?;
    match event {
        None | Some(Event::Pong(_)) => {}
        Some(Event::Data { text, payload }) => {
            let enc = if text {
                Encoding::Json
            } else {
                Encoding::Proto
            };
            shard.on_payload(key, enc, &payload)?;
        }
        Some(Event::Ping(data)) => shard.ws_pong(key, data),
        Some(Event::Close { .. }) => shard.close(key, None),
    }
    Ok(Some(used))
}
