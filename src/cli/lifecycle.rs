//! The verbs that move a container through its life: `rl create`, `start`, `stop`, `kill`,
//! `restart`, `wait`, `rm`, `rename` and `container prune`. They share one shape (find the
//! record, act through [`crate::lifecycle`], print what Docker prints), so they read better side
//! by side than in nine files of twenty lines.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;

use crate::lifecycle;
use crate::state::{self, Status};
use crate::store::Paths;

#[derive(Debug, Args)]
pub struct StartArgs {
    /// Print the container's output until it ends, and end with its status.
    #[arg(short, long)]
    pub attach: bool,
    /// Attach the terminal's input too (a container created with -i).
    #[arg(short, long)]
    pub interactive: bool,
    /// Containers to start (names or ids).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after the stop signal before SIGKILL.
    #[arg(short, long, default_value_t = 10)]
    pub time: u64,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// The signal (name or number).
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Stop (SIGKILL) a running container first.
    #[arg(short, long)]
    pub force: bool,
    /// Remove anonymous volumes too (rl makes none yet).
    #[arg(short, long)]
    pub volumes: bool,
    #[arg(required = true)]
    pub containers: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RenameArgs {
    pub container: String,
    pub name: String,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask (rl never asks; accepted for Docker's habits).
    #[arg(short, long)]
    pub force: bool,
}

/// Runs `each` for every named container; reports each failure on its own line and fails at
/// the end if any did, as Docker does for multi-container verbs.
pub(super) fn for_each(names: &[String], mut each: impl FnMut(&str) -> Result<()>) -> Result<i32> {
    let mut failed = 0;
    for n in names {
        if let Err(e) = each(n) {
            if names.len() == 1 {
                return Err(e);
            }
            crate::hint::report(&e);
            failed += 1;
        }
    }
    Ok(if failed > 0 { crate::hint::EXIT_RL_FAILED } else { 0 })
}

/// `rl start`: a created or exited container runs again under a new monitor.
pub fn start(root: Option<PathBuf>, runroot: Option<PathBuf>, args: StartArgs) -> Result<i32> {
    if args.attach || args.interactive {
        return start_attached(root, runroot, args);
    }
    let paths = Paths::resolve(root, runroot)?;
    for_each(&args.containers, |n| {
        let (cfg, st) = state::find(&paths, n)?;
        let mut st = lifecycle::effective(&st.ok_or_else(|| anyhow::anyhow!("container `{n}`: no state"))?);
        if st.running() {
            println!("{n}");
            return Ok(());
        }
        st.stopped = false;
        st.status = Status::Created;
        state::save(&paths, &cfg.id, &st)?;
        crate::monitor::detached::launch(&paths, &cfg.id, || Ok(()))?;
        println!("{n}");
        Ok(())
    })
}

/// `rl start -a [-i]`: starts one container and stays with it. Its output comes from the log,
/// followed from the start on (so nothing written before this process caught up is lost);
/// with `-i` the terminal is attached through the monitor instead, input and output.
fn start_attached(root: Option<PathBuf>, runroot: Option<PathBuf>, args: StartArgs) -> Result<i32> {
    let [n] = args.containers.as_slice() else {
        anyhow::bail!("start -a: attach to one container at a time ({} given)", args.containers.len());
    };
    let paths = Paths::resolve(root.clone(), runroot.clone())?;
    let (cfg, st) = state::find(&paths, n)?;
    let st = lifecycle::effective(&st.ok_or_else(|| anyhow::anyhow!("container `{n}`: no state"))?);
    if !st.running() {
        let mut st = st;
        st.stopped = false;
        st.status = Status::Created;
        state::save(&paths, &cfg.id, &st)?;
        let since = crate::monitor::log::rfc3339_nanos(state::now_ns());
        crate::monitor::detached::launch(&paths, &cfg.id, || Ok(()))?;
        if !(args.interactive && cfg.process.stdin) {
            let logs = super::logs::LogsArgs {
                follow: true,
                timestamps: false,
                tail: None,
                since: Some(since),
                container: cfg.id.clone(),
            };
            super::logs::run(root, runroot, logs)?;
            if cfg.restart == crate::config::RestartPolicy::No {
                lifecycle::wait_watcher(&state::load(&paths, &cfg.id)?)?;
            }
            let st = state::load(&paths, &cfg.id)?;
            return st.exit_code.ok_or_else(|| anyhow::anyhow!("container `{n}`: ended without an exit code"));
        }
    }
    let attach = super::attach::AttachArgs {
        detach_keys: "ctrl-p,ctrl-q".into(),
        no_stdin: !args.interactive,
        container: cfg.id.clone(),
    };
    super::attach::run(root, runroot, attach)
}

/// `rl stop`.
pub fn stop(root: Option<PathBuf>, runroot: Option<PathBuf>, args: StopArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    for_each(&args.containers, |n| {
        let (cfg, _) = state::find(&paths, n)?;
        lifecycle::stop(&paths, &cfg, Duration::from_secs(args.time))?;
        println!("{n}");
        Ok(())
    })
}

/// `rl restart`.
pub fn restart(root: Option<PathBuf>, runroot: Option<PathBuf>, args: StopArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    for_each(&args.containers, |n| {
        let (cfg, _) = state::find(&paths, n)?;
        lifecycle::stop(&paths, &cfg, Duration::from_secs(args.time))?;
        let mut st = state::load(&paths, &cfg.id)?;
        st.stopped = false;
        state::save(&paths, &cfg.id, &st)?;
        crate::monitor::detached::launch(&paths, &cfg.id, || Ok(()))?;
        println!("{n}");
        Ok(())
    })
}

/// `rl kill`.
pub fn kill(root: Option<PathBuf>, runroot: Option<PathBuf>, args: KillArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let sig = lifecycle::parse_signal(&args.signal)?;
    for_each(&args.containers, |n| {
        let (cfg, st) = state::find(&paths, n)?;
        let mut st = st.ok_or_else(|| anyhow::anyhow!("container `{n}`: no state"))?;
        if !st.running() {
            bail!("container `{n}`: not running");
        }
        // Killed by the user: no restart policy brings it back (as Docker does for SIGKILL).
        st.stopped = true;
        state::save(&paths, &cfg.id, &st)?;
        lifecycle::signal(&cfg, &st, sig)?;
        println!("{n}");
        Ok(())
    })
}

/// `rl wait`: blocks until each container is done and prints its exit code.
pub fn wait(root: Option<PathBuf>, runroot: Option<PathBuf>, args: WaitArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    for_each(&args.containers, |n| {
        let (cfg, st) = state::find(&paths, n)?;
        if let Some(st) = st {
            lifecycle::wait_watcher(&st)?;
        }
        let st = lifecycle::effective(&state::load(&paths, &cfg.id)?);
        match st.exit_code {
            Some(code) => println!("{code}"),
            None => bail!("container `{n}`: {}", st.error.as_deref().unwrap_or("no exit code recorded")),
        }
        Ok(())
    })
}

/// `rl rm`.
pub fn rm(root: Option<PathBuf>, runroot: Option<PathBuf>, args: RmArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    for_each(&args.containers, |n| {
        let (cfg, st) = state::find(&paths, n)?;
        if st.as_ref().is_some_and(|s| s.running()) {
            if !args.force {
                return Err(crate::hint::with_fix(
                    format!("container `{n}`: cannot remove a running container"),
                    format!("stop it first (`rl stop {n}`) or use `rl rm -f {n}`"),
                ));
            }
            lifecycle::stop(&paths, &cfg, Duration::ZERO)?;
        }
        lifecycle::remove(&paths, &cfg)?;
        println!("{n}");
        Ok(())
    })
}

/// `rl rename`.
pub fn rename(root: Option<PathBuf>, runroot: Option<PathBuf>, args: RenameArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    state::rename(&paths, &args.container, &args.name)?;
    Ok(0)
}

/// `rl container prune`: removes every container that is not running.
pub fn prune(root: Option<PathBuf>, runroot: Option<PathBuf>, _args: PruneArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let mut removed = 0;
    for (cfg, st) in state::list(&paths) {
        if st.as_ref().is_some_and(|s| s.running()) {
            continue;
        }
        lifecycle::remove(&paths, &cfg)?;
        println!("{}", cfg.id);
        removed += 1;
    }
    eprintln!("removed {removed} container(s)");
    Ok(0)
}
