//! Who may open a connection: a node-wide cap, and per source IP a cap on
//! concurrent connections and a connect rate (a token bucket). Checked at
//! accept, before anything is allocated for the connection; a refused
//! socket is closed at once and counted by reason.
//!
//! The per-IP table is node-wide (a client's connections land on any
//! shard) behind one mutex, taken once per accept and once per close of a
//! counted connection, never on the message path. It is only used when a
//! per-IP limit is set: entries go when their IP has no connection left and
//! its bucket is full again. Per-IP limits are off by default: carriers put
//! many phones behind one address (CGNAT).
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use crate::rate::Bucket;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `limits.max_conns` reached on the node.
    NodeCap,
    /// `limits.max_conns_per_ip` reached for the source address.
    IpCap,
    /// Over `limits.connect_rate_per_ip`.
    IpRate,
}

/// The limits and their state.
pub struct Admission {
    max_conns: u64,
    per_ip: u32,
    rate: u32,
    ips: Mutex<HashMap<IpAddr, (u32, Bucket)>>,
    /// Refusals by reason: node cap, IP cap, IP rate.
    pub refused: [AtomicU64; 3],
}

impl Admission {
    /// Limits (0: none).
    pub fn new(max_conns: u64, per_ip: u32, rate: u32) -> Admission {
        Admission {
            max_conns,
            per_ip,
            rate,
            ips: Mutex::new(HashMap::new()),
            refused: Default::default(),
        }
    }

    /// True when connections are counted per IP (their IP must be given
    /// back to `release`).
    pub fn tracks_ips(&self) -> bool {
        self.per_ip > 0 || self.rate > 0
    }

    /// May a connection from `ip` be accepted now, with `open` connections
    /// on the node? Counts it when so.
    pub fn admit(&self, ip: IpAddr, open: u64, now: Instant) -> Result<(), Refused> {
        let refuse = |r: Refused| {
            self.refused[r as usize].fetch_add(1, Ordering::Relaxed);
            Err(r)
        };
        if self.max_conns > 0 && open >= self.max_conns {
            return refuse(Refused::NodeCap);
        }
        if !self.tracks_ips() {
            return Ok(());
        }
        let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        let rate = self.rate;
        let entry = ips
            .entry(ip)
            .or_insert_with(|| (0, Bucket::new(rate.max(1), now)));
        if self.per_ip > 0 && entry.0 >= self.per_ip {
            return refuse(Refused::IpCap);
        }
        if rate > 0 && entry.1.take(rate, now).is_err() {
            return refuse(Refused::IpRate);
        }
        entry.0 += 1;
        Ok(())
    }

    /// A counted connection from `ip` closed.
    pub fn release(&self, ip: IpAddr, now: Instant) {
        let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = ips.get_mut(&ip) {
            e.0 = e.0.saturating_sub(1);
            if e.0 == 0 && (self.rate == 0 || e.1.is_full(self.rate, now)) {
                ips.remove(&ip);
            }
        }
        // Entries kept only for their bucket go once it is full again.
        if ips.len() > 4096 && ips.len().is_power_of_two() {
            let rate = self.rate;
            ips.retain(|_, e| e.0 > 0 || (rate > 0 && !e.1.is_full(rate, now)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn caps_and_rates_refuse_by_reason_and_release_frees() {
        let t0 = Instant::now();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        let a = Admission::new(3, 2, 0);
        assert!(a.admit(ip, 0, t0).is_ok());
        assert!(a.admit(ip, 1, t0).is_ok());
        assert_eq!(a.admit(ip, 2, t0), Err(Refused::IpCap));
        assert!(a.admit(other, 2, t0).is_ok());
        assert_eq!(a.admit(other, 3, t0), Err(Refused::NodeCap));
        a.release(ip, t0);
        assert!(a.admit(ip, 2, t0).is_ok(), "a released slot is free again");
        let r = Admission::new(0, 0, 1);
        assert!(r.admit(ip, 0, t0).is_ok());
        assert!(r.admit(ip, 0, t0).is_ok(), "burst of two");
        assert_eq!(r.admit(ip, 0, t0), Err(Refused::IpRate));
        assert!(r.admit(ip, 0, t0 + Duration::from_secs(1)).is_ok());
        assert_eq!(
            r.refused[Refused::IpRate as usize].load(Ordering::Relaxed),
            1
        );
        assert!(!Admission::new(0, 0, 0).tracks_ips());
    }
}
