//! `rl healthcheck run CONTAINER`: one health probe now, recorded like the monitor's; exits 0
//! when it passed, 1 when it failed (as Podman does).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};

use crate::monitor::health;
use crate::store::Paths;

#[derive(Debug, Args)]
pub struct HealthcheckArgs {
    #[command(subcommand)]
    pub command: HealthcheckCommand,
}

#[derive(Debug, Subcommand)]
pub enum HealthcheckCommand {
    /// Run the container's health check once.
    Run { container: String },
}

/// `rl healthcheck`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: HealthcheckArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let HealthcheckCommand::Run { container } = args.command;
    let (cfg, st) = crate::state::find(&paths, &container)?;
    let Some(hc) = &cfg.health else { bail!("container `{container}`: has no health check") };
    if !st.is_some_and(|s| s.running()) {
        bail!("container `{container}`: not running");
    }
    let dir = paths.container(&cfg.id);
    let out = dir.join(format!("health-run-{}.out", std::process::id()));
    let start = crate::state::now_ns();
    let mut child = health::spawn_probe(&paths, &cfg.id, hc, &out)?;
    let exited = crate::lifecycle::wait_pid(child.id() as i32, Some(std::time::Duration::from_nanos(hc.timeout_ns)))?;
    let status = if exited {
        child.wait().ok()
    } else {
        let _ = child.kill();
        let _ = child.wait();
        None
    };
    let probe = health::finish(&out, start, status);
    let passed = probe.exit_code == 0;
    let mut h = health::load(&dir).unwrap_or_default();
    h.record(hc, probe, false);
    health::save(&dir, &h)?;
    println!("{}", h.status);
    Ok(if passed { 0 } else { 1 })
}
