//! Stage 1: `rl __stage1`, exec'd by the parent with the sync socket on fd 3. A fresh exec is
//! single-threaded, as `setns(CLONE_NEWUSER)` requires, whatever threads the parent runs. It
//! joins the namespaces the parent's holder created and mapped (user, mount, uts, ipc, net —
//! received as fds), becomes root of the user namespace, and does its job: for a container, it
//! mounts the overlay rootfs, unshares the pid namespace, forks the container init
//! ([`super::init`]) and waits for it. Then it cleans up in reverse order — unmount, remove the
//! writable layer for `--rm` — because only root of this namespace can delete files owned by
//! subordinate ids. Its parent-death signal is SIGTERM, handled here: if rl is killed, stage 1
//! still kills the container and cleans up.
//!
//! A detached container's monitor asks for a [`Job::Launch`] instead: the init is forked as the
//! monitor's own child (`CLONE_PARENT`), with its parent-death signal tied to the monitor, and
//! stage 1 exits once it runs — one resident rl process per container instead of two. The
//! monitor then reaps the init and cleans up itself. With fuse-overlayfs (whose daemon dies
//! with the stage 1 that started it) stage 1 stays and waits as for a foreground run.

use std::io::Read;
use std::os::fd::AsFd;

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{self, ForkResult, Gid, Pid, Uid};
use seccompiler::BpfProgram;

use super::msg::{Channel, Job, Msg};
use super::{init, remove_tree};
use crate::config::ContainerConfig;
use crate::hint::{Hinted, UsernsFacts, EXIT_RL_FAILED};
use crate::{network, rootfs, sys};

/// The fd number the parent hands the sync socket on.
pub const SYNC_FD: i32 = 3;

/// Entry point of `rl __stage1 FD PPID`: takes the sync socket from fd FD onto [`SYNC_FD`] and
/// the parent-death signal (SIGTERM), checked against the parent PPID that exec'd it (which
/// may have died before the signal was set); returns the process exit code.
pub fn main_exec(args: &[std::ffi::OsString]) -> i32 {
    let num = |a: &std::ffi::OsString| a.to_str().and_then(|s| s.parse::<i32>().ok());
    let (Some(fd), Some(ppid)) = (args.first().and_then(num), args.get(1).and_then(num)) else {
        eprintln!("Error: rl __stage1 is internal: run `rl run` instead");
        return EXIT_RL_FAILED;
    };
    let Ok(sock) = sys::adopt_fd(fd) else { return EXIT_RL_FAILED };
    if sys::move_fd(sock, SYNC_FD).is_err()
        || nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).is_err()
        || unistd::getppid().as_raw() != ppid
    {
        return EXIT_RL_FAILED;
    }
    main()
}

/// Stage 1 with the sync socket on [`SYNC_FD`] (exec'd, or forked by the monitor); returns the
/// process exit code.
pub fn main() -> i32 {
    let Ok(chan) = Channel::from_inherited(SYNC_FD) else {
        eprintln!("Error: rl __stage1 is internal: run `rl run` instead");
        return EXIT_RL_FAILED;
    };
    let _ = nix::sys::prctl::set_name(c"rl-stage1");
    // SIGTERM is the parent-death signal: keep it (and SIGCHLD) for the wait loop's signalfd.
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGCHLD);
    if mask.thread_block().is_err() {
        return EXIT_RL_FAILED;
    }
    match stage1(&chan, mask) {
        Ok(()) => 0,
        Err(e) => {
            let errno = e.chain().find_map(|c| c.downcast_ref::<nix::errno::Errno>()).copied();
            let known = e.chain().find_map(|c| c.downcast_ref::<Hinted>()).map(|h| h.problem);
            let problem = known.or_else(|| errno.and_then(|n| UsernsFacts::read().explain(n)));
            let _ = chan.send(&Msg::Failed { message: format!("{e:#}"), code: EXIT_RL_FAILED, problem });
            EXIT_RL_FAILED
        }
    }
}

fn stage1(chan: &Channel, mask: SigSet) -> Result<()> {
    let parent = unistd::getppid();
    let (job, job_fds) = match chan.recv_fds()? {
        Some((Msg::Job(job), fds)) => (job, fds),
        Some(other) => bail!("sync socket: expected a job, got {other:?}"),
        None => return Ok(()),
    };
    // Compiled while the parent's helpers write the id maps, off the start's critical path.
    let seccomp = match &job {
        Job::Run(cfg) | Job::Launch(cfg) if cfg.security.seccomp => {
            Some(super::seccomp::default_filter(&cfg.security.caps)?)
        }
        _ => None,
    };
    // The parent's namespace holder made the namespaces and the helpers mapped them; join
    // them, user namespace first (it grants the capabilities joining the others needs).
    let fds = match chan.recv_fds()? {
        Some((Msg::Join, fds)) => fds,
        _ => return Ok(()),
    };
    for (i, fd) in fds.iter().enumerate() {
        let what = if i == 0 { CloneFlags::CLONE_NEWUSER } else { CloneFlags::empty() };
        setns(fd, what).with_context(|| format!("join namespace {i} of the holder"))?;
    }
    drop(fds);
    // Become root of the namespace where root is mapped (keep-id without subordinate ids maps
    // only the user's own id); the capabilities of a fresh namespace are ours either way.
    // Asked of the kernel, not of /proc/self/uid_map: after joining a running container's mount
    // namespace, /proc is the container's, where this process has no entry. EINVAL: not mapped.
    let root_gid = Gid::from_raw(0);
    let root_uid = Uid::from_raw(0);
    match unistd::setresgid(root_gid, root_gid, root_gid) {
        Ok(()) => unistd::setresuid(root_uid, root_uid, root_uid).context("become root in the user namespace (uid)")?,
        Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => return Err(e).context("become root in the user namespace (gid)"),
    }
    // Changing credentials cleared the parent-death signal the parent set before exec.
    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).context("set the parent-death signal")?;
    if unistd::getppid() != parent {
        return Ok(());
    }
    let launch = matches!(job, Job::Launch(_));
    match job {
        Job::Run(cfg) | Job::Launch(cfg) => {
            network::setup(&cfg)?;

            run(chan, &cfg, mask, seccomp, launch)
        }
        Job::Exec(job) => super::exec::run(chan, &job, mask),
        Job::RemoveTree(path) => {
            remove_tree(&path)?;
            chan.send(&Msg::Done)
        }
        Job::Export(job) => {
            let results = crate::image::layer_export::export_all(&job, job_fds);
            chan.send(&Msg::Exported { results })
        }
        Job::ContainerFs(job) => {
            super::copy::run(&job, job_fds)?;
            chan.send(&Msg::Done)
        }
        Job::Unpack(job) => {
            let results = crate::image::pull::unpack_all(&job, job_fds);
            chan.send(&Msg::Unpacked { results })?;
            match chan.recv()? {
                Some(Msg::RemoveTrees(trees)) => {
                    for t in &trees {
                        remove_tree(t)?;
                    }
                    chan.send(&Msg::Done)
                }
                _ => Ok(()),
            }
        }
    }
}

fn run(chan: &Channel, cfg: &ContainerConfig, mask: SigSet, seccomp: Option<BpfProgram>, launch: bool) -> Result<()> {
    let rootfs = rootfs::mount(&cfg.dirs, cfg.overlay)?;
    // A fuse-overlayfs daemon dies with this process: with one, stage 1 stays to the end.
    let hand_over = launch && matches!(rootfs, rootfs::Mounted::Kernel);
    let result = match run_mounted(chan, cfg, mask, seccomp, hand_over) {
        // Handed over: the init has its own copy of the mount, this namespace dies with us, and
        // the parent cleans up after the container.
        Ok(None) => return Ok(()),
        Ok(Some(msg)) => Ok(msg),
        Err(e) => Err(e),
    };
    let unmounted = rootfs.unmount(&cfg.dirs.merged);
    let cleaned = cleanup(cfg);
    let status = result?;
    // The container ran: its exit is what the user asked for, a failed cleanup a warning.
    for e in [unmounted.err(), cleaned.err()].into_iter().flatten() {
        eprintln!("warning: container {}: clean up after it: {e:#}", cfg.name);
    }
    chan.send(&status)
}

/// Removes what the container leaves behind: its runtime dir always, its writable layer with
/// `--rm` (its files belong to subordinate ids). The record itself is the owner's to remove once
/// it has the exit: it may still be writing the container's state there.
fn cleanup(cfg: &ContainerConfig) -> Result<()> {
    let _ = std::fs::remove_dir(&cfg.dirs.merged);
    remove_tree(&cfg.dirs.run)?;
    if cfg.remove {
        remove_tree(&cfg.dirs.upper)?;
        remove_tree(&cfg.dirs.work)?;
    }
    Ok(())
}

/// Forks the init and waits for it: the exit (or setup failure) to report, or `None` when
/// `hand_over` made the init the parent's child and it runs.
fn run_mounted(
    chan: &Channel,
    cfg: &ContainerConfig,
    mask: SigSet,
    seccomp: Option<BpfProgram>,
    hand_over: bool,
) -> Result<Option<Msg>> {
    // The cgroup namespace is the init's to unshare, once it has joined the container's cgroup:
    // a process may only move between cgroups inside its namespace's root.
    unshare(CloneFlags::CLONE_NEWPID).context("unshare the pid namespace")?;
    let (report_r, report_w) = unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create the report pipe")?;
    let forked = match hand_over {
        true => sys::fork_sibling(),
        false => sys::fork(),
    };
    let pid = match forked.context("fork the container init")? {
        ForkResult::Child => {
            drop(report_r);
            init::run(cfg, chan, report_w, seccomp.as_ref())
        }
        ForkResult::Parent { child } => child,
    };
    drop(report_w);
    // The pipe closes on exec (EOF) or carries the init's one failure message.
    let mut report = Vec::new();
    std::fs::File::from(report_r).read_to_end(&mut report).context("read the init's report")?;
    if !report.is_empty() && hand_over {
        // Not our child to wait for: the failure message carries the init's exit status.
        return Ok(Some(serde_json::from_slice(&report).unwrap_or(Msg::Failed {
            message: String::from_utf8_lossy(&report).into_owned(),
            code: EXIT_RL_FAILED,
            problem: None,
        })));
    }
    if !report.is_empty() {
        let status = wait_exit(pid);
        let msg: Msg = serde_json::from_slice(&report).unwrap_or(Msg::Failed {
            message: String::from_utf8_lossy(&report).into_owned(),
            code: EXIT_RL_FAILED,
            problem: None,
        });
        // An exec failure keeps the init's exit status (126/127).
        return Ok(Some(match (msg, status) {
            (Msg::Failed { message, problem, .. }, Msg::Exited { code: Some(c), .. }) => {
                Msg::Failed { message, code: c, problem }
            }
            (m, _) => m,
        }));
    }
    if hand_over {
        // The init's parent-death signal is now tied to the parent; a parent already gone
        // cannot be told, so the container must not run unwatched.
        if let Err(e) = chan.send(&Msg::HandedOver { pid: pid.as_raw() }) {
            let _ = kill(pid, Signal::SIGKILL);
            return Err(e);
        }
        return Ok(None);
    }
    chan.send(&Msg::Started { pid: pid.as_raw() })?;
    // From here on this process only waits, for as long as the container runs.
    wait_loop(pid, mask, true).map(Some)
}

fn exit_msg(status: WaitStatus) -> Option<Msg> {
    match status {
        WaitStatus::Exited(_, code) => Some(Msg::Exited { code: Some(code), signal: None }),
        WaitStatus::Signaled(_, sig, _) => Some(Msg::Exited { code: None, signal: Some(sig as i32) }),
        _ => None,
    }
}

pub(super) fn wait_exit(pid: Pid) -> Msg {
    loop {
        match waitpid(pid, None) {
            Ok(s) => {
                if let Some(m) = exit_msg(s) {
                    return m;
                }
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return Msg::Exited { code: None, signal: None },
        }
    }
}

/// Waits for the init, killing it if the parent dies (SIGTERM, our parent-death signal).
/// `long`: the wait may last (a container, not an exec'd command), so its code is released
/// first ([`crate::monitor::idle_poll`]).
pub(super) fn wait_loop(pid: Pid, mask: SigSet, long: bool) -> Result<Msg> {
    let sfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).context("create signalfd")?;
    loop {
        if let Some(m) = waitpid(pid, Some(WaitPidFlag::WNOHANG)).ok().and_then(exit_msg) {
            return Ok(m);
        }
        let mut fds = [PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        let polled = match long {
            true => crate::monitor::idle_poll(&mut fds, PollTimeout::NONE),
            false => poll(&mut fds, PollTimeout::NONE),
        };
        match polled {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("wait for the container"),
        }
        while let Ok(Some(info)) = sfd.read_signal() {
            if info.ssi_signo == Signal::SIGTERM as u32 {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }
}
