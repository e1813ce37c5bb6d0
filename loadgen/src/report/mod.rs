//! A run's results: `bench-results/<date>-<scenario>-<target>[-label]/`
//! with `result.json` (machine-readable), `summary.md` (for people: machine,
//! kernel, commit, exact command) and PNG plots.
mod plot;
mod plot_soak;
mod plot_upgrade;
mod summary;
pub mod upgrade;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hdrhistogram::Histogram;

use crate::cli::Common;
use crate::monitor::Sample;
use crate::sys::Machine;

/// Percentiles of a histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Pcts {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
}

impl Pcts {
    /// Percentiles of `h` (all zero when empty).
    pub fn of<T: hdrhistogram::Counter>(h: &Histogram<T>) -> Self {
        if h.is_empty() {
            return Pcts::default();
        }
        Pcts {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }
}

/// One row of a long run (`soak`): what happened in its window.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Window {
    /// Seconds from the start of sending to the window's end.
    pub t: f64,
    /// Ready connections at its end.
    pub connected: u64,
    /// Sends accepted in it.
    pub accepted: u64,
    /// Sends refused in it.
    pub rejected: u64,
    /// Deliveries in it.
    pub deliveries: u64,
    /// Failed connection attempts in it.
    pub failed: u64,
    /// Cuts made in it.
    pub cuts: u64,
    /// Latency of its deliveries, microseconds.
    pub p50_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// Largest.
    pub max_us: u64,
    /// Server RSS at its end, bytes.
    pub server_rss: u64,
    /// Server CPU in it, percent of one core.
    pub server_cpu_pct: f64,
    /// Server open file descriptors at its end.
    pub server_fds: u64,
    /// QoS 0 room pushes accepted by the admin API in it.
    pub room_pushes: u64,
    /// Room messages delivered to our connections in it.
    pub room_deliveries: u64,
    /// The gateway's counters over the window: error frames sent
    /// (`gateway_errors_total`), store errors, slow-consumer closes, gaps.
    pub errors: u64,
    pub store_errors: u64,
    pub slow_closes: u64,
    pub gaps: u64,
    /// The gateway's live heap at its end (`gateway_heap_live_bytes`).
    pub server_heap: u64,
}

/// Everything `result.json` holds.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Outcome {
    pub scenario: String,
    pub target: String,
    pub wire: String,
    pub command: String,
    pub commit: String,
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub mem_total_bytes: u64,
    pub date: String,
    pub connections_target: u64,
    pub connections_held: u64,
    pub failed: u64,
    pub dropped: u64,
    pub failures: BTreeMap<String, u64>,
    pub ramp_secs: f64,
    pub connect_rate_per_sec: f64,
    pub handshake_us: Pcts,
    pub server_rss_idle_bytes: u64,
    pub server_rss_held_bytes: u64,
    pub server_rss_after_bytes: u64,
    pub gateway_rss_bytes_per_conn: Option<f64>,
    pub kernel_bytes_per_conn: Option<f64>,
    pub messages_published: u64,
    pub deliveries: u64,
    pub expected_deliveries: u64,
    pub deliveries_per_sec: f64,
    pub server_cpu_sec: f64,
    pub machine_cpu_sec: f64,
    pub deliveries_per_server_cpu_sec: Option<f64>,
    pub server_cpu_sec_per_million_deliveries: Option<f64>,
    pub latency_us: Pcts,
    /// Accepted (or, with no send-result, sent) but never delivered.
    pub lost: u64,
    /// Sends the server refused: not owed, so not lost (direct scenario).
    pub rejected: u64,
    pub duplicated: u64,
    pub bad_payload: u64,
    pub pings: u64,
    pub pongs: u64,
    /// Scenario-specific numbers.
    pub extra: BTreeMap<String, serde_json::Value>,
    /// Whether every count matched (what the smoke asserts).
    pub ok: bool,
    /// Why `ok` is false.
    pub problems: Vec<String>,
    #[serde(skip)]
    pub samples: Vec<Sample>,
    #[serde(skip)]
    pub latency_hist: Option<Histogram<u64>>,
    /// Rows of a long run (`soak`), also `windows.csv` and `soak.png`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<Window>,
    #[serde(skip)]
    pub metrics: String,
    /// The upgrades of an `upgrade` run (also a table in `summary.md`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upgrades: Vec<upgrade::Round>,
    /// An `upgrade` run's series: `rtt.csv`, `procs.csv`, `upgrade.png`.
    #[serde(skip)]
    pub timeline: Option<upgrade::Timeline>,
}

impl Outcome {
    /// An outcome with the run's identity and machine filled in.
    pub fn new(scenario: &str, common: &Common) -> Self {
        let m = Machine::at_start().clone();
        let command = std::env::args()
            .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
            .collect::<Vec<_>>()
            .join(" ");
        Outcome {
            scenario: scenario.into(),
            target: common.target.name().into(),
            wire: format!("{:?}", common.wire).to_lowercase(),
            command,
            commit: m.commit,
            kernel: m.kernel,
            cpus: m.cpus,
            cpu_model: m.cpu_model,
            mem_total_bytes: m.mem_total_bytes,
            date: chrono::Local::now()
                .format("%Y-%m-%dT%H:%M:%S%z")
                .to_string(),
            ok: true,
            ..Default::default()
        }
    }

    /// Records a failed check.
    pub fn problem(&mut self, why: String) {
        self.ok = false;
        self.problems.push(why);
    }

    /// Sets the CPU-derived figures from deliveries and CPU seconds.
    pub fn set_cpu(&mut self, server_cpu: f64, machine_cpu: f64) {
        self.server_cpu_sec = server_cpu;
        self.machine_cpu_sec = machine_cpu;
        if server_cpu > 0.0 && self.deliveries > 0 {
            self.deliveries_per_server_cpu_sec = Some(self.deliveries as f64 / server_cpu);
            self.server_cpu_sec_per_million_deliveries =
                Some(server_cpu * 1e6 / self.deliveries as f64);
        }
    }
}

/// Writes the result directory (unless `--no-results`); returns its path.
pub fn write(o: &Outcome, common: &Common) -> anyhow::Result<Option<PathBuf>> {
    if common.no_results {
        return Ok(None);
    }
    let date = chrono::Local::now().format("%Y%m%d-%H%M%S");
    let mut name = format!("{date}-{}-{}", o.scenario, o.target);
    if let Some(l) = &common.label {
        name.push('-');
        name.push_str(l);
    }
    let dir = common.results.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join("result.json"),
        serde_json::to_string_pretty(o)? + "\n",
    )?;
    std::fs::write(dir.join("summary.md"), summary::markdown(o))?;
    std::fs::write(
        dir.join("samples.json"),
        serde_json::to_string(&o.samples)? + "\n",
    )?;
    if !o.metrics.is_empty() {
        std::fs::write(dir.join("metrics.txt"), &o.metrics)?;
    }
    if !o.windows.is_empty() {
        let mut csv = String::from(
            "t_secs,connected,accepted,rejected,deliveries,failed,cuts,p50_us,p99_us,max_us,\
             server_rss_bytes,server_cpu_pct,server_fds,room_pushes,room_deliveries,errors,\
             store_errors,slow_closes,gaps,server_heap_bytes\n",
        );
        for w in &o.windows {
            csv.push_str(&format!(
                "{:.1},{},{},{},{},{},{},{},{},{},{},{:.1},{},{},{},{},{},{},{},{}\n",
                w.t,
                w.connected,
                w.accepted,
                w.rejected,
                w.deliveries,
                w.failed,
                w.cuts,
                w.p50_us,
                w.p99_us,
                w.max_us,
                w.server_rss,
                w.server_cpu_pct,
                w.server_fds,
                w.room_pushes,
                w.room_deliveries,
                w.errors,
                w.store_errors,
                w.slow_closes,
                w.gaps,
                w.server_heap,
            ));
        }
        std::fs::write(dir.join("windows.csv"), csv)?;
    }
    if let Some(t) = &o.timeline {
        upgrade::write_csv(t, &dir)?;
    }
    plot_all(o, &dir);
    Ok(Some(dir))
}

fn plot_all(o: &Outcome, dir: &Path) {
    if let Err(e) = plot::timeline(&o.samples, &dir.join("connections-rss.png")) {
        eprintln!("loadgen: plot connections-rss.png: {e}");
    }
    if !o.windows.is_empty() {
        if let Err(e) = plot::soak(&o.windows, &dir.join("soak.png")) {
            eprintln!("loadgen: plot soak.png: {e}");
        }
        if let Err(e) = plot_soak::resources(&o.windows, &dir.join("soak-resources.png")) {
            eprintln!("loadgen: plot soak-resources.png: {e}");
        }
    }
    if let Some(t) = &o.timeline {
        if let Err(e) = plot_upgrade::upgrade(t, &dir.join("upgrade.png")) {
            eprintln!("loadgen: plot upgrade.png: {e}");
        }
    }
    if let Some(h) = &o.latency_hist {
        if !h.is_empty() {
            if let Err(e) = plot::latency(h, &dir.join("latency.png")) {
                eprintln!("loadgen: plot latency.png: {e}");
            }
        }
    }
}

/// The summary printed at the end of a run (the Markdown table).
pub fn summary_text(o: &Outcome) -> String {
    summary::markdown(o)
}
