//! Why a node could not start: one line for the operator each, and the
//! helpers that name what failed.
use std::net::SocketAddr;
use std::time::Duration;

use crate::backend::hook::HookError;
use crate::cluster::presence::PresenceError;
use crate::config::{ConfigError, TlsError};
use crate::control::downstream::DownstreamError;
use crate::control::registry::RegistryError;

/// Why a node could not start. Each message is one line for the operator,
/// cause included (no `source()`).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The JWT key is unusable (the operator's config).
    #[error("{0}")]
    Config(ConfigError),
    /// The TLS certificate or key is unusable (the operator's files).
    #[error("{0}")]
    Tls(TlsError),
    /// A listener could not be bound: the address is in use or not this
    /// host's, or needs a privilege (the operator's config).
    #[error("cannot listen on {addr} ({what}): {error}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Which listener.
        what: String,
        /// The OS error.
        error: std::io::Error,
    },
    /// The OS refused a resource (a thread, an eventfd, signal handlers).
    #[error("cannot {what}: {error}")]
    Os {
        /// What could not be done.
        what: &'static str,
        /// The OS error.
        error: std::io::Error,
    },
    /// A shard failed to start (its own line, e.g. io_uring refused).
    #[error("{0}")]
    Shard(String),
    /// The shards did not all report within the start timeout.
    #[error("shards did not start within {0:?}")]
    ShardsLate(Duration),
    /// The authorization hook could not start.
    #[error("{0}")]
    Hook(HookError),
    /// Cluster presence could not start.
    #[error("{0}")]
    Presence(PresenceError),
    /// The registry could not start.
    #[error("{0}")]
    Registry(RegistryError),
    /// The downstream consumer could not start.
    #[error("{0}")]
    Downstream(DownstreamError),
    /// Started by an upgrade, the handover failed or was refused (the old
    /// process serves on).
    #[error("{0}")]
    Upgrade(String),
}

pub(super) fn os(what: &'static str) -> impl FnOnce(std::io::Error) -> NodeError {
    move |error| NodeError::Os { what, error }
}

pub(super) fn listen(
    addr: SocketAddr,
    what: impl Into<String>,
) -> impl FnOnce(std::io::Error) -> NodeError {
    move |error| NodeError::Listen {
        addr,
        what: what.into(),
        error,
    }
}
