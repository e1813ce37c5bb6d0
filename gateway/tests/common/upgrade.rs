//! Helpers of the upgrade tests: the processes an upgrade starts are not
//! the test's children, so they are reaped here and watched through /proc.
use super::*;

/// Kills the processes an upgrade started (not this test's children) when
/// the test ends, however it ends.
#[derive(Default)]
pub struct Reap(std::sync::Mutex<Vec<i32>>);

impl Reap {
    pub fn add(&self, pid: i32) {
        self.0.lock().unwrap().push(pid);
    }
}

impl Drop for Reap {
    fn drop(&mut self) {
        for pid in self.0.lock().unwrap().drain(..) {
            // SAFETY: kill(2) on a pid an upgrade of this test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// True once `pid` has exited (gone, or a zombie nobody reaps yet).
pub fn exited(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
        Err(_) => true,
    }
}

/// Upgrades through `POST /upgrade`; returns the new process's pid.
pub fn upgrade_node(gw: &Gateway, reap: &Reap) -> i32 {
    let r = gw.post("/upgrade", "");
    assert_eq!(r.status, 200, "{r:?}");
    let pid = r.json()["pid"].as_i64().unwrap() as i32;
    reap.add(pid);
    pid
}
