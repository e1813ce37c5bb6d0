//! A blocking test client for both client transports: WebSocket (tungstenite
//! over a std `TcpStream`) and raw TCP with length-prefixed frames.
//!
//! Every read and write has the socket timeout `IO_TIMEOUT`; a timeout panics
//! with what was being waited for. Frames read while waiting for a specific
//! one are kept, in order, and returned by later reads; a client dropped
//! with kept frames nobody read fails the test.

use super::{frames::*, IO_TIMEOUT};
use proto::v1::{AuthOk, ServerFrame};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::time::Instant;
use tungstenite::{Message, WebSocket};

/// Which port and encoding a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Ws(Encoding),
    Tcp,
}

/// A WebSocket client of the proto subprotocol.
pub const WS: Transport = Transport::Ws(Encoding::Proto);
/// A WebSocket client of the JSON subprotocol.
pub const WS_JSON: Transport = Transport::Ws(Encoding::Json);
/// A raw TCP client.
pub const TCP: Transport = Transport::Tcp;

/// What a client observed next.
#[derive(Debug)]
pub enum Event {
    Frame(Frame),
    /// The connection ended; the WebSocket close code if one was sent.
    Closed(Option<u16>),
}

enum Conn {
    Ws(Box<WebSocket<Socket>>),
    Tcp(Socket, Vec<u8>),
}

pub struct Client {
    conn: Conn,
    enc: Encoding,
    stash: VecDeque<Frame>,
    /// The AuthOk this connection got, once authenticated.
    pub auth: AuthOk,
}

pub use super::socket::{timed, Socket};

impl Client {
    /// The raw TCP socket of a TCP client (to write from another thread).
    pub fn tcp_stream(&self) -> &TcpStream {
        match &self.conn {
            Conn::Tcp(s, _) => &s.0,
            Conn::Ws(_) => panic!("not a raw TCP client"),
        }
    }

    /// Wraps an upgraded WebSocket; not yet authenticated.
    pub fn from_ws(ws: WebSocket<Socket>, enc: Encoding) -> Client {
        Client::new(Conn::Ws(Box::new(ws)), enc)
    }

    /// Wraps a connected TCP stream to the tcp port; not yet authenticated.
    pub fn from_tcp(stream: TcpStream) -> Client {
        Client::new(Conn::Tcp(timed(stream), Vec::new()), Encoding::Proto)
    }

    fn new(conn: Conn, enc: Encoding) -> Client {
        let auth = AuthOk::default();
        Client {
            conn,
            enc,
            stash: VecDeque::new(),
            auth,
        }
    }

    /// Sends one frame in this connection's encoding.
    pub fn send(&mut self, f: &proto::v1::ClientFrame) {
        let bytes = encode_client(f, self.enc);
        match self.enc {
            Encoding::Proto => self.send_bytes(&bytes),
            Encoding::Json => self.send_text(std::str::from_utf8(&bytes).unwrap()),
        }
    }

    /// Sends one frame; false when the connection is already broken (the
    /// peer reset or closed it), where `send` would panic.
    pub fn try_send(&mut self, f: &proto::v1::ClientFrame) -> bool {
        let bytes = encode_client(f, self.enc);
        match (&mut self.conn, self.enc) {
            (Conn::Ws(ws), Encoding::Proto) => ws.send(Message::binary(bytes)).is_ok(),
            (Conn::Ws(ws), Encoding::Json) => match String::from_utf8(bytes) {
                Ok(text) => ws.send(Message::text(text)).is_ok(),
                Err(e) => panic!("JSON encoding is not UTF-8: {e}"),
            },
            (Conn::Tcp(s, _), _) => s.write_all(&length_prefixed(&bytes)).is_ok(),
        }
    }

    /// Drops the connection without a goodbye (no WebSocket close frame);
    /// with `reset`, SO_LINGER 0 makes the kernel send RST instead of FIN.
    pub fn abort(self, reset: bool) {
        if reset {
            let fd = match &self.conn {
                Conn::Ws(ws) => ws.get_ref().0.as_raw_fd(),
                Conn::Tcp(s, _) => s.0.as_raw_fd(),
            };
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: `fd` is this client's open socket (owned by `self`,
            // closed only when it drops below); `linger` is a valid
            // `struct linger` of the size passed.
            let rc = unsafe {
                libc::setsockopt(
                    fd,
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                )
            };
            assert_eq!(rc, 0, "setsockopt(SO_LINGER)");
        }
        drop(self);
    }

    /// Sends raw bytes: one binary message (WS), or a length-prefixed frame
    /// (TCP).
    pub fn send_bytes(&mut self, payload: &[u8]) {
        match &mut self.conn {
            Conn::Ws(ws) => ws.send(Message::binary(payload.to_vec())).expect("ws send"),
            Conn::Tcp(s, _) => s.write_all(&length_prefixed(payload)).expect("tcp send"),
        }
    }

    /// Writes bytes to the TCP socket exactly as given (no length prefix).
    pub fn send_raw_tcp(&mut self, bytes: &[u8]) {
        let Conn::Tcp(s, _) = &mut self.conn else {
            panic!("not a TCP client")
        };
        s.write_all(bytes).expect("tcp write");
    }

    /// Sends one text message (WS only).
    pub fn send_text(&mut self, text: &str) {
        let Conn::Ws(ws) = &mut self.conn else {
            panic!("not a WebSocket client")
        };
        ws.send(Message::text(text.to_owned()))
            .expect("ws send text");
    }

    /// The next frame or the end of the connection.
    pub fn next_event(&mut self) -> Event {
        if let Some(f) = self.stash.pop_front() {
            return Event::Frame(f);
        }
        self.read_event()
    }

    fn read_event(&mut self) -> Event {
        let enc = self.enc;
        let frame = match &mut self.conn {
            Conn::Ws(ws) => loop {
                match ws.read() {
                    Ok(Message::Binary(b)) => {
                        assert_eq!(enc, Encoding::Proto, "binary message on a JSON connection");
                        break decode_server(&b, enc);
                    }
                    Ok(Message::Text(t)) => {
                        assert_eq!(enc, Encoding::Json, "text message on a proto connection");
                        break decode_server(t.as_bytes(), enc);
                    }
                    Ok(Message::Close(c)) => return Event::Closed(c.map(|c| c.code.into())),
                    Ok(_) => continue,
                    Err(e) => return ws_end(e),
                }
            },
            Conn::Tcp(s, buf) => loop {
                match proto::frame::decode(buf, 64 << 20) {
                    Ok(Some((n, payload))) => {
                        let f = decode_server(payload, enc);
                        buf.drain(..n);
                        break f;
                    }
                    Ok(None) => {}
                    Err(e) => panic!("server sent a bad length prefix: {e}"),
                }
                let mut chunk = [0u8; 16 << 10];
                match s.read(&mut chunk) {
                    Ok(0) => {
                        assert!(buf.is_empty(), "connection closed inside a frame");
                        return Event::Closed(None);
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    // A signal came (EINTR): read again.
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return io_end(e),
                }
            },
        };
        match frame {
            Some(ServerFrame { frame: Some(f) }) => Event::Frame(f),
            other => panic!("server sent an undecodable or empty frame: {other:?}"),
        }
    }

    /// The next frame; panics if the connection ends first.
    #[track_caller]
    pub fn recv(&mut self) -> Frame {
        match self.next_event() {
            Event::Frame(f) => f,
            Event::Closed(code) => panic!("connection closed (code {code:?}) awaiting a frame"),
        }
    }

    /// The first frame matching `pred`; frames before it are kept for later.
    #[track_caller]
    pub fn recv_matching(&mut self, what: &str, pred: impl Fn(&Frame) -> bool) -> Frame {
        if let Some(i) = self.stash.iter().position(&pred) {
            return self.stash.remove(i).unwrap();
        }
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "no {what} within {IO_TIMEOUT:?}");
            match self.read_event() {
                Event::Frame(f) if pred(&f) => return f,
                Event::Frame(f) => self.stash.push_back(f),
                Event::Closed(code) => panic!("connection closed ({code:?}) awaiting {what}"),
            }
        }
    }

    /// Asserts the next event is the end of the connection; returns the
    /// close code.
    #[track_caller]
    pub fn expect_closed(&mut self) -> Option<u16> {
        match self.next_event() {
            Event::Closed(code) => code,
            Event::Frame(f) => panic!("expected the connection to close, got {f:?}"),
        }
    }

    /// Pings and asserts the matching Pong is the next frame.
    #[track_caller]
    pub fn ping(&mut self, nonce: u64) {
        self.send(&ping(nonce));
        assert_eq!(self.pong().nonce, nonce);
    }

    /// Sends a room join and waits for RoomJoined.
    #[track_caller]
    pub fn join(&mut self, room: &str) {
        self.send(&join(room));
        assert_eq!(self.joined().room, room);
    }

    /// Frames received but not yet taken (kept by `recv_matching`).
    pub fn stashed(&self) -> &VecDeque<Frame> {
        &self.stash
    }

    /// Takes the frames `recv_matching` kept: a test that means to leave
    /// frames unread says so by taking them (a client dropped with frames
    /// left fails the test).
    pub fn take_stashed(&mut self) -> Vec<Frame> {
        self.stash.drain(..).collect()
    }

    /// The SendResult for `client_msg_id`, wherever it is among the frames.
    #[track_caller]
    pub fn result_for(&mut self, client_msg_id: &str) -> proto::v1::SendResult {
        let f = self.recv_matching(
            "SendResult",
            |f| matches!(f, Frame::SendResult(r) if r.client_msg_id == client_msg_id),
        );
        let Frame::SendResult(r) = f else {
            unreachable!()
        };
        r
    }

    /// The next Deliver, wherever it is among the frames.
    #[track_caller]
    pub fn any_deliver(&mut self) -> proto::v1::Deliver {
        let Frame::Deliver(d) = self.recv_matching("Deliver", |f| matches!(f, Frame::Deliver(_)))
        else {
            unreachable!()
        };
        d
    }
}

/// Frames read while waiting for another one and never looked at would be
/// frames a test did not expect: a client may not end with any.
impl Drop for Client {
    fn drop(&mut self) {
        if !std::thread::panicking() && !self.stash.is_empty() {
            panic!(
                "client {}/{} dropped with frames it never looked at: {:?}",
                self.auth.user, self.auth.device, self.stash
            );
        }
    }
}

macro_rules! expect_methods {
    ($($method:ident => $variant:ident($ty:ty)),+ $(,)?) => {
        impl Client {
            $(
                #[doc = concat!("Asserts the next frame is ", stringify!($variant), ".")]
                #[track_caller]
                pub fn $method(&mut self) -> $ty {
                    match self.recv() {
                        Frame::$variant(x) => x,
                        other => panic!("expected {}, got {other:?}", stringify!($variant)),
                    }
                }
            )+
        }
    };
}

expect_methods! {
    auth_ok => AuthOk(AuthOk),
    pong => Pong(proto::v1::Pong),
    deliver => Deliver(proto::v1::Deliver),
    send_result => SendResult(proto::v1::SendResult),
    error => Error(proto::v1::Error),
    go_away => GoAway(proto::v1::GoAway),
    joined => Joined(proto::v1::RoomJoined),
    left => Left(proto::v1::RoomLeft),
    gap => Gap(proto::v1::Gap),
    refreshed => Refreshed(proto::v1::Refreshed),
}

#[track_caller]
fn io_end(e: std::io::Error) -> Event {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            panic!("no frame within {IO_TIMEOUT:?}")
        }
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => Event::Closed(None),
        _ => panic!("read error: {e}"),
    }
}

#[track_caller]
fn ws_end(e: tungstenite::Error) -> Event {
    use tungstenite::error::{Error, ProtocolError};
    match e {
        Error::ConnectionClosed
        | Error::AlreadyClosed
        | Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Event::Closed(None),
        Error::Io(e) => io_end(e),
        e => panic!("WebSocket error: {e}"),
    }
}
