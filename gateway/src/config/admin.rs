//! `[admin]`: who may use the admin HTTP API (`admin_listen`). The rules
//! themselves are enforced by `control::admin`; this module holds the
//! settings and their validation.
//!
//! Invariant: a node whose admin listener is not loopback has a token.
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// Longest `admin.token` accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 1024;

/// `[admin]`: credentials and the browser-facing checks of the admin API.
#[derive(Clone, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Bearer token every request but `GET /healthz` must carry
    /// (`Authorization: Bearer <token>`): visible ASCII, 16 to 1024 bytes.
    /// Also `GATEWAY_ADMIN_TOKEN` or `--admin-token` (visible in `ps`).
    /// Required when `admin_listen` is not a loopback address. Default:
    /// unset (no credentials: loopback only).
    pub token: Option<String>,
    /// A file holding the token instead (a mounted secret; one trailing
    /// newline is dropped). Read at start and on every reload, so rotating
    /// the token is: write the file, `kill -HUP`. Not with `token`. A
    /// relative path is relative to the config file. Default: unset.
    pub token_file: Option<PathBuf>,
    /// Extra `Host` header values accepted (`name` for any port, or
    /// `name:port`; `"*"` accepts any Host). Always accepted: `localhost`,
    /// `127.0.0.1`, `[::1]`, the listen address and `cluster.bus_advertise`,
    /// each with the admin port. Any other Host is refused with 403 (DNS
    /// rebinding). Default: none.
    pub hosts: Vec<String>,
    /// Origins (`scheme://host[:port]`) whose pages may call the API. A
    /// request with any other `Origin` header is refused with 403; requests
    /// without one (curl, backends) are unaffected. Default: none.
    pub origins: Vec<String>,
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("token_file", &self.token_file)
            .field("hosts", &self.hosts)
            .field("origins", &self.origins)
            .finish()
    }
}

impl AdminConfig {
    /// Reads `token_file` into `token` (a missing or unreadable file is the
    /// operator's error, so a reload with one keeps the old token).
    pub fn read_token_file(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.token_file else {
            return Ok(());
        };
        if self.token.is_some() {
            return Err(ConfigError::invalid(
                "admin.token_file",
                path.display().to_string(),
                "set admin.token or admin.token_file, not both".to_owned(),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::invalid(
                "admin.token_file",
                path.display().to_string(),
                format!("cannot read it: {e}"),
            )
        })?;
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        self.token = Some(text.to_owned());
        Ok(())
    }

    /// The token as the guard compares it.
    pub fn token_bytes(&self) -> Option<Vec<u8>> {
        self.token.as_ref().map(|t| t.as_bytes().to_vec())
    }

    /// Checks the token's form, the host and origin lists, and that a
    /// non-loopback `admin_listen` has a token. The token never appears in
    /// an error.
    pub fn validate(&self, admin_listen: SocketAddr) -> Result<(), ConfigError> {
        let bad = |key, value: &str, reason: &str| {
            Err(ConfigError::invalid(key, value, reason.to_owned()))
        };
        match &self.token {
            Some(t) if t.len() < 16 || t.len() > MAX_TOKEN_BYTES => {
                return bad("admin.token", "<redacted>", "must be 16 to 1024 bytes");
            }
            Some(t) if !t.bytes().all(|b| b.is_ascii_graphic()) => {
                return bad(
                    "admin.token",
                    "<redacted>",
                    "must be visible ASCII (no spaces or control characters)",
                );
            }
            Some(_) => {}
            None if !admin_listen.ip().is_loopback() => {
                return bad(
                    "admin_listen",
                    &admin_listen.to_string(),
                    "a non-loopback admin listener needs admin.token \
                     (or --admin-token / GATEWAY_ADMIN_TOKEN)",
                );
            }
            None => {}
        }
        for host in &self.hosts {
            let ok = !host.is_empty()
                && host.len() <= 261
                && host.bytes().all(|b| b.is_ascii_graphic() && b != b'/');
            if !ok {
                return bad(
                    "admin.hosts",
                    host,
                    "must be a host name, host:port or \"*\"",
                );
            }
        }
        for origin in &self.origins {
            let rest = origin
                .strip_prefix("http://")
                .or_else(|| origin.strip_prefix("https://"));
            let ok = origin.len() <= 300
                && rest.is_some_and(|r| {
                    !r.is_empty() && r.bytes().all(|b| b.is_ascii_graphic() && b != b'/')
                });
            if !ok {
                return bad(
                    "admin.origins",
                    origin,
                    "must be scheme://host[:port] (http or https, no path)",
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(admin: &AdminConfig, listen: &str) -> Result<(), String> {
        admin
            .validate(listen.parse().unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn exposed_listener_needs_a_token() {
        let none = AdminConfig::default();
        assert_eq!(check(&none, "127.0.0.1:8082"), Ok(()));
        assert_eq!(check(&none, "[::1]:8082"), Ok(()));
        for listen in ["0.0.0.0:8082", "10.1.2.3:8082", "[::]:8082"] {
            let e = check(&none, listen).unwrap_err();
            assert!(
                e.contains("admin_listen") && e.contains("admin.token"),
                "{e}"
            );
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        let with = AdminConfig {
            token: Some("0123456789abcdef".into()),
            ..AdminConfig::default()
        };
        assert_eq!(check(&with, "0.0.0.0:8082"), Ok(()));
    }

    #[test]
    fn token_form_is_checked_and_never_printed() {
        for token in ["short", "has a space in it!", "tab\tin-the-token-xx"] {
            let admin = AdminConfig {
                token: Some(token.into()),
                ..AdminConfig::default()
            };
            let e = check(&admin, "127.0.0.1:8082").unwrap_err();
            assert!(e.contains("admin.token") && !e.contains(token), "{e}");
        }
        let admin = AdminConfig {
            token: Some("s3cret-s3cret-s3cret".into()),
            ..AdminConfig::default()
        };
        assert!(!format!("{admin:?}").contains("s3cret"));
    }

    #[test]
    fn hosts_and_origins_are_checked() {
        let hosts = |h: &str| AdminConfig {
            hosts: vec![h.into()],
            ..AdminConfig::default()
        };
        let origins = |o: &str| AdminConfig {
            origins: vec![o.into()],
            ..AdminConfig::default()
        };
        for ok in ["admin.example.com", "gw:8082", "[::1]:9", "*"] {
            assert_eq!(check(&hosts(ok), "127.0.0.1:1"), Ok(()), "{ok}");
        }
        for bad in ["", "a b", "x/y"] {
            assert!(check(&hosts(bad), "127.0.0.1:1").is_err(), "{bad:?}");
        }
        for ok in ["https://ops.example.com", "http://localhost:3000"] {
            assert_eq!(check(&origins(ok), "127.0.0.1:1"), Ok(()), "{ok}");
        }
        for bad in ["ops.example.com", "https://", "https://x/", "null", "*"] {
            assert!(check(&origins(bad), "127.0.0.1:1").is_err(), "{bad:?}");
        }
    }
}
