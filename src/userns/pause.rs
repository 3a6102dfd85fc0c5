//! `rl __pause`: keeps a user's mapped user namespace alive between containers, as Podman's
//! pause process does, so that a start finds one to join ([`super::share`]) even when no other
//! container runs, and skips the two setuid helpers (the slowest step of a start).
//!
//! The first container started in a new user namespace starts it ([`pin`]); it joins that
//! namespace, records itself in the run root (`userns`: pid and start time), lets go of every
//! file, and waits. Each start that joins it touches it (SIGUSR1); [`IDLE`] after the last
//! touch it exits, as it does on SIGTERM. A running container keeps its namespace either way;
//! a start after the pause exited maps a new one, as before.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::sys;

/// How long the pause outlives the last start that used it.
pub const IDLE: Duration = Duration::from_secs(300);
/// Its command name, checked before it is signalled.
pub const NAME: &str = "rl-pause";

/// After a start made and mapped the user namespace `ns` for a container: starts a pause in it
/// (a start that made one found none to share). Best effort: without a pause, the next start
/// only maps a namespace of its own again.
pub fn pin(runroot: &Path, ns: File) {
    let Ok(dir) = File::open(runroot) else { return };
    let _ = spawn(ns.as_fd(), dir.as_fd());
}

/// Execs `rl __pause USERNS DIR` with both fds inherited for the exec only, and reaps it: it
/// forks the process that stays, records it and exits, so the pause is nobody's child to reap
/// later (the caller may be a monitor that lives on).
fn spawn(ns: BorrowedFd, dir: BorrowedFd) -> Result<()> {
    let ns = sys::above_stdio(ns.try_clone_to_owned()?)?;
    let dir = sys::above_stdio(dir.try_clone_to_owned()?)?;
    sys::set_cloexec(ns.as_fd(), false)?;
    sys::set_cloexec(dir.as_fd(), false)?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("rl")
        .arg("__pause")
        .arg(ns.as_raw_fd().to_string())
        .arg(dir.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().context("start the pause process")?;
    drop((ns, dir));
    child.wait().context("wait for the pause process to detach")?;
    Ok(())
}

/// Entry point of `rl __pause USERNS DIR`; returns the exit code.
pub fn main(args: &[std::ffi::OsString]) -> i32 {
    let _ = nix::sys::prctl::set_name(c"rl-pause");
    match pause(args) {
        Ok(()) => 0,
        Err(_) => crate::hint::EXIT_RL_FAILED,
    }
}

fn pause(args: &[std::ffi::OsString]) -> Result<()> {
    let fd = |i: usize| -> Result<std::os::fd::OwnedFd> {
        let n: i32 =
            args.get(i).and_then(|a| a.to_str()).and_then(|a| a.parse().ok()).context("rl __pause is internal")?;
        Ok(sys::adopt_fd(n)?)
    };
    let (ns, dir) = (fd(0)?, fd(1)?);
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGUSR1);
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGHUP);
    // Blocked from now on: a signal sent before the signalfd exists waits for it.
    mask.thread_block().context("block signals")?;
    setns(&ns, CloneFlags::CLONE_NEWUSER).context("join the user namespace")?;
    drop(ns);
    std::env::set_current_dir("/").context("chdir /")?;
    // The starter waits for this process, which records the one that stays (its child, in a
    // session of its own) where starts look for it before it exits.
    let child = match sys::fork().context("fork")? {
        nix::unistd::ForkResult::Parent { child } => child,
        nix::unistd::ForkResult::Child => return wait(mask),
    };
    let start = crate::state::start_time(child.as_raw()).context("the pause's start time")?;
    let at = Path::new("/proc/self/fd").join(dir.as_raw_fd().to_string());
    super::share::write_record(&at, child.as_raw(), start)
}

/// The pause itself: holds the namespace until [`IDLE`] passed without a touch, or a signal.
fn wait(mask: SigSet) -> Result<()> {
    nix::unistd::setsid().context("setsid")?;
    // Nothing the starter had open stays open here.
    sys::close_from(3).context("close inherited file descriptors")?;
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).context("signalfd")?;
    let mut deadline = Instant::now() + IDLE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let ms = PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let _ = crate::monitor::idle_poll(&mut fds, ms);
        while let Ok(Some(info)) = sfd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGUSR1) => deadline = Instant::now() + IDLE,
                _ => return Ok(()),
            }
        }
    }
}
