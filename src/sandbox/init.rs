//! The container's PID 1, forked by stage 1 after it unshared the pid namespace: it takes its own
//! mount namespace (a copy of stage 1's, so `pivot_root` never moves the fuse-overlayfs daemon),
//! applies the mount plan, opens the pty, pivots, becomes the requested user, drops
//! capabilities, sets no_new_privs, installs seccomp and execs. Any failure is written to the
//! report pipe as one message and the process exits with 125, or 126/127 for exec failures.
//! With `--init` it stays as a tiny reaper that forwards signals to the command.

use std::convert::Infallible;
use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::SignalFd;
use nix::sys::stat::Mode;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{self, ForkResult, Gid, Pid, Uid};

use super::msg::{Channel, Msg};
use super::{caps, mounts, user, FORWARDED};
use crate::config::{ContainerConfig, Security, DEFAULT_PATH};
use crate::hint::{ExitStatus, EXIT_RL_FAILED};
use crate::sys;

/// Runs the init; never returns.
pub fn run(cfg: &ContainerConfig, chan: &Channel, report: OwnedFd, seccomp: Option<&seccompiler::BpfProgram>) -> ! {
    match setup_and_exec(cfg, chan, seccomp) {
        Ok(never) => match never {},
        Err(e) => fail(e, report),
    }
}

/// A process forked to exec the payload (the init, an exec'd command) could not: its error goes
/// to stage 1 on `report` (a close-on-exec pipe), then it exits with the error's status.
pub(super) fn fail(err: anyhow::Error, report: OwnedFd) -> ! {
    let code = err.chain().find_map(|e| e.downcast_ref::<ExitStatus>()).map_or(EXIT_RL_FAILED, |s| s.code);
    let msg = Msg::Failed { message: format!("{err:#}"), code, problem: None };
    if let Ok(text) = serde_json::to_vec(&msg) {
        let _ = std::fs::File::from(report).write_all(&text);
    }
    sys::exit_now(code)
}

fn setup_and_exec(
    cfg: &ContainerConfig,
    chan: &Channel,
    seccomp: Option<&seccompiler::BpfProgram>,
) -> Result<Infallible> {
    let _ = nix::sys::prctl::set_name(c"rl-init");
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("set the parent-death signal")?;
    // Into the container's cgroup before anything of the payload runs, so every process it
    // forks is counted; then a cgroup namespace rooted there (its /sys/fs/cgroup).
    if let Some(dir) = &cfg.cgroup {
        crate::cgroup::join(dir)?;
    }
    unshare(CloneFlags::CLONE_NEWCGROUP | CloneFlags::CLONE_NEWNS)
        .context("unshare the cgroup and mount namespaces")?;
    let merged = &cfg.dirs.merged;
    let plan = mounts::plan(cfg, cfg.idmap.gid_mapped(5));
    mounts::apply(merged, &plan)?;
    let pty = if cfg.process.tty { Some(open_pty(merged)?) } else { None };

    unistd::chdir(merged).with_context(|| format!("chdir `{}`", merged.display()))?;
    unistd::pivot_root(".", ".").context("pivot_root into the rootfs")?;
    // The old root is stacked under the new one at "/": detach it (pivot_root(2), "new_root and
    // put_old may be the same directory").
    nix::mount::umount2(".", nix::mount::MntFlags::MNT_DETACH).context("detach the old root")?;
    unistd::chdir("/").context("chdir `/`")?;

    unistd::sethostname(&cfg.hostname).with_context(|| format!("set hostname `{}`", cfg.hostname))?;
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let who = user::resolve(&cfg.process.user, &cfg.process.group_add, &read("/etc/passwd"), &read("/etc/group"))?;
    let mut env = cfg.process.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", who.home));
    }

    new_session(chan, pty, &who)?;
    harden(&who, &cfg.security, cfg.idmap.helpers, &cfg.process.cwd)?;

    let argv: Vec<CString> = cfg.process.args.iter().map(|a| cstring(a)).collect::<Result<_>>()?;
    let envp: Vec<CString> = env.iter().map(|e| cstring(e)).collect::<Result<_>>()?;
    let program = find_program(&cfg.process.args[0], &env)?;
    // The payload may use the network from its first instruction: right before the exec, it
    // waits for the helpers the parent started on it (they got ready while this process set
    // the container up).
    let network = cfg.network.has_helpers().then_some(chan);

    if cfg.process.init {
        // SIGCHLD and the forwarded signals wait for the signalfd; the child unblocks them.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        for s in FORWARDED {
            mask.add(s);
        }
        sys::install_noop_handlers(&FORWARDED).context("install init signal handlers")?;
        mask.thread_block().context("block signals")?;
        return match sys::fork().context("fork the command")? {
            ForkResult::Child => exec(&program, &argv, &envp, seccomp, network),
            ForkResult::Parent { child } => {
                // The init stays rl for the container's life: it keeps no fd but stdio (not the
                // sync socket, the report pipe or anything rl inherited), and is not dumpable, so
                // container processes can neither ptrace it nor open its /proc files.
                if sys::close_from(3).is_err() || nix::sys::prctl::set_dumpable(false).is_err() {
                    sys::exit_now(EXIT_RL_FAILED);
                }
                reap(child, mask)
            }
        };
    }
    exec(&program, &argv, &envp, seccomp, network)
}

/// Starts a new session (no signal from the user's terminal reaches the payload but through
/// rl) and, with a pty, hands its master to the parent and makes the slave the controlling
/// terminal and stdio. The slave is given to the payload's user, as a login would.
pub(super) fn new_session(chan: &Channel, pty: Option<(OwnedFd, u32)>, who: &user::Resolved) -> Result<()> {
    unistd::setsid().context("setsid")?;
    let Some((master, index)) = pty else { return Ok(()) };
    chan.send_fd(&Msg::PtyMaster, Some(master.as_raw_fd()))?;
    drop(master);
    let slave = nix::fcntl::open(format!("/dev/pts/{index}").as_str(), OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
        .context("open the pty slave")?;
    // Best effort: the terminal works either way, only `mesg`/`write` would miss the ownership.
    let _ = unistd::fchown(&slave, Some(Uid::from_raw(who.uid)), None);
    sys::set_controlling_tty(slave.as_raw_fd()).context("make the pty the controlling terminal")?;
    nix::unistd::dup2_stdin(&slave).context("attach the pty to stdin")?;
    nix::unistd::dup2_stdout(&slave).context("attach the pty to stdout")?;
    nix::unistd::dup2_stderr(&slave).context("attach the pty to stderr")?;
    Ok(())
}

/// The hardening every payload process gets (the container's and `exec`'s): the bounding set,
/// the user and groups (`set_groups`: only with a full gid map, where setgroups(2) is allowed),
/// effective = permitted capabilities, the working directory and no_new_privs. What is left is
/// seccomp, closing fds and the exec itself: [`exec`].
pub(super) fn harden(who: &user::Resolved, security: &Security, set_groups: bool, cwd: &str) -> Result<()> {
    caps::limit_bounding(&security.caps)?;
    nix::sys::prctl::set_keepcaps(true).context("keep capabilities across the user change")?;
    if set_groups {
        let groups: Vec<Gid> = who.groups.iter().map(|&g| Gid::from_raw(g)).collect();
        unistd::setgroups(&groups).context("set supplementary groups")?;
    }
    let (uid, gid) = (Uid::from_raw(who.uid), Gid::from_raw(who.gid));
    unistd::setresgid(gid, gid, gid).with_context(|| format!("set group id {}", who.gid))?;
    unistd::setresuid(uid, uid, uid).with_context(|| format!("set user id {}", who.uid))?;
    // Credential changes clear the parent-death signal.
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("set the parent-death signal")?;
    caps::apply(&security.caps)?;

    let cwd = if cwd.is_empty() { "/" } else { cwd };
    unistd::chdir(cwd).with_context(|| format!("chdir to the working directory `{cwd}`"))?;
    if security.no_new_privs {
        nix::sys::prctl::set_no_new_privs().context("set no_new_privs")?;
    }
    Ok(())
}

pub(super) fn cstring(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| anyhow!("argument or variable `{}` contains a NUL byte", s.replace('\0', "\\0")))
}

/// Opens a new pty on the devpts `ptmx` device: the master and the slave's number.
pub(super) fn open_pty_master(ptmx: &Path) -> Result<(OwnedFd, u32)> {
    let master = nix::fcntl::open(ptmx, OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty())
        .with_context(|| format!("open `{}`", ptmx.display()))?;
    let pt = sys::pty_master(master);
    nix::pty::unlockpt(&pt).context("unlock the pty")?;
    let name = nix::pty::ptsname_r(&pt).context("name the pty")?;
    let index: u32 = name.rsplit('/').next().and_then(|n| n.parse().ok()).context("parse the pty name")?;
    Ok((pt.into(), index))
}

/// Opens a pty in the container's devpts and binds its slave on /dev/console.
fn open_pty(merged: &Path) -> Result<(OwnedFd, u32)> {
    let (master, index) = open_pty_master(&merged.join("dev/pts/ptmx"))?;
    let slave = merged.join(format!("dev/pts/{index}"));
    let root = nix::fcntl::open(merged, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let console = mounts::ensure(&root, "/dev/console", mounts::Kind::File)?;
    nix::mount::mount(
        Some(&slave),
        format!("/proc/self/fd/{}", console.as_raw_fd()).as_str(),
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .context("bind the pty on /dev/console")?;
    Ok((master, index))
}

/// Finds the program as execvp(3) would, with the container's PATH.
pub(super) fn find_program(arg0: &str, env: &[String]) -> Result<CString> {
    let not_found = |what: String| ExitStatus { code: 127, message: what };
    if arg0.contains('/') {
        return cstring(arg0);
    }
    let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(DEFAULT_PATH);
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(arg0);
        if candidate.is_file() {
            return cstring(&candidate.to_string_lossy());
        }
    }
    Err(not_found(format!("exec `{arg0}`: executable file not found in $PATH")).into())
}

/// Installs seccomp, waits for the network's helpers on `network` (the sync socket) if they
/// are not known ready, marks every fd but stdio close-on-exec and execs: the last step of every
/// payload process. An exec failure is 127 (not found) or 126 (not executable), as in a shell.
pub(super) fn exec(
    program: &CString,
    argv: &[CString],
    envp: &[CString],
    seccomp: Option<&seccompiler::BpfProgram>,
    network: Option<&Channel>,
) -> Result<Infallible> {
    sys::reset_signal_dispositions();
    SigSet::empty().thread_set_mask().context("unblock signals")?;
    if let Some(prog) = seccomp {
        super::seccomp::install(prog)?;
    }
    if let Some(chan) = network {
        match chan.recv()? {
            Some(Msg::NetworkReady) => {}
            Some(Msg::Failed { message, .. }) => return Err(anyhow!(message)),
            other => return Err(anyhow!("waiting for the network: unexpected {other:?}")),
        }
    }
    sys::cloexec_from(3).context("close inherited file descriptors")?;
    let e = unistd::execve(program, argv, envp).unwrap_err();
    let code = match e {
        Errno::ENOENT | Errno::ENOTDIR => 127,
        _ => 126,
    };
    let name = program.to_string_lossy();
    Err(ExitStatus { code, message: format!("exec `{name}`: {}", e.desc().to_lowercase()) }.into())
}

/// The reaping init: forwards signals to the command, reaps every orphan, and exits with the
/// command's status (128+N for a signal, as a shell would report it).
fn reap(child: Pid, mask: SigSet) -> ! {
    let Ok(sfd) = SignalFd::new(&mask) else { sys::exit_now(EXIT_RL_FAILED) };
    loop {
        let Ok(Some(info)) = sfd.read_signal() else {
            continue;
        };
        let sig = info.ssi_signo as i32;
        if sig != Signal::SIGCHLD as i32 {
            if let Ok(s) = Signal::try_from(sig) {
                let _ = kill(child, s);
            }
            continue;
        }
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid == child => sys::exit_now(code),
                Ok(WaitStatus::Signaled(pid, s, _)) if pid == child => sys::exit_now(128 + s as i32),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}
