//! The main thread's view of a run: samples of connections, deliveries and
//! the server processes' memory and CPU over time, and the progress display
//! (a bar on a terminal, one plain line a second otherwise).
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::stats::Shared;
use crate::sys;

/// One sample.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Sample {
    /// Seconds since the run started.
    pub t: f64,
    /// Ready connections.
    pub connected: u64,
    /// Failed attempts so far.
    pub failed: u64,
    /// Deliveries so far.
    pub deliveries: u64,
    /// Server RSS (sum over its processes), bytes.
    pub server_rss: u64,
    /// Server CPU seconds so far (sum over its processes).
    pub server_cpu: f64,
}

/// Samples the run and shows progress.
pub struct Monitor {
    /// The live counters.
    pub shared: Arc<Shared>,
    /// Server processes measured.
    pub pids: Vec<u32>,
    start: Instant,
    /// Samples so far.
    pub samples: Vec<Sample>,
    bar: Option<ProgressBar>,
    last_sample: Instant,
    last_line: Instant,
    phase: String,
    goal: u64,
}

/// Time between samples.
const EVERY: Duration = Duration::from_millis(250);

impl Monitor {
    /// A monitor of `shared` and the server `pids`.
    pub fn new(shared: Arc<Shared>, pids: Vec<u32>) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new(1);
            let style =
                ProgressStyle::with_template("{elapsed_precise} {msg} [{bar:30}] {pos}/{len}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar());
            b.set_style(style);
            b
        });
        let now = Instant::now();
        Monitor {
            shared,
            pids,
            start: now,
            samples: Vec::new(),
            bar,
            last_sample: now - EVERY,
            last_line: now,
            phase: String::new(),
            goal: 0,
        }
    }

    /// Starts a phase whose progress counts toward `goal`.
    pub fn phase(&mut self, name: &str, goal: u64) {
        self.phase = name.to_string();
        self.goal = goal;
        if let Some(b) = &self.bar {
            b.set_length(goal.max(1));
            b.set_position(0);
            b.set_message(name.to_string());
        } else {
            eprintln!(
                "[{:7.1}s] phase {name} (goal {goal})",
                self.start.elapsed().as_secs_f64()
            );
        }
    }

    /// Seconds since the run started.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Takes a sample now if one is due; shows progress toward the goal
    /// with `pos`.
    pub fn tick(&mut self, pos: u64) {
        if self.last_sample.elapsed() >= EVERY {
            self.last_sample = Instant::now();
            self.sample();
        }
        let failed = self
            .shared
            .failed
            .load(std::sync::atomic::Ordering::Relaxed);
        if let Some(b) = &self.bar {
            b.set_position(pos.min(self.goal));
            b.set_message(format!("{} (failed {failed})", self.phase));
        } else if self.last_line.elapsed() >= Duration::from_secs(1) {
            self.last_line = Instant::now();
            let rss = self.samples.last().map_or(0, |s| s.server_rss);
            eprintln!(
                "[{:7.1}s] {} {pos}/{} connected={} failed={failed} deliveries={} server_rss={}MiB",
                self.elapsed(),
                self.phase,
                self.goal,
                self.shared.connected(),
                self.shared
                    .deliveries
                    .load(std::sync::atomic::Ordering::Relaxed),
                rss >> 20
            );
        }
    }

    /// Takes a sample now.
    pub fn sample(&mut self) -> Sample {
        use std::sync::atomic::Ordering::Relaxed;
        let s = Sample {
            t: self.elapsed(),
            connected: self.shared.connected(),
            failed: self.shared.failed.load(Relaxed),
            deliveries: self.shared.deliveries.load(Relaxed),
            server_rss: sys::rss_sum(&self.pids),
            server_cpu: sys::cpu_sum(&self.pids),
        };
        self.samples.push(s);
        s
    }

    /// Polls `done` every few milliseconds (sampling and showing `pos`)
    /// until it holds or `timeout` passes; returns whether it held.
    pub fn wait(
        &mut self,
        timeout: Duration,
        mut done: impl FnMut(&Shared) -> bool,
        pos: impl Fn(&Shared) -> u64,
    ) -> bool {
        let until = Instant::now() + timeout;
        loop {
            let p = pos(&self.shared);
            self.tick(p);
            if done(&self.shared) {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Clears the progress bar.
    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}
