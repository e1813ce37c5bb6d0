//! What the `upgrade` scenario adds to a result: one [`Round`] per upgrade
//! (in `result.json` and as a table in `summary.md`), and the [`Timeline`]
//! behind `rtt.csv`, `procs.csv` and `upgrade.png`.
use std::fmt::Write as _;
use std::path::Path;

use super::Pcts;

/// One process's figures over a round.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ProcFigures {
    /// The process.
    pub pid: u32,
    /// RSS when first sampled in the round (the old process: at the POST;
    /// the new one: once the answer named it), bytes.
    pub rss_first_bytes: u64,
    /// Largest RSS sampled in the round, bytes.
    pub rss_peak_bytes: u64,
    /// RSS when last sampled in the round (the old process: just before it
    /// exited), bytes.
    pub rss_last_bytes: u64,
    /// CPU seconds it used in the round: the old process from the POST to
    /// its last sample; the new one from its start to the round's end.
    pub cpu_secs: f64,
    /// The new process: CPU seconds it had used when the answer came (its
    /// start, taking the listeners and the connections).
    pub cpu_secs_at_answer: Option<f64>,
    /// The old process: milliseconds from the answer until it was gone
    /// (`None`: still running at the round's end).
    pub exited_after_answer_ms: Option<f64>,
}

/// One upgrade.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Round {
    /// 1, 2, ...
    pub round: u64,
    /// HTTP status of `POST /upgrade` (0: no answer).
    pub status: u16,
    /// The answer's body (the gateway's JSON, or the error).
    pub answer: serde_json::Value,
    /// `took_ms` of the answer: the gateway's time from the trigger to the
    /// commit.
    pub took_ms: Option<u64>,
    /// Wall time of the POST, connect to answer, ms.
    pub post_wall_ms: f64,
    /// Connections the answer says moved with their state.
    pub connections_moved: Option<u64>,
    /// Connections the answer says were told to reconnect instead.
    pub draining: Option<u64>,
    /// Connections ready when the POST was sent.
    pub connections_at_post: u64,
    /// Fewest ready connections sampled in the round.
    pub min_connected: u64,
    /// Connections lost after ready in the round (any close or error).
    pub closed: u64,
    /// Failed connection attempts in the round.
    pub failed: u64,
    /// Round trips of the pings in flight at some moment between the POST
    /// and its answer, microseconds.
    pub rtt_window_us: Pcts,
    /// Pings answered in the round after the window (the round's end),
    /// microseconds: the new process serving.
    pub rtt_after_us: Pcts,
    /// A round trip this long is slow: 10 times the hold's p99, within
    /// 100 ms..1 s.
    pub slow_threshold_ms: f64,
    /// Send time, in ms after the answer, of the last 100 ms of pings
    /// with a slow round trip (0: none after the answer): how long after
    /// the answer clients still saw the pause.
    pub slow_pings_until_ms: f64,
    /// The process that was upgraded.
    pub old: ProcFigures,
    /// The process the answer named.
    pub new: Option<ProcFigures>,
    /// Busy CPU seconds of the whole machine (both processes, the load
    /// generator, the kernel) from the POST to the round's end.
    pub machine_cpu_secs: f64,
    /// Seconds from the POST to the round's end.
    pub secs: f64,
}

/// Ping round trips of one time-series bucket.
#[derive(Debug, Clone, Copy, Default)]
pub struct RttPoint {
    /// Send time of the bucket's middle, seconds since the run started.
    pub t: f64,
    /// Round trips, microseconds.
    pub us: Pcts,
}

/// A sample of one server process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcPoint {
    /// Seconds since the run started.
    pub t: f64,
    /// The process.
    pub pid: u32,
    /// RSS, bytes.
    pub rss: u64,
    /// CPU seconds used so far.
    pub cpu: f64,
}

/// The series an upgrade run plots.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    /// Round trips per 100 ms of send time.
    pub rtt: Vec<RttPoint>,
    /// Server process samples, every pid followed.
    pub procs: Vec<ProcPoint>,
    /// Each upgrade's POST and answer, seconds since the run started.
    pub windows: Vec<(f64, f64)>,
}

fn mib(b: u64) -> String {
    format!("{:.1}", b as f64 / 1048576.0)
}

fn pcts(p: &Pcts) -> String {
    let ms = |us: u64| format!("{:.1}", us as f64 / 1000.0);
    format!(
        "{} / {} / {} / **{}** ({} pings)",
        ms(p.p50),
        ms(p.p99),
        ms(p.p999),
        ms(p.max),
        p.count
    )
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// The rounds as a Markdown table, one column per round.
pub fn markdown(rounds: &[Round]) -> String {
    let mut s = String::from("\n## Upgrades\n\n| measure |");
    for r in rounds {
        let _ = write!(s, " round {} |", r.round);
    }
    s.push_str("\n| --- |");
    s.push_str(&" --- |".repeat(rounds.len()));
    s.push('\n');
    let mut row = |k: &str, f: &dyn Fn(&Round) -> String| {
        let _ = write!(s, "| {k} |");
        for r in rounds {
            let _ = write!(s, " {} |", f(r));
        }
        s.push('\n');
    };
    let new = |r: &Round, f: &dyn Fn(&ProcFigures) -> String| r.new.as_ref().map_or("-".into(), f);
    row("HTTP status", &|r| r.status.to_string());
    row("old pid -> new pid", &|r| {
        format!("{} -> {}", r.old.pid, new(r, &|p| p.pid.to_string()))
    });
    row("took_ms (gateway) / POST wall ms", &|r| {
        format!("**{}** / {:.0}", opt(r.took_ms), r.post_wall_ms)
    });
    row("connections moved / draining / ready at the POST", &|r| {
        format!(
            "{} / {} / {}",
            opt(r.connections_moved),
            opt(r.draining),
            r.connections_at_post
        )
    });
    row("closed / failed attempts / fewest ready", &|r| {
        format!("**{}** / {} / {}", r.closed, r.failed, r.min_connected)
    });
    row("ping RTT in the window p50 / p99 / p999 / max (ms)", &|r| {
        pcts(&r.rtt_window_us)
    });
    row(
        "ping RTT after the answer p50 / p99 / p999 / max (ms)",
        &|r| pcts(&r.rtt_after_us),
    );
    row(
        "slow pings (over threshold) sent until, ms after the answer",
        &|r| {
            format!(
                "**{:.0}** (over {:.0} ms)",
                r.slow_pings_until_ms, r.slow_threshold_ms
            )
        },
    );
    row("old RSS at POST / peak / last (MiB)", &|r| {
        format!(
            "{} / {} / {}",
            mib(r.old.rss_first_bytes),
            mib(r.old.rss_peak_bytes),
            mib(r.old.rss_last_bytes)
        )
    });
    row(
        "old CPU-s from the POST / exited after the answer (ms)",
        &|r| {
            format!(
                "{:.2} / {}",
                r.old.cpu_secs,
                r.old
                    .exited_after_answer_ms
                    .map_or("still running".into(), |ms| format!("{ms:.0}"))
            )
        },
    );
    row("new RSS at answer / peak / last (MiB)", &|r| {
        new(r, &|p| {
            format!(
                "{} / {} / {}",
                mib(p.rss_first_bytes),
                mib(p.rss_peak_bytes),
                mib(p.rss_last_bytes)
            )
        })
    });
    row("new CPU-s at the answer / at the round's end", &|r| {
        new(r, &|p| {
            format!(
                "{} / {:.2}",
                opt(p.cpu_secs_at_answer.map(|c| format!("{c:.2}"))),
                p.cpu_secs
            )
        })
    });
    row("machine CPU-s over the round (s)", &|r| {
        format!("{:.2} ({:.1})", r.machine_cpu_secs, r.secs)
    });
    s
}

/// Writes `rtt.csv` (per 100 ms of send time) and `procs.csv`.
pub fn write_csv(t: &Timeline, dir: &Path) -> std::io::Result<()> {
    let mut csv = String::from("t_secs,pings,p50_us,p99_us,p999_us,max_us\n");
    for p in &t.rtt {
        let u = &p.us;
        let _ = writeln!(
            csv,
            "{:.2},{},{},{},{},{}",
            p.t, u.count, u.p50, u.p99, u.p999, u.max
        );
    }
    std::fs::write(dir.join("rtt.csv"), csv)?;
    let mut csv = String::from("t_secs,pid,rss_bytes,cpu_secs\n");
    for p in &t.procs {
        let _ = writeln!(csv, "{:.3},{},{},{:.2}", p.t, p.pid, p.rss, p.cpu);
    }
    std::fs::write(dir.join("procs.csv"), csv)
}
