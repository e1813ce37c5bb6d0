//! Configuration errors: the operator's fault, printed as one line
//! (`gateway: error: {e}`) before exiting with status 2. Retrying without
//! changing the config never helps.

use std::io;
use std::path::{Path, PathBuf};

use crate::auth::KeyError;

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", .path.display())]
    Read {
        /// The file named by `--config`.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The config file is not valid TOML or has an unknown key or a value of
    /// the wrong type.
    #[error("config file {}: {message}", .path.display())]
    Parse {
        /// The file named by `--config`.
        path: PathBuf,
        /// Where (line and column) and what, from the TOML parser.
        message: String,
    },
    /// A setting is out of range or inconsistent with another.
    #[error("invalid {key} = {value}: {reason}")]
    Invalid {
        /// The setting, as named in the config file (`limits.max_frame_bytes`).
        key: &'static str,
        /// The value it had after flags were applied.
        value: String,
        /// What is required.
        reason: String,
    },
    /// More than one of `auth.jwt_secret`, `auth.jwt_public_key` and
    /// `auth.jwks_file` is set.
    #[error("auth: set one of jwt_secret, jwt_public_key or jwks_file")]
    ConflictingKeys,
    /// `auth.jwt_secret` is set but empty.
    #[error("auth.jwt_secret is empty")]
    EmptySecret,
    /// The JWT public key file could not be read.
    #[error("cannot read JWT public key {}: {source}", .path.display())]
    ReadKey {
        /// `auth.jwt_public_key`.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The JWT key is unusable (not a PEM public key, empty secret, ...).
    #[error("JWT key {}: {source}", .path.display())]
    Key {
        /// `auth.jwt_public_key` (empty for a secret).
        path: PathBuf,
        /// What is wrong with it.
        source: KeyError,
    },
    /// A duration flag such as `--ttl` could not be parsed.
    #[error("invalid duration {value:?}: {reason} (use e.g. 30s, 15m, 1h, 2d)")]
    Duration {
        /// The text given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl ConfigError {
    pub(crate) fn invalid(key: &'static str, value: impl ToString, reason: String) -> Self {
        ConfigError::Invalid {
            key,
            value: value.to_string(),
            reason,
        }
    }

    /// A TOML error as one line: `line L, column C (key K): message`. Only
    /// the key of the offending line is quoted, never its value (a secret).
    pub(crate) fn parse(path: &Path, text: &str, err: &toml::de::Error) -> Self {
        let message = err.message().trim().replace('\n', " ");
        let message = match err.span() {
            Some(span) => {
                let before = text.get(..span.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                let line_text = text.lines().nth(line - 1).unwrap_or("");
                let key = line_text.split_once('=').map_or("", |(k, _)| k.trim());
                let bare = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
                if !key.is_empty() && key.len() <= 64 && key.bytes().all(bare) {
                    format!("line {line}, column {column} (key {key}): {message}")
                } else {
                    format!("line {line}, column {column}: {message}")
                }
            }
            None => message,
        };
        ConfigError::Parse {
            path: path.to_owned(),
            message,
        }
    }
}
