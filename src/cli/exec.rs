//! `rl exec`: runs a command in a running container. Finds the container's record, builds the
//! process from its config and the flags, and starts stage 1 in the container's namespaces
//! ([`Stage1::join`]); stage 1 forks the process into them ([`crate::sandbox::exec`]). In the
//! foreground rl relays the pty and signals as `rl run` does and exits with the command's status;
//! with `-d` it returns once the command was exec'd.
//!
//! It is on a hot path (scripts, health checks): no image lookup and no id-map helper, one
//! record read, one stage-1 process.

use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use clap::Args;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;

use crate::config;
use crate::hint::with_fix;
use crate::monitor;
use crate::sandbox::exec::ExecJob;
use crate::sandbox::msg::Job;
use crate::sandbox::parent::{self, Spawn, Stage1};
use crate::state::{self, Status};
use crate::store::Paths;

#[derive(Debug, Args)]
#[command(disable_help_flag = true, trailing_var_arg = true)]
pub struct ExecArgs {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Keep stdin open and pass it to the command.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Leave the command running in the background (its output is discarded).
    #[arg(short, long)]
    pub detach: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass rl's own value).
    #[arg(short, long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines).
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container (default: the container's).
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Run as USER[:GROUP] (names or numbers from the container's /etc/passwd and /etc/group).
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// The container (name, id or unique id prefix), then the command and its arguments.
    #[arg(value_name = "CONTAINER COMMAND", required = true)]
    pub command: Vec<String>,
}

/// `rl exec`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: ExecArgs) -> Result<i32> {
    let (query, command) = match args.command.split_first() {
        Some((q, c)) if !c.is_empty() => (q.as_str(), c),
        Some((q, _)) => bail!("exec in container `{q}`: no command given"),
        None => bail!("exec: no container given"),
    };
    if args.detach && args.tty {
        bail!("exec in container `{query}`: `-d` with `-t` is not supported (nothing would hold the terminal)");
    }
    let paths = Paths::resolve(root, runroot)?;
    let (cfg, st) = state::find(&paths, query)?;
    let not_running = || {
        with_fix(
            format!("exec in container `{query}`: the container is not running"),
            "`rl exec` needs a running container: list them with `rl ps`",
        )
    };
    let pid = match &st {
        Some(state::State { status: Status::Running, pid: Some(pid), .. }) => Pid::from_raw(*pid),
        _ => return Err(not_running()),
    };
    if st.as_ref().is_some_and(crate::lifecycle::paused) {
        return Err(with_fix(
            format!("exec in container `{query}`: the container is paused"),
            format!("unpause it first: `rl unpause {query}`"),
        ));
    }
    // A record left `running` by an rl that was killed names a pid that is gone (or someone
    // else's).
    if nix::sys::signal::kill(pid, None).is_err() {
        return Err(not_running());
    }
    let process = config::Process {
        args: command.to_vec(),
        env: config::build_env(&cfg.process.env, &args.env_file, &args.env, args.tty, &cfg.hostname)?,
        cwd: args.workdir.clone().unwrap_or_else(|| cfg.process.cwd.clone()),
        user: args.user.clone().unwrap_or_else(|| cfg.process.user.clone()),
        group_add: cfg.process.group_add.clone(),
        tty: args.tty,
        stdin: args.interactive,
        init: false,
    };
    let job = ExecJob { process, detach: args.detach, security: cfg.security.clone(), set_groups: cfg.idmap.helpers };
    exec(pid, job, &args, parent::exe_exposed(&cfg.idmap)).with_context(|| format!("exec in container `{query}`"))
}

fn exec(pid: Pid, job: ExecJob, args: &ExecArgs, sealed: bool) -> Result<i32> {
    // Signals wait in a signalfd from now on, so none is lost before the process exists.
    let mask = monitor::signal_mask();
    mask.thread_block().context("block signals")?;
    let sigfd =
        SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).context("create signalfd")?;
    let stdin = if args.interactive && !args.tty && !args.detach { Stdio::inherit() } else { Stdio::null() };
    let how = Spawn { stdin, sealed, ..Spawn::default() };
    let stage = Stage1::join(pid, Job::Exec(Box::new(job)), how)?;
    let running = parent::wait_started(stage)?;
    if args.detach {
        running.stage.reap();
        return Ok(0);
    }
    let exit = monitor::watch(&running, &sigfd, args.interactive);
    running.stage.reap();
    let exit = exit?;
    if exit.code.is_none() && exit.signal.is_none() {
        bail!("the stage-1 process ended without reporting the command's exit");
    }
    Ok(exit.status())
}
