//! Negotiating permessage-deflate (RFC 7692) from a client's
//! `Sec-WebSocket-Extensions` offers (RFC 6455 section 9.1).
//!
//! The server's side of the agreement never changes: it compresses every
//! message on its own, without context takeover and with a 15-bit window
//! (`server_no_context_takeover`), so a compressed broadcast is the same
//! bytes for every member and an idle connection holds no compressor. What
//! the client does is its choice, bounded here:
//! - it resets its context per message (`client_no_context_takeover`
//!   offered): the server keeps nothing between messages;
//! - it keeps its context but lets the server cap its window
//!   (`client_max_window_bits` offered): the server answers with at most
//!   [`CLIENT_WINDOW_BITS`] and keeps that many bytes of the client's last
//!   output (512 B) for a connection that has sent a compressed message;
//! - neither (Firefox and OkHttp offer a bare `permessage-deflate`): the
//!   server answers `client_no_context_takeover` (RFC 7692 section
//!   7.1.1.2 lets it, whatever the offer said), so it keeps nothing.
//!
//! Declined: an offer that caps the server's window below 15 bits (a shared
//! compressed broadcast could not honour it), one with an unknown or
//! repeated parameter, or a malformed one. A declined offer falls through
//! to the client's next one; none left means no extension, never a failed
//! upgrade.

/// The window the server lets a client with context takeover use, in bits
/// (512 B kept per connection that has sent a compressed message).
pub const CLIENT_WINDOW_BITS: u8 = 9;

/// What was agreed for permessage-deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deflate {
    /// `None`: the client resets its context per message. `Some(bits)`:
    /// its messages may refer to the last `1 << bits` bytes of its earlier
    /// ones (the server keeps them).
    pub client_window_bits: Option<u8>,
    /// The client asked for `server_max_window_bits` (answered with 15).
    server_bits_asked: bool,
}

impl Deflate {
    /// The `Sec-WebSocket-Extensions` value of the server's answer.
    pub fn response(&self) -> String {
        let mut out = String::from("permessage-deflate; server_no_context_takeover");
        match self.client_window_bits {
            None => out.push_str("; client_no_context_takeover"),
            Some(bits) => out.push_str(&format!("; client_max_window_bits={bits}")),
        }
        if self.server_bits_asked {
            out.push_str("; server_max_window_bits=15");
        }
        out
    }

    /// The agreement a client reads from a server's answer (tests, load
    /// generator): `None` if `value` does not accept permessage-deflate.
    pub fn from_response(value: &str) -> Option<Deflate> {
        let (name, params) = parse_list(value).into_iter().next()?.ok()?;
        if name != "permessage-deflate" {
            return None;
        }
        let mut client_window_bits = Some(15);
        for (k, v) in params {
            match (k.as_str(), v) {
                ("client_no_context_takeover", None) => client_window_bits = None,
                ("client_max_window_bits", Some(v)) if client_window_bits.is_some() => {
                    client_window_bits = Some(window_bits(&v)?);
                }
                _ => {}
            }
        }
        Some(Deflate {
            client_window_bits,
            server_bits_asked: false,
        })
    }
}

/// The first acceptable permessage-deflate offer among `values` (every
/// `Sec-WebSocket-Extensions` header of the request, in order), or `None`.
pub fn negotiate_deflate<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Deflate> {
    values
        .into_iter()
        .flat_map(parse_list)
        .filter_map(Result::ok)
        .filter(|(name, _)| name == "permessage-deflate")
        .find_map(|(_, params)| accept(&params))
}

/// The server's answer to one permessage-deflate offer (see the module
/// header), or `None` to decline it.
fn accept(params: &[(String, Option<String>)]) -> Option<Deflate> {
    let mut seen: Vec<&str> = Vec::with_capacity(params.len());
    let (mut client_reset, mut client_bits, mut server_bits_asked) = (false, None, false);
    for (k, v) in params {
        if seen.contains(&k.as_str()) {
            return None;
        }
        seen.push(k);
        match (k.as_str(), v) {
            ("server_no_context_takeover", None) => {}
            ("client_no_context_takeover", None) => client_reset = true,
            ("server_max_window_bits", Some(v)) => {
                if window_bits(v)? != 15 {
                    return None;
                }
                server_bits_asked = true;
            }
            ("client_max_window_bits", None) => client_bits = Some(15),
            ("client_max_window_bits", Some(v)) => client_bits = Some(window_bits(v)?),
            _ => return None,
        }
    }
    let client_window_bits = match (client_reset, client_bits) {
        (false, Some(bits)) => Some(bits.min(CLIENT_WINDOW_BITS)),
        // Told to reset its context per message (offered or not).
        _ => None,
    };
    Some(Deflate {
        client_window_bits,
        server_bits_asked,
    })
}

/// A window size parameter: 8 to 15, decimal, no leading zero or sign.
fn window_bits(v: &str) -> Option<u8> {
    if v.starts_with('0') || v.len() > 2 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

/// One extension of a list: its name and parameters (values unquoted).
type Extension = (String, Vec<(String, Option<String>)>);

/// Splits an extension list into its elements; a malformed element is an
/// `Err` and does not spoil the others.
fn parse_list(value: &str) -> Vec<Result<Extension, ()>> {
    split_outside_quotes(value, ',')
        .into_iter()
        .filter(|e| !e.trim().is_empty())
        .map(parse_extension)
        .collect()
}

fn parse_extension(element: &str) -> Result<Extension, ()> {
    let mut parts = split_outside_quotes(element, ';').into_iter();
    let name = parts.next().ok_or(())?.trim();
    if !is_token(name) {
        return Err(());
    }
    let mut params = Vec::new();
    for p in parts {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(unquote(v.trim())?)),
            None => (p.trim(), None),
        };
        if !is_token(k) {
            return Err(());
        }
        params.push((k.to_ascii_lowercase(), v));
    }
    Ok((name.to_ascii_lowercase(), params))
}

/// A parameter value: a token, or a quoted string whose content is one
/// (RFC 6455 section 9.1).
fn unquote(v: &str) -> Result<String, ()> {
    let inner = match v.strip_prefix('"') {
        Some(rest) => {
            let body = rest.strip_suffix('"').ok_or(())?;
            let mut out = String::with_capacity(body.len());
            let mut chars = body.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.push(chars.next().ok_or(())?),
                    '"' => return Err(()),
                    c => out.push(c),
                }
            }
            out
        }
        None => v.to_owned(),
    };
    if is_token(&inner) {
        Ok(inner)
    } else {
        Err(())
    }
}

/// Splits on `sep` where it is not inside a quoted string.
fn split_outside_quotes(s: &str, sep: char) -> Vec<&str> {
    let (mut out, mut start, mut quoted, mut escaped) = (Vec::new(), 0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// An HTTP token (RFC 7230 section 3.2.6).
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
#[path = "extensions_tests.rs"]
mod tests;
