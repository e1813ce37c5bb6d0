//! Server processes followed by pid and sampled often (RSS, CPU), until
//! each is gone: the `upgrade` scenario follows the old process and the new
//! one side by side. The monitor's samples sum the processes it measures;
//! these keep each apart.
use crate::report::upgrade::{ProcFigures, ProcPoint};
use crate::sys;

/// Seconds between samples.
const EVERY: f64 = 0.05;

/// The processes followed and their samples.
#[derive(Default)]
pub struct Procs {
    /// Every sample, in time order.
    pub points: Vec<ProcPoint>,
    followed: Vec<u32>,
    /// When each process that went away was first found gone.
    gone: Vec<(u32, f64)>,
    last: Option<f64>,
}

impl Procs {
    /// Follows `pid` from now on (until it is gone).
    pub fn follow(&mut self, pid: u32) {
        if !self.followed.contains(&pid) {
            self.followed.push(pid);
        }
    }

    /// Samples if the last sample is [`EVERY`] old; `t` is seconds since
    /// the run started.
    pub fn tick(&mut self, t: f64) {
        if self.last.is_none_or(|l| t - l >= EVERY) {
            self.sample(t);
        }
    }

    /// Samples every followed process that is still there (a process with
    /// no RSS, exited or a zombie, is gone).
    pub fn sample(&mut self, t: f64) {
        self.last = Some(t);
        for &pid in &self.followed {
            if self.gone_at(pid).is_some() {
                continue;
            }
            match (sys::rss_bytes(pid), sys::cpu_secs(pid)) {
                (Some(rss), Some(cpu)) => self.points.push(ProcPoint { t, pid, rss, cpu }),
                _ => self.gone.push((pid, t)),
            }
        }
    }

    /// When `pid` was first found gone.
    pub fn gone_at(&self, pid: u32) -> Option<f64> {
        self.gone.iter().find(|g| g.0 == pid).map(|g| g.1)
    }

    /// The latest sample of `pid`.
    pub fn latest(&self, pid: u32) -> Option<ProcPoint> {
        self.points.iter().rev().find(|p| p.pid == pid).copied()
    }

    /// `pid`'s figures over `from..=to` (seconds since the run started).
    /// CPU is counted from `cpu_base` (a new process: 0, its start) or else
    /// from the first sample in the range.
    pub fn figures(&self, pid: u32, from: f64, to: f64, cpu_base: Option<f64>) -> ProcFigures {
        let pts: Vec<&ProcPoint> = self
            .points
            .iter()
            .filter(|p| p.pid == pid && p.t >= from && p.t <= to)
            .collect();
        let (Some(first), Some(last)) = (pts.first(), pts.last()) else {
            return ProcFigures {
                pid,
                ..ProcFigures::default()
            };
        };
        ProcFigures {
            pid,
            rss_first_bytes: first.rss,
            rss_peak_bytes: pts.iter().map(|p| p.rss).max().unwrap_or(0),
            rss_last_bytes: last.rss,
            cpu_secs: last.cpu - cpu_base.unwrap_or(first.cpu),
            cpu_secs_at_answer: None,
            exited_after_answer_ms: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_sampled_and_a_missing_one_is_gone() {
        let me = std::process::id();
        let mut p = Procs::default();
        p.follow(me);
        p.follow(u32::MAX - 1);
        p.sample(1.0);
        p.tick(1.01); // too soon: no sample
        p.tick(1.2);
        assert_eq!(p.points.len(), 2);
        assert_eq!(p.gone_at(u32::MAX - 1), Some(1.0));
        assert_eq!(p.gone_at(me), None);
        let f = p.figures(me, 0.0, 2.0, None);
        assert!(f.rss_peak_bytes > 0 && f.cpu_secs >= 0.0);
        assert_eq!(p.latest(me).map(|l| l.t), Some(1.2));
    }
}
