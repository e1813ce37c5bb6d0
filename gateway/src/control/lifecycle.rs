//! The node's lifecycle as an operator drives it: reload (keys,
//! certificate, admin token, confirmed by every shard), drain, and the
//! start of accepting in a process an upgrade started. Each reaches the
//! shards as a command that must not be lost to a full queue (`command`).
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::{Control, TIMEOUT};
use crate::config::{ConfigError, TlsError};
use crate::control::node::Node;
use crate::mesh::{Command, Redirect, ShardMsg};

/// How long a reload waits for every shard to confirm the new keys.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a reload was refused (the configuration in force stays). Each
/// message is one line for the operator, cause included.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The node is still starting: nothing to reload yet.
    #[error("not running yet")]
    NotRunning,
    /// The new configuration is invalid (the operator's file or flags).
    #[error("{0}")]
    Config(ConfigError),
    /// The new TLS certificate or key cannot be used (the operator's files).
    #[error("{0}")]
    Tls(TlsError),
    /// The new configuration turns TLS (client ports or bus) on or off.
    #[error("turning TLS on or off (tls.* or cluster.tls_*) takes a restart")]
    TlsToggle,
    /// A shard did not confirm the new keys in time (it is stuck or the
    /// node is stopping): some shards may verify with the old ones.
    #[error("not every shard confirmed the new keys within {RELOAD_TIMEOUT:?}")]
    NotConfirmed,
}

/// Hands `shard` a command that must not be lost to a full queue (a drain,
/// a reload, an upgrade's steps): waits as long as it takes.
pub(crate) fn command(node: &Node, shard: usize, cmd: Command) {
    let mut msg = ShardMsg::Command(cmd);
    while let Err(back) = node.mesh.push_blocking(shard, msg, TIMEOUT) {
        msg = back;
    }
}

impl Control {
    /// Reads the configuration again and puts in force, all together or
    /// none: the JWT key and token policy, the TLS certificate and key (for
    /// connections accepted from now on; open ones keep theirs) and the
    /// admin token. An invalid one is refused (one log line) and the old
    /// kept. Turning TLS on or off takes a restart (the listeners' protocol
    /// would change under clients), so it is refused too.
    pub fn reload(&self) -> Result<(), ReloadError> {
        let guard = self.node.reload.lock().unwrap_or_else(|e| e.into_inner());
        let Some(read) = guard.as_ref() else {
            return Err(ReloadError::NotRunning);
        };
        let result = read().map_err(ReloadError::Config).and_then(|c| {
            let (verifier, dev) = c.verifier().map_err(ReloadError::Config)?;
            let tls = match (
                &self.node.tls,
                c.tls.server_config().map_err(ReloadError::Tls)?,
            ) {
                (Some(_), Some(tls)) => Some(tls),
                (None, None) => None,
                _ => return Err(ReloadError::TlsToggle),
            };
            let bus_tls = match (
                &self.node.bus_tls,
                c.cluster.bus_tls().map_err(ReloadError::Tls)?,
            ) {
                (Some(_), Some(tls)) => Some(tls),
                (None, None) => None,
                _ => return Err(ReloadError::TlsToggle),
            };
            let bus = (c.cluster.secrets(), bus_tls);
            Ok((verifier, dev, tls, c.admin.token_bytes(), bus))
        });
        match result {
            Ok((verifier, dev, tls, token, (secrets, bus_tls))) => {
                self.reload_shards(verifier, tls, secrets, bus_tls)?;
                let admin_token = token.is_some();
                self.node.admin_token.set(token);
                tracing::info!(
                    dev_secret = dev,
                    tls = self.node.tls.is_some(),
                    admin_token,
                    "reloaded: the JWT key and token policy, TLS certificate, admin token and cluster secrets are in force"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!("reload refused, the old keys stay in force: {e}");
                Err(e)
            }
        }
    }

    /// Hands every shard the new keys and certificate and waits until
    /// each has them in force, so a token signed with the new key verifies
    /// on any shard once the reload has answered.
    fn reload_shards(
        &self,
        verifier: crate::auth::Verifier,
        tls: Option<Arc<rustls::ServerConfig>>,
        bus_secrets: Vec<Vec<u8>>,
        bus_tls: Option<crate::config::BusTls>,
    ) -> Result<(), ReloadError> {
        let shards = self.node.mesh.len();
        let (done, confirmed) = crossbeam_channel::bounded(shards);
        for shard in 0..shards {
            let reload = crate::mesh::Reload {
                verifier: verifier.clone(),
                tls: tls.clone(),
                bus_secrets: bus_secrets.clone(),
                bus_tls: bus_tls.clone(),
                done: done.clone(),
            };
            command(&self.node, shard, Command::Reload(Box::new(reload)));
        }
        let deadline = std::time::Instant::now() + RELOAD_TIMEOUT;
        for _ in 0..shards {
            confirmed
                .recv_deadline(deadline)
                .map_err(|_| ReloadError::NotConfirmed)?;
        }
        Ok(())
    }

    /// Starts draining every shard (idempotent).
    pub fn drain(&self) {
        // A supervisor (systemd) learns the node is on its way out; an
        // upgrade's drain of what did not move says nothing (the new
        // process is the service then).
        crate::sys::notify_systemd("STOPPING=1");
        // Where clients go: the node `/route` would name, never this one
        // (the registry may not list it as draining yet).
        let me = &self.node.config.node_id;
        let nodes: Vec<_> = self
            .node
            .view
            .nodes()
            .iter()
            .filter(|n| n.id != *me)
            .cloned()
            .collect();
        self.drain_with(Redirect {
            nodes: nodes.into(),
            policy: self.node.config.cluster.route_policy,
            reconnect_after_ms: self.node.config.drain.reconnect_after_ms,
            spread_ms: 0,
        });
        if !self.node.config.cluster.enabled() {
            // A single node's view is itself (no registry refreshes it):
            // `/nodes` and the console say it drains.
            let mut view: Vec<_> = self.node.view.nodes().iter().cloned().collect();
            view.iter_mut().for_each(|n| n.draining = true);
            self.node.view.set(view);
        }
    }

    /// `drain`, with clients sent where `redirect` says. The node's copies
    /// of its listeners are closed (the shards close theirs).
    pub(super) fn drain_with(&self, redirect: Redirect) {
        if self.node.draining.swap(true, Ordering::SeqCst) {
            return;
        }
        drop(
            self.node
                .listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        for shard in 0..self.node.mesh.len() {
            command(&self.node, shard, Command::Drain(redirect.clone()));
        }
    }

    /// Tells every shard to start accepting (a process started by an
    /// upgrade, after the commit).
    pub(crate) fn start_accepting(&self) {
        for shard in 0..self.node.mesh.len() {
            command(&self.node, shard, Command::Accept);
        }
    }

    /// True once drain has begun.
    pub fn is_draining(&self) -> bool {
        self.node.draining.load(Ordering::SeqCst)
    }
}
