//! Publishers for the fan-out scenario, one per target, each blocking (they
//! run on the main thread): the gateway's admin push API, nchan's HTTP
//! publisher location, and a plain NATS TCP client connection.
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine as _;

use crate::http;

/// Publishes bodies to rooms (channels, subjects).
pub enum Publisher {
    /// `POST /push {"room":..,"payload_b64":..}` on the gateway's admin port.
    /// The admin client, and whether pushes ask for QoS 1.
    GatewayAdmin(http::Client, bool),
    /// `POST /pub/<channel>` on nginx.
    Nchan(http::Client),
    /// `PUB subject len` on a NATS client connection.
    Nats(BufReader<TcpStream>),
}

impl Publisher {
    /// The gateway admin publisher (QoS 1 pushes when `qos1`).
    pub fn gateway(admin: SocketAddr, qos1: bool) -> Self {
        Publisher::GatewayAdmin(http::Client::new(admin), qos1)
    }

    /// The nchan publisher.
    pub fn nchan(addr: SocketAddr) -> Self {
        Publisher::Nchan(http::Client::new(addr))
    }

    /// Connects a NATS publisher to the client port `addr`.
    pub fn nats(addr: SocketAddr) -> anyhow::Result<Self> {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .with_context(|| format!("connecting to nats at {addr}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.set_nodelay(true)?;
        let mut r = BufReader::new(s);
        let mut info = String::new();
        r.read_line(&mut info)?;
        if !info.starts_with("INFO") {
            bail!("nats did not greet with INFO: {info:?}");
        }
        r.get_mut()
            .write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\n")?;
        let mut p = Publisher::Nats(r);
        p.flush()?;
        Ok(p)
    }

    /// Publishes one body to `room`.
    pub fn publish(&mut self, room: &str, body: &[u8]) -> anyhow::Result<()> {
        match self {
            Publisher::GatewayAdmin(c, qos1) => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(body);
                let qos = u8::from(*qos1);
                let json =
                    serde_json::json!({ "room": room, "payload_b64": b64, "qos": qos }).to_string();
                let (status, resp) = c.request("POST", "/push", json.as_bytes())?;
                if status != 200 {
                    bail!("push answered {status}: {}", String::from_utf8_lossy(&resp));
                }
            }
            Publisher::Nchan(c) => {
                let (status, resp) = c.request("POST", &format!("/pub/{room}"), body)?;
                if !(200..300).contains(&status) {
                    bail!(
                        "nchan publish answered {status}: {}",
                        String::from_utf8_lossy(&resp)
                    );
                }
            }
            Publisher::Nats(r) => {
                let mut msg = format!("PUB {room} {}\r\n", body.len()).into_bytes();
                msg.extend_from_slice(body);
                msg.extend_from_slice(b"\r\n");
                r.get_mut().write_all(&msg)?;
            }
        }
        Ok(())
    }

    /// Waits until the server has taken everything published (NATS: a
    /// `PING` answered by `PONG`; HTTP publishers are synchronous).
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if let Publisher::Nats(r) = self {
            r.get_mut().write_all(b"PING\r\n")?;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line)? == 0 {
                    bail!("nats closed the publisher connection");
                }
                match line.trim_end() {
                    "PONG" => return Ok(()),
                    "PING" => r.get_mut().write_all(b"PONG\r\n")?,
                    l if l.starts_with("-ERR") => bail!("nats: {l}"),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}
