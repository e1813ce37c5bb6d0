//! The NATS text protocol as carried over WebSocket: `INFO` starts it,
//! `MSG subject sid [reply] len` + payload delivers, `PING`/`PONG` keep it
//! alive. Protocol lines may be split across WebSocket messages, so a
//! partial line is kept in the session until the rest arrives.
use super::{ws, Event, Fail, Phase, Session};

/// Longest protocol line or payload accepted.
const MAX_LINE: usize = 1 << 20;

/// Handles one WebSocket message's bytes of the NATS stream.
pub(super) fn on_bytes(
    s: &mut Session,
    bytes: &[u8],
    out: &mut Vec<u8>,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<(), Fail> {
    if s.partial.is_empty() {
        let used = parse(s, bytes, out, on)?;
        if let Some(rest) = bytes.get(used..).filter(|r| !r.is_empty()) {
            s.partial.extend_from_slice(rest);
        }
    } else {
        let mut buf = std::mem::take(&mut s.partial);
        buf.extend_from_slice(bytes);
        let used = parse(s, &buf, out, on)?;
        buf.drain(..used);
        if !buf.is_empty() {
            s.partial = buf;
        }
    }
    if s.partial.len() > MAX_LINE {
        return Err(Fail::Protocol("nats line too long".into()));
    }
    Ok(())
}

/// Parses whole operations from `buf`; returns the bytes consumed.
fn parse(
    s: &mut Session,
    buf: &[u8],
    out: &mut Vec<u8>,
    on: &mut dyn FnMut(Event<'_>),
) -> Result<usize, Fail> {
    let mut used = 0;
    while let Some(rest) = buf.get(used..).filter(|r| !r.is_empty()) {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Ok(used);
        };
        let line = rest.get(..eol).unwrap_or_default();
        let mut words = line.split(|b| *b == b' ').filter(|w| !w.is_empty());
        let op = words.next().unwrap_or_default().to_ascii_uppercase();
        match op.as_slice() {
            b"MSG" => {
                let args: Vec<&[u8]> = words.collect();
                let len = args
                    .last()
                    .and_then(|l| std::str::from_utf8(l).ok())
                    .and_then(|l| l.parse::<usize>().ok())
                    .filter(|l| *l <= MAX_LINE)
                    .ok_or_else(|| Fail::Protocol("bad MSG line".into()))?;
                let start = eol + 2;
                let Some(payload) = rest.get(start..start + len) else {
                    return Ok(used);
                };
                if rest.get(start + len..start + len + 2).is_none() {
                    return Ok(used);
                }
                on(Event::Delivery(payload, 0));
                used += start + len + 2;
                continue;
            }
            b"INFO" if s.phase == Phase::NatsInfo => {
                let subject = s.room.as_deref().unwrap_or("loadgen");
                let hello = format!(
                    "CONNECT {{\"verbose\":false,\"pedantic\":false}}\r\nSUB {subject} 1\r\nPING\r\n"
                );
                ws::frame(proto::ws::Opcode::Binary, hello.as_bytes(), out);
                s.phase = Phase::Subscribe;
            }
            b"INFO" | b"+OK" => {}
            b"PING" => ws::frame(proto::ws::Opcode::Binary, b"PONG\r\n", out),
            b"PONG" if s.phase == Phase::Subscribe => {
                s.phase = Phase::Open;
                on(Event::Ready);
            }
            b"PONG" => on(Event::Pong(None)),
            b"-ERR" => {
                let why = String::from_utf8_lossy(line).into_owned();
                return Err(Fail::ServerError(why.replace(' ', "_")));
            }
            _ => return Err(Fail::Protocol("unknown nats operation".into())),
        }
        used += eol + 2;
    }
    Ok(used)
}
