//! Who may use the admin API: the checks every request passes before any
//! handler runs, as pure functions of the request head (no sockets).
//!
//! In order: the `Host` (against DNS rebinding: a page on an attacker's
//! name that resolves to this node still sends that name), the `Origin`
//! (a page the operator opens cannot send a "simple" cross-origin POST,
//! which needs no preflight), then the bearer token (compared in constant
//! time). `GET /healthz`, the console's static files (`GET /`,
//! `/console`, `/console/...`: they hold no data) and the CORS preflight
//! of an allowed origin need no token; nothing is exempt from the Host and
//! Origin checks. The admin port's own origin (`http://` + a `Host` that
//! passed) is allowed: that is the console's page, served by this node.
use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::admin::AdminConfig;
use crate::hot::Hot;

/// True for the paths anyone may GET: health, and the console's files.
fn no_token_needed(path: &str) -> bool {
    matches!(path, "/healthz" | "/" | "/console") || path.starts_with("/console/")
}

/// True when `origin` is the admin port's own (`http://` + the `Host`):
/// the console page this node served. A page elsewhere has another origin
/// (scheme, host or port), and the `Host` itself passed the check above.
fn same_origin(origin: &str, host: &str) -> bool {
    origin
        .strip_prefix("http://")
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

/// The parts of a request head the checks read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Head<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path without the query.
    pub path: &'a str,
    /// The authority: the request target's in absolute form, else `Host`.
    /// `Err(())` when there are several `Host` headers.
    pub host: Result<Option<&'a str>, ()>,
    /// The `Origin` header (several: `Err`).
    pub origin: Result<Option<&'a str>, ()>,
    /// The `Authorization` header.
    pub authorization: Option<&'a [u8]>,
    /// Whether this is a CORS preflight (`OPTIONS` with
    /// `Access-Control-Request-Method`).
    pub preflight: bool,
}

/// Why a request is refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// No `Host` (or several): 400.
    NoHost,
    /// A `Host` not in the allowed list: 403.
    Host,
    /// An `Origin` not in `admin.origins`: 403.
    Origin,
    /// A token is configured and the request lacks it or has another: 401.
    Token,
}

impl Refusal {
    /// The HTTP status and the JSON `error` message.
    pub(super) fn status(self) -> (u16, &'static str) {
        match self {
            Refusal::NoHost => (400, "expected exactly one Host header"),
            Refusal::Host => (403, "Host not allowed (see admin.hosts)"),
            Refusal::Origin => (403, "Origin not allowed (see admin.origins)"),
            Refusal::Token => (401, "missing or wrong admin token"),
        }
    }
}

/// A `Host` the API answers to: a lower-case name, and the port (none:
/// any port, or no port at all).
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostRule {
    name: String,
    port: Option<u16>,
}

/// The checks, built once from the config and the bound address.
#[derive(Debug)]
pub(super) struct Guard {
    /// Shared with the node: a reload replaces it.
    token: Arc<Hot<Option<Vec<u8>>>>,
    any_host: bool,
    hosts: Vec<HostRule>,
    origins: Vec<String>,
}

impl Guard {
    /// `listen` is the bound admin address (its port resolved);
    /// `advertise` is `cluster.bus_advertise`.
    /// `token` is the node's (`Node::admin_token`).
    pub(super) fn new(
        admin: &AdminConfig,
        token: Arc<Hot<Option<Vec<u8>>>>,
        listen: SocketAddr,
        advertise: Option<&str>,
    ) -> Guard {
        let port = listen.port();
        let mut hosts: Vec<HostRule> = ["localhost", "127.0.0.1", "[::1]"]
            .into_iter()
            .map(|name| HostRule {
                name: name.into(),
                port: Some(port),
            })
            .collect();
        let mut names = Vec::new();
        if !listen.ip().is_unspecified() {
            names.push(SocketAddr::new(listen.ip(), port).to_string());
        }
        if let Some(h) = advertise {
            match h.contains(':') && !h.starts_with('[') {
                true => names.push(format!("[{h}]:{port}")),
                false => names.push(format!("{h}:{port}")),
            }
        }
        let mut any_host = false;
        for entry in &admin.hosts {
            if entry == "*" {
                any_host = true;
            } else {
                names.push(entry.clone());
            }
        }
        hosts.extend(names.iter().filter_map(|n| {
            let (name, port) = split_host(n)?;
            Some(HostRule { name, port })
        }));
        Guard {
            token,
            any_host,
            hosts,
            origins: admin
                .origins
                .iter()
                .map(|o| o.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Passes a request on, or says why not.
    pub(super) fn check(&self, head: &Head<'_>) -> Result<(), Refusal> {
        let host = head.host.ok().flatten().ok_or(Refusal::NoHost)?;
        if !self.any_host && !self.host_allowed(host) {
            return Err(Refusal::Host);
        }
        match head.origin {
            Ok(None) => {}
            Ok(Some(o)) if self.origin_allowed(o) || same_origin(o, host) => {}
            _ => return Err(Refusal::Origin),
        }
        let exempt = (head.method == "GET" && no_token_needed(head.path)) || head.preflight;
        let refused = self.token.with(|token| match token {
            Some(token) => !exempt && !bearer_matches(head.authorization, token),
            None => false,
        });
        match refused {
            true => Err(Refusal::Token),
            false => Ok(()),
        }
    }

    /// Whether `origin` is in `admin.origins` (the CORS headers name it).
    pub(super) fn origin_allowed(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o.eq_ignore_ascii_case(origin))
    }

    fn host_allowed(&self, host: &str) -> bool {
        let Some((name, port)) = split_host(host) else {
            return false;
        };
        let port = port.unwrap_or(80);
        self.hosts
            .iter()
            .any(|r| r.name == name && r.port.is_none_or(|p| p == port))
    }
}

/// `name[:port]` or `[v6][:port]`, the name lower-cased; `None` when
/// malformed.
fn split_host(host: &str) -> Option<(String, Option<u16>)> {
    let (name, port) = match host.strip_prefix('[') {
        Some(rest) => {
            let (v6, after) = rest.split_once(']')?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (&host[..v6.len() + 2], port)
        }
        None => match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        },
    };
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    let valid =
        |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'[' | b']' | b':');
    if name.is_empty() || !name.bytes().all(valid) {
        return None;
    }
    Some((name.to_ascii_lowercase(), port))
}

/// Whether `Authorization` is `Bearer <token>`. The time taken depends on
/// the configured token's length only.
fn bearer_matches(header: Option<&[u8]>, token: &[u8]) -> bool {
    let Some(value) = header else {
        return false;
    };
    let given = match value.get(..7) {
        Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => value[7..].trim_ascii(),
        _ => return false,
    };
    let mut diff = u8::from(given.len() != token.len());
    for (i, t) in token.iter().enumerate() {
        diff |= t ^ given.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

/// Whether a `Content-Type` value is JSON (`application/json`, any
/// parameters).
pub(super) fn is_json(content_type: Option<&[u8]>) -> bool {
    content_type.is_some_and(|ct| {
        let media = ct.split(|b| *b == b';').next().unwrap_or_default();
        media.trim_ascii().eq_ignore_ascii_case(b"application/json")
    })
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;
