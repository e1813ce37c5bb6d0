//! How the node proves itself to Redis and checks that it talks to the
//! right one: an ACL user and password (in the URL, or kept out of `ps` in
//! a file or the environment) and TLS (`rediss://` URLs, with a CA file
//! for a private CA), for one Redis and for a Redis Cluster alike.
use std::path::PathBuf;

pub use crate::redis_client::RedisAccess;

use super::ConfigError;

/// Reads the password file (or `GATEWAY_REDIS_PASSWORD`) and the CA file.
pub(super) fn read(
    username: Option<&str>,
    password_file: Option<&PathBuf>,
    ca_file: Option<&PathBuf>,
) -> Result<RedisAccess, ConfigError> {
    let password = match password_file {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                let why = format!("cannot read it: {e}");
                ConfigError::invalid("redis_password_file", path.display(), why)
            })?;
            Some(text.trim_end_matches(['\n', '\r']).to_owned())
        }
        None => std::env::var("GATEWAY_REDIS_PASSWORD").ok(),
    };
    let ca_pem = match ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                let why = format!("cannot read it: {e}");
                ConfigError::invalid("redis_ca_file", path.display(), why)
            })?;
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                let why = "no PEM certificate in it".to_owned();
                return Err(ConfigError::invalid("redis_ca_file", path.display(), why));
            }
            Some(pem)
        }
        None => None,
    };
    Ok(RedisAccess {
        username: username.map(str::to_owned),
        password: password.filter(|p| !p.is_empty()),
        ca_pem,
    })
}
