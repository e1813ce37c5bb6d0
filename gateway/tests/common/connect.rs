//! Opening connections: the WebSocket upgrade, authenticated clients of
//! either transport, and clients placed on a chosen shard (the kernel's
//! SO_REUSEPORT hash decides, so we reconnect until it picks that shard).

use super::client::timed;
use super::{
    auth, user_token, Client, Event, Frame, Gateway, Socket, Transport, IO_TIMEOUT, TCP, WS,
};
use proto::v1::AuthOk;
use std::net::{SocketAddr, TcpStream};
use std::time::Instant;
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::client::Response;
use tungstenite::{HandshakeError, WebSocket};

/// Opens a WebSocket to `ws://addr{target}` with extra request headers.
/// Returns the HTTP error response (e.g. 401) as `Err`.
pub fn upgrade(
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
) -> Result<(WebSocket<Socket>, Response), Box<tungstenite::Error>> {
    let req = ws_request(addr, target, headers);
    let stream = timed(TcpStream::connect(addr).expect("connect to the ws port"));
    tungstenite::client(req, stream).map_err(|e| match e {
        HandshakeError::Failure(e) => Box::new(e),
        HandshakeError::Interrupted(_) => panic!("WebSocket handshake timed out"),
    })
}

/// The upgrade request for `target` with extra `headers`.
fn ws_request(
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
) -> tungstenite::handshake::client::Request {
    let mut req = format!("ws://{addr}{target}")
        .into_client_request()
        .expect("ws URL");
    for (name, value) in headers {
        let name = tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        req.headers_mut().insert(name, value.parse().unwrap());
    }
    req
}

/// Like `upgrade`, but `None` when the connection is refused or broken.
fn try_upgrade(
    addr: SocketAddr,
    target: &str,
    headers: &[(&str, &str)],
) -> Option<(WebSocket<Socket>, Response)> {
    let req = ws_request(addr, target, headers);
    let stream = timed(TcpStream::connect(addr).ok()?);
    match tungstenite::client(req, stream) {
        Ok(done) => Some(done),
        Err(HandshakeError::Failure(
            tungstenite::Error::Io(_)
            | tungstenite::Error::ConnectionClosed
            | tungstenite::Error::Protocol(tungstenite::error::ProtocolError::HandshakeIncomplete),
        )) => None,
        Err(HandshakeError::Failure(e)) => panic!("WebSocket upgrade failed: {e}"),
        Err(HandshakeError::Interrupted(_)) => panic!("WebSocket handshake timed out"),
    }
}

impl Gateway {
    /// Connects `user`/`device` and waits for AuthOk: WebSocket with the
    /// token in the Authorization header, or TCP with an Auth first frame.
    #[track_caller]
    pub fn connect(&self, t: Transport, user: &str, device: &str) -> Client {
        self.connect_with(t, &user_token(user, device), user, device)
    }

    /// `connect` with a given token (claims of the test's choosing).
    #[track_caller]
    pub fn connect_with(&self, t: Transport, token: &str, user: &str, device: &str) -> Client {
        let mut c = match t {
            Transport::Ws(enc) => {
                let bearer = format!("Bearer {token}");
                let offer = ("sec-websocket-protocol", enc.subprotocol());
                let headers = [("authorization", &*bearer), offer];
                let (ws, _) = upgrade(self.ws, "/ws", &headers).expect("ws upgrade");
                Client::from_ws(ws, enc)
            }
            Transport::Tcp => {
                let mut c = Client::from_tcp(TcpStream::connect(self.tcp).expect("connect tcp"));
                c.send(&auth(token, ""));
                c
            }
        };
        c.auth = c.auth_ok();
        self.check_auth(&c.auth, user, device);
        c
    }

    /// Like `connect`, but `None` when the gateway is gone (refused, reset,
    /// or closed before AuthOk), e.g. while it is being killed.
    #[track_caller]
    pub fn try_connect(&self, t: Transport, user: &str, device: &str) -> Option<Client> {
        let token = user_token(user, device);
        let mut c = match t {
            Transport::Ws(enc) => {
                let bearer = format!("Bearer {token}");
                let offer = ("sec-websocket-protocol", enc.subprotocol());
                let headers = [("authorization", &*bearer), offer];
                let (ws, _) = try_upgrade(self.ws, "/ws", &headers)?;
                Client::from_ws(ws, enc)
            }
            Transport::Tcp => {
                let mut c = Client::from_tcp(TcpStream::connect(self.tcp).ok()?);
                if !c.try_send(&auth(&token, "")) {
                    return None;
                }
                c
            }
        };
        match c.next_event() {
            Event::Frame(Frame::AuthOk(a)) => c.auth = a,
            Event::Closed(_) => return None,
            Event::Frame(f) => panic!("expected AuthOk, got {f:?}"),
        }
        if !self.node_id.is_empty() && c.auth.node != self.node_id {
            // Another test's gateway now holds this (dead) gateway's port.
            return None;
        }
        self.check_auth(&c.auth, user, device);
        Some(c)
    }

    /// Asserts an AuthOk is for `user`/`device` on one of this node's shards.
    #[track_caller]
    pub fn check_auth(&self, a: &AuthOk, user: &str, device: &str) {
        assert_eq!(
            (a.user.as_str(), a.device.as_str()),
            (user, device),
            "{a:?}"
        );
        assert!(a.shard < self.shards, "shard out of range: {a:?}");
        assert!(a.heartbeat_ms > 0, "no heartbeat interval: {a:?}");
        assert!(!a.node.is_empty(), "no node id: {a:?}");
    }

    /// Connects until the kernel puts the connection on `shard`.
    #[track_caller]
    pub fn connect_on_shard(&self, t: Transport, user: &str, device: &str, shard: u32) -> Client {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            let c = self.connect(t, user, device);
            if c.auth.shard == shard {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "never got a connection on shard {shard}"
            );
        }
    }

    /// Asserts that every shard still accepts, authenticates and answers
    /// pings, on both transports.
    #[track_caller]
    pub fn assert_shards_serve(&self) {
        for shard in 0..self.shards {
            for t in [WS, TCP] {
                self.connect_on_shard(t, "prober", "probe", shard)
                    .ping(shard as u64 + 1);
            }
        }
    }
}
