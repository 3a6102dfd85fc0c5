//! `rl pause` and `rl unpause`: freeze and thaw every process of running containers through
//! their cgroup's `cgroup.freeze` — cgroup v2's freezer, which no process can notice, catch or
//! ignore, unlike SIGSTOP.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::state;
use crate::store::Paths;

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Containers (names or ids).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

/// `rl pause` (`freeze`) or `rl unpause`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: PauseArgs, freeze: bool) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    super::lifecycle::for_each(&args.containers, |n| {
        let (cfg, st) = state::find(&paths, n)?;
        let leaf = crate::lifecycle::running_leaf(&cfg, st.as_ref())?;
        match (freeze, leaf.frozen()) {
            (true, true) => bail!("container `{n}`: already paused"),
            (false, false) => bail!("container `{n}`: not paused"),
            _ => leaf.freeze(freeze)?,
        }
        println!("{n}");
        Ok(())
    })
}
