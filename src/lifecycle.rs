//! What the lifecycle verbs do to a container record, in the `rl` process that the user runs:
//! signal its PID 1, wait for it and its watcher (the detached monitor, or the `rl run` in the
//! foreground) to finish, and remove it. A container's processes run as the user or as the
//! user's subordinate ids in a user namespace the user owns, so plain `kill(2)` from here is
//! allowed (the owner of a user namespace holds every capability in it); waiting uses pidfds,
//! never polling with sleeps.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cgroup::Leaf;
use crate::config::ContainerConfig;
use crate::hint::{hinted, Problem};
use crate::sandbox::msg::{Job, Msg};
use crate::sandbox::parent::{Spawn, Stage1};
use crate::state::{self, State, Status};
use crate::store::Paths;

/// Parses a signal as Docker takes it: `TERM`, `SIGTERM`, `15`.
pub fn parse_signal(s: &str) -> Result<Signal> {
    let name = s.trim().to_ascii_uppercase();
    if let Ok(n) = name.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| anyhow::anyhow!("signal `{s}`: no such signal number"));
    }
    let full = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
    full.parse::<Signal>().map_err(|_| anyhow::anyhow!("signal `{s}`: unknown (e.g. TERM, KILL, HUP, 9)"))
}

/// Sends `sig` to the container's PID 1; errors if it is not running. A paused container is
/// thawed after, so the signal is acted on (a frozen process cannot handle it).
pub fn signal(cfg: &ContainerConfig, st: &State, sig: Signal) -> Result<()> {
    let Some(pid) = st.pid.filter(|_| st.running()) else {
        bail!("container `{}`: not running", cfg.name);
    };
    kill(Pid::from_raw(pid), sig).with_context(|| format!("container `{}`: send {sig}", cfg.name))?;
    thaw(st);
    Ok(())
}

/// The cgroup leaf of a running container, if it has one.
pub fn leaf(st: &State) -> Option<Leaf> {
    st.cgroup.as_deref().filter(|_| st.running()).and_then(Leaf::at)
}

/// Whether the container is running and paused (its cgroup frozen).
pub fn paused(st: &State) -> bool {
    leaf(st).is_some_and(|l| l.frozen())
}

/// Unpauses a paused container (before it is stopped or killed).
fn thaw(st: &State) {
    if let Some(l) = leaf(st).filter(Leaf::frozen) {
        let _ = l.freeze(false);
    }
}

/// The cgroup leaf of a running container, for the verbs that need one (`pause`, `update`,
/// `stats`); the error says why a container has none.
pub fn running_leaf(cfg: &ContainerConfig, st: Option<&State>) -> Result<Leaf> {
    let st = st.map(effective);
    let Some(st) = st.filter(State::running) else { bail!("container `{}`: not running", cfg.name) };
    if let Some(l) = leaf(&st) {
        return Ok(l);
    }
    let host = crate::cgroup::Host::detect();
    let (problem, why) = match host.version {
        crate::cgroup::Version::V2 => (Problem::CgroupNotDelegated, "no cgroup v2 subtree is delegated to you"),
        _ => (Problem::CgroupV1, "this host has no usable cgroup v2"),
    };
    Err(hinted(problem, format!("container `{}`: it has no cgroup of its own ({why})", cfg.name)))
}

/// Waits until process `pid` has exited or `timeout` passed; true if it exited.
pub fn wait_pid(pid: i32, timeout: Option<Duration>) -> Result<bool> {
    let fd = match crate::sys::pidfd_open(Pid::from_raw(pid)) {
        Ok(fd) => fd,
        // Linux 6.1 answers EINVAL, not ESRCH, for a process that is exiting right then (its
        // thread group is gone but its pid not yet freed): gone either way.
        Err(e) if pid > 0 && matches!(e.raw_os_error(), Some(libc::ESRCH | libc::EINVAL)) => return Ok(true),
        Err(e) => return Err(e).context("pidfd_open"),
    };
    let start = Instant::now();
    loop {
        let left = match timeout {
            Some(t) => {
                let left = t.saturating_sub(start.elapsed());
                PollTimeout::try_from(left.as_millis().min(i32::MAX as u128) as i32).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };
        let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, left) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("wait for a process"),
        }
    }
}

/// Waits until the container's watcher is done with it (the exit is then recorded).
pub fn wait_watcher(st: &State) -> Result<()> {
    if let (true, Some(pid)) = (st.watcher_alive(), st.monitor_pid) {
        wait_pid(pid, None)?;
    }
    Ok(())
}

/// Stops the container: its stop signal, then SIGKILL after `timeout`; marks it stopped so no
/// restart policy brings it back. Returns once its exit is recorded.
pub fn stop(paths: &Paths, cfg: &ContainerConfig, timeout: Duration) -> Result<()> {
    let mut st = state::load(paths, &cfg.id)?;
    if !st.running() {
        return Ok(());
    }
    st.stopped = true;
    state::save(paths, &cfg.id, &st)?;
    let sig = match &cfg.stop_signal {
        Some(s) => parse_signal(s).unwrap_or(Signal::SIGTERM),
        None => Signal::SIGTERM,
    };
    let Some(pid) = st.pid else { return Ok(()) };
    let _ = kill(Pid::from_raw(pid), sig);
    thaw(&st);
    if !wait_pid(pid, Some(timeout))? {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        wait_pid(pid, None)?;
    }
    wait_watcher(&st)
}

/// The status a listing shows: a record that says running but whose watcher is gone (killed,
/// or the host rebooted) is exited.
pub fn effective(st: &State) -> State {
    let mut st = st.clone();
    if st.status == Status::Running && !st.watcher_alive() {
        st.status = Status::Exited;
        st.pid = None;
        st.error.get_or_insert_with(|| "the container's monitor is gone".into());
    }
    st
}

/// Removes a stopped container's record, writable layer (its files belong to subordinate ids:
/// removed inside the user namespace) and runtime files.
pub fn remove(paths: &Paths, cfg: &ContainerConfig) -> Result<()> {
    // A watcher killed with SIGKILL left the container's cgroup behind; its processes died
    // with the watcher (their parent-death signal).
    if let Some(leaf) = state::load(paths, &cfg.id).ok().filter(|st| !st.running()).and_then(|st| st.cgroup) {
        if let Some(l) = Leaf::at(&leaf) {
            let _ = l.remove();
        }
    }
    let dir = paths.container(&cfg.id);
    let _lock = crate::store::lock::exclusive(&paths.containers_lock())?;
    // Renamed out of the listing first: a crash halfway leaves no half-removed container.
    let trash = paths.containers().join(format!(".rm-{}", cfg.id));
    std::fs::rename(&dir, &trash).with_context(|| format!("remove container `{}`", cfg.name))?;
    state::release_name(paths, &cfg.name, &cfg.id);
    drop(_lock);
    let _ = crate::sandbox::remove_tree(&cfg.dirs.run);
    let stage = Stage1::spawn(&cfg.idmap, Job::RemoveTree(trash.clone()), Spawn::default(), || Ok(()))?;
    let result = match stage.expect_msg() {
        Ok(Msg::Done) => Ok(()),
        Ok(other) => Err(stage.fail(other)),
        Err(e) => Err(e),
    };
    stage.reap();
    result.with_context(|| format!("remove container `{}`: delete `{}`", cfg.name, trash.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        for (s, want) in
            [("TERM", Signal::SIGTERM), ("sigkill", Signal::SIGKILL), ("9", Signal::SIGKILL), ("HUP", Signal::SIGHUP)]
        {
            assert_eq!(parse_signal(s).unwrap(), want, "{s}");
        }
        for bad in ["NOPE", "999", ""] {
            assert!(parse_signal(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_record_without_a_live_watcher_is_exited() {
        let st = State {
            status: Status::Running,
            pid: Some(1),
            exit_code: None,
            created_ns: 0,
            started_ns: None,
            finished_ns: None,
            monitor_pid: Some(std::process::id() as i32),
            monitor_start: Some(1), // not this process's start time: a recycled pid
            restart_count: 0,
            error: None,
            stopped: false,
            network: None,
            cgroup: None,
            oom_killed: false,
        };
        assert_eq!(effective(&st).status, Status::Exited);
        let me = std::process::id() as i32;
        let live = State { monitor_start: state::start_time(me), ..st };
        assert_eq!(effective(&live).status, Status::Running);
    }
}
