//! What the host and the measured server processes look like: `/proc`
//! readers (RSS, CPU time), the machine facts a result records, and the
//! per-thread descriptor table.
use std::process::Command;

/// Clock ticks per second for `/proc/<pid>/stat` times.
fn ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// Resident set size of `pid` in bytes (`VmRSS`), if the process exists.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// User plus system CPU seconds used so far by `pid` (all its threads).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the name.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / ticks_per_sec())
}

/// Open file descriptors of `pid`, over every descriptor table its
/// threads hold (a shard's own after `unshare(CLONE_FILES)`), each table
/// counted once: threads are grouped by `kcmp(KCMP_FILES)`, which says
/// whether two tasks share one (where it is refused, each thread's table
/// counts as its own: an over-count, never an under-count).
pub fn fd_count(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut tables: Vec<libc::pid_t> = Vec::new();
    let mut total = 0;
    for t in tasks.flatten() {
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        if tables.iter().any(|&other| same_files(tid, other)) {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(t.path().join("fd")) else {
            continue;
        };
        tables.push(tid);
        total += entries.count() as u64;
    }
    Some(total)
}

/// Whether tasks `a` and `b` share one descriptor table.
fn same_files(a: libc::pid_t, b: libc::pid_t) -> bool {
    const KCMP_FILES: libc::c_long = 2;
    // SAFETY: kcmp only compares kernel objects of the two tasks; it reads
    // and writes no memory of ours.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, a, b, KCMP_FILES, 0, 0) };
    r == 0
}

/// Sum of [`fd_count`] over `pids`.
pub fn fd_sum(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| fd_count(p)).sum()
}

/// Sum of [`rss_bytes`] over `pids` (missing processes count 0).
pub fn rss_sum(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| rss_bytes(p)).sum()
}

/// Sum of [`cpu_secs`] over `pids`.
pub fn cpu_sum(pids: &[u32]) -> f64 {
    pids.iter().filter_map(|&p| cpu_secs(p)).sum()
}

/// Whole-machine busy CPU seconds (all cores) from `/proc/stat`.
pub fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = v
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, x)| x)
        .sum();
    Some(busy as f64 / ticks_per_sec())
}

/// `MemFree` and `Slab` from `/proc/meminfo`, in bytes.
pub fn mem_free_and_slab() -> (u64, u64) {
    let info = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let get = |key: &str| -> u64 {
        info.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (get("MemFree:"), get("Slab:"))
}

/// Machine facts recorded with every result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// `git rev-parse --short HEAD` (with `-dirty` when the tree is).
    pub commit: String,
    /// `uname -r`.
    pub kernel: String,
    /// Online CPUs.
    pub cpus: usize,
    /// Total memory in bytes.
    pub mem_total_bytes: u64,
    /// CPU model name.
    pub cpu_model: String,
}

fn run(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

impl Machine {
    /// The facts as they were at start-up (`main` reads them first thing),
    /// so a commit made while a long run goes is not credited with it.
    pub fn at_start() -> &'static Machine {
        static AT_START: std::sync::OnceLock<Machine> = std::sync::OnceLock::new();
        AT_START.get_or_init(Machine::probe)
    }

    /// Reads the facts now.
    pub fn probe() -> Self {
        let mut commit = run("git", &["rev-parse", "--short", "HEAD"]);
        if !run("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty() {
            commit.push_str("-dirty");
        }
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_total_bytes = meminfo
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .map_or("unknown".into(), |s| s.trim().to_string());
        Machine {
            commit,
            kernel: run("uname", &["-r"]),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            mem_total_bytes,
            cpu_model,
        }
    }
}

/// Gives this thread its own descriptor table, so each worker can hold up to
/// the per-table limit. Must run before the thread's runtime is built (the
/// runtime's own descriptors must live in the new table).
pub fn unshare_files() -> std::io::Result<()> {
    // SAFETY: unshare(CLONE_FILES) only copies this thread's fd table.
    let rc = unsafe { libc::unshare(libc::CLONE_FILES) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; returns the new limit.
pub fn raise_nofile() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write/read a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        lim.rlim_cur = lim.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn every_descriptor_table_counts_once() {
        let pid = std::process::id();
        // Threads sharing the main table (the harness's, these two) add
        // nothing; one that unshared adds its copy, once.
        let idle: Vec<_> = (0..2)
            .map(|_| {
                std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(300)))
            })
            .collect();
        let shared = fd_count(pid).unwrap();
        // This thread's table is the shared one: counted once, not per thread.
        let direct = std::fs::read_dir("/proc/thread-self/fd").unwrap().count() as u64;
        assert!(
            shared.abs_diff(direct) <= 8,
            "{shared} counted, {direct} in the table"
        );
        let (ready_tx, ready_rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let own = std::thread::spawn(move || {
            unshare_files().unwrap();
            ready_tx.send(()).unwrap();
            let _ = done_rx.recv();
        });
        ready_rx.recv().unwrap();
        let with_own = fd_count(pid).unwrap();
        done_tx.send(()).unwrap();
        own.join().unwrap();
        idle.into_iter().for_each(|t| t.join().unwrap());
        assert!(shared >= 3, "{shared}");
        // The copy holds what the main table held then (other tests may
        // open a few files meanwhile).
        assert!(
            with_own >= shared + 3 && with_own <= 2 * shared + 16,
            "{shared} shared, {with_own} with a thread's own"
        );
    }
}
