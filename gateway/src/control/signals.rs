//! The node's signals: SIGTERM and SIGINT drain, SIGHUP reloads, SIGUSR2
//! upgrades, on a thread of their own.
use super::node_error::os;
use super::node_error::NodeError;
use super::Control;

/// SIGTERM and SIGINT start a drain; a second SIGINT exits at once. SIGHUP
/// reloads; SIGUSR2 upgrades (on a thread of its own: a SIGTERM meanwhile
/// still drains).
pub(super) fn spawn(control: Control) -> Result<(), NodeError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR2};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR2])
        .map_err(os("install signal handlers"))?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    // A reload never stops the node, whatever it finds.
                    let _ = control.reload();
                    continue;
                }
                if sig == SIGUSR2 {
                    // The outcome is logged by `upgrade` itself.
                    let control = control.clone();
                    let _ = std::thread::Builder::new()
                        .name("upgrade".into())
                        .spawn(move || control.upgrade());
                    continue;
                }
                if sig == SIGINT && control.is_draining() {
                    tracing::warn!("second interrupt: exiting without drain");
                    std::process::exit(130);
                }
                tracing::info!(signal = sig, "draining");
                control.drain();
            }
        })
        .map_err(os("start the signal thread"))?;
    Ok(())
}
