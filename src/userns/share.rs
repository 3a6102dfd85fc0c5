//! One user namespace for a user's running containers, as Podman shares one among all of them:
//! a container started while another of the same user runs, with the same id maps, joins that
//! container's user namespace instead of having a new one made and mapped by the setuid
//! helpers (two setuid execs, the slowest step of a start). Each container still gets its own
//! mount, pid, network, uts, ipc and cgroup namespaces; what they share is only the user
//! namespace, whose ids map to the same host ids either way.
//!
//! The namespace is held by a pause process ([`super::pause`]), recorded in the run root
//! (`userns`: pid and start time). A start reads it, opens that process's user namespace, and
//! uses it only if the process is still the one recorded and its maps are exactly the ones
//! planned — so a container with other maps (`--userns keep-id`) never lands in it, and a
//! namespace not of this user's making cannot match (newuidmap only maps a user's own
//! subordinate ids).

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{IdMapping, MapPlan};
use crate::state::start_time;

const RECORD: &str = "userns";

/// Writes the record into the run root `dir`: the process `pid` (started at `start`) holds the
/// user namespace to share ([`super::pause`]).
pub fn write_record(dir: &Path, pid: i32, start: u64) -> anyhow::Result<()> {
    crate::store::lock::write_replace(&dir.join(RECORD), format!("{pid} {start}\n").as_bytes(), false)
}

fn read_record(runroot: &Path) -> Option<(i32, u64)> {
    let text = std::fs::read_to_string(runroot.join(RECORD)).ok()?;
    let mut words = text.split_whitespace();
    Some((words.next()?.parse().ok()?, words.next()?.parse().ok()?))
}

/// The user namespace to join for `plan`, if the recorded pause process still holds one with
/// those maps; it is touched, so it stays.
pub fn find(runroot: &Path, plan: &MapPlan) -> Option<File> {
    let (pid, start) = read_record(runroot)?;
    let ns = of_process(pid, start, plan)?;
    // Only a pause is signalled (`of_process` proved the pid is the recorded process).
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim_end() == super::pause::NAME {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGUSR1);
    }
    Some(ns)
}

/// The user namespace of the running process `pid` (a container's PID 1), if its maps are
/// exactly `plan`'s: a container joining another's network namespace must be in the user
/// namespace that owns it.
pub fn of_pid(pid: i32, plan: &MapPlan) -> Option<File> {
    of_process(pid, start_time(pid)?, plan)
}

fn of_process(pid: i32, start: u64, plan: &MapPlan) -> Option<File> {
    let ns = File::open(format!("/proc/{pid}/ns/user")).ok()?;
    let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).ok()?;
    let gid_map = std::fs::read_to_string(format!("/proc/{pid}/gid_map")).ok()?;
    // Read after the namespace was opened: the same start time proves the pid was not reused
    // in between, so the namespace and the maps are that process's. (A zombie still holds its
    // namespace, but not for long.)
    if !crate::state::runs(pid, start) || !same_maps(&uid_map, &plan.uid) || !same_maps(&gid_map, &plan.gid) {
        return None;
    }
    let ours = std::fs::metadata("/proc/self/ns/user").ok()?;
    let theirs = ns.metadata().ok()?;
    if (ours.dev(), ours.ino()) == (theirs.dev(), theirs.ino()) {
        return None;
    }
    Some(ns)
}

/// Whether a /proc/PID/uid_map (or gid_map) text holds exactly `maps`, in order.
fn same_maps(text: &str, maps: &[IdMapping]) -> bool {
    let lines: Vec<Option<(u32, u32, u32)>> = text
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace().map(|n| n.parse::<u32>().ok());
            Some((w.next()??, w.next()??, w.next()??))
        })
        .collect();
    lines.len() == maps.len() && lines.iter().zip(maps).all(|(l, m)| *l == Some((m.inside, m.outside, m.count)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_compare_exactly() {
        let maps =
            [IdMapping { inside: 0, outside: 1000, count: 1 }, IdMapping { inside: 1, outside: 100000, count: 65536 }];
        let proc_text = "         0       1000          1\n         1     100000      65536\n";
        assert!(same_maps(proc_text, &maps));
        assert!(!same_maps("         0       1000          1\n", &maps));
        assert!(!same_maps("         0       1001          1\n         1     100000      65536\n", &maps));
        assert!(!same_maps("", &maps));
        assert!(same_maps("", &[]));
    }
}
