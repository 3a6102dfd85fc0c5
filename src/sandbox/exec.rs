//! The stage-1 side of `rl exec`, run by the stage-1 process once it has joined a running
//! container's namespaces ([`super::parent::Stage1::join`]: user first, then mount, uts, ipc,
//! net, cgroup and pid). Joining a pid namespace only places the children of the caller in it,
//! so stage 1 forks the process to run; stage 1 itself stays outside, waiting for it as it waits
//! for a container's init, and never shows up among the container's processes.
//!
//! The forked child is rl inside the container until it execs, in the container's pid
//! namespace, under the same uid as the container's root: it makes itself non-dumpable first, so
//! no container process can ptrace it or open its /proc files (its sync socket, its binary —
//! the parent runs it from a sealed copy when the binary could be written from inside,
//! CVE-2019-5736). Then it takes the container's hardening through the very steps of the
//! container's init ([`init::harden`], [`init::exec`]): user and groups from the container's
//! /etc/passwd and /etc/group, bounding and effective capabilities, no_new_privs, seccomp, every
//! fd but stdio closed.

use std::convert::Infallible;
use std::ffi::CString;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::Mode;
use nix::unistd::{self, ForkResult};
use seccompiler::BpfProgram;
use serde::{Deserialize, Serialize};

use super::msg::{Channel, Msg};
use super::{init, stage1, user};
use crate::config::Security;
use crate::hint::EXIT_RL_FAILED;
use crate::sys;

/// What to run in the container, built by `rl exec` from the container's config and its flags.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ExecJob {
    /// The command (`-t` as `tty`), its environment (the container's with `-e` on top), `-w`
    /// (else the container's working directory), `-u` (else the container's user) and the
    /// container's `--group-add` groups.
    pub process: crate::config::Process,
    /// `-d`: report the start and leave the process running, with stdio on /dev/null.
    pub detach: bool,
    /// The container's capabilities, seccomp and no_new_privs.
    pub security: Security,
    /// The gid map is complete (setgroups(2) is allowed in the container).
    pub set_groups: bool,
}

/// Forks the process to exec into the joined pid namespace and reports on `chan`: `PtyMaster`
/// (with `-t`), then `Started` once it exec'd, then `Exited` (unless detached); or `Failed`
/// with 126/127 when the exec failed, 125 for any other setup failure.
pub fn run(chan: &Channel, job: &ExecJob, mask: SigSet) -> Result<()> {
    let seccomp = match job.security.seccomp {
        true => Some(super::seccomp::default_filter(&job.security.caps)?),
        false => None,
    };
    let (report_r, report_w) = unistd::pipe2(OFlag::O_CLOEXEC).context("create the report pipe")?;
    let pid = match sys::fork() {
        Ok(ForkResult::Child) => {
            drop(report_r);
            child(job, chan, report_w, seccomp.as_ref())
        }
        Ok(ForkResult::Parent { child }) => child,
        // A pid namespace whose init has exited takes no new process (pid_namespaces(7)).
        Err(Errno::ENOMEM) => anyhow::bail!("the container's PID 1 has exited"),
        Err(e) => return Err(e).context("fork the process to exec"),
    };
    drop(report_w);
    // The pipe closes on exec (EOF) or carries the child's one failure message.
    let mut report = Vec::new();
    std::fs::File::from(report_r).read_to_end(&mut report).context("read the exec report")?;
    if !report.is_empty() {
        let status = stage1::wait_exit(pid);
        let (message, problem) = match serde_json::from_slice(&report) {
            Ok(Msg::Failed { message, problem, .. }) => (message, problem),
            _ => (String::from_utf8_lossy(&report).into_owned(), None),
        };
        // The child exits with the status rl should end with (126/127 for exec failures).
        let code = match status {
            Msg::Exited { code: Some(c), .. } => c,
            _ => EXIT_RL_FAILED,
        };
        return chan.send(&Msg::Failed { message, code, problem });
    }
    chan.send(&Msg::Started { pid: pid.as_raw() })?;
    if job.detach {
        return Ok(());
    }
    let status = stage1::wait_loop(pid, mask, false)?;
    chan.send(&status)
}

/// The forked child: sets up and execs; never returns.
fn child(job: &ExecJob, chan: &Channel, report: OwnedFd, seccomp: Option<&BpfProgram>) -> ! {
    match setup_and_exec(job, chan, seccomp) {
        Ok(never) => match never {},
        Err(e) => init::fail(e, report),
    }
}

fn setup_and_exec(job: &ExecJob, chan: &Channel, seccomp: Option<&BpfProgram>) -> Result<Infallible> {
    nix::sys::prctl::set_dumpable(false).context("make the exec process non-dumpable")?;
    let _ = nix::sys::prctl::set_name(c"rl-exec");
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("set the parent-death signal")?;
    // Joining the mount namespace made the container's root our root and working directory, so
    // these are the container's files.
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let who = user::resolve(&job.process.user, &job.process.group_add, &read("/etc/passwd"), &read("/etc/group"))?;
    let mut env = job.process.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", who.home));
    }
    let pty = match job.process.tty {
        true => Some(init::open_pty_master(Path::new("/dev/pts/ptmx"))?),
        false => None,
    };
    if job.detach {
        let null = nix::fcntl::open("/dev/null", OFlag::O_RDWR | OFlag::O_CLOEXEC, Mode::empty())
            .context("open the container's /dev/null")?;
        nix::unistd::dup2_stdin(&null).context("put stdin on /dev/null")?;
        nix::unistd::dup2_stdout(&null).context("put stdout on /dev/null")?;
        nix::unistd::dup2_stderr(&null).context("put stderr on /dev/null")?;
    }
    init::new_session(chan, pty, &who)?;
    init::harden(&who, &job.security, job.set_groups, &job.process.cwd)?;
    if job.detach {
        // Stage 1 leaves once the exec happened: the process must outlive it.
        nix::sys::prctl::set_pdeathsig(None).context("clear the parent-death signal")?;
    }
    let argv: Vec<CString> = job.process.args.iter().map(|a| init::cstring(a)).collect::<Result<_>>()?;
    let envp: Vec<CString> = env.iter().map(|e| init::cstring(e)).collect::<Result<_>>()?;
    let arg0 = job.process.args.first().context("exec: no command")?;
    let program = init::find_program(arg0, &env)?;
    init::exec(&program, &argv, &envp, seccomp, None)
}
