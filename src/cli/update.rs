//! `rl update`: changes the limits of containers — written into a running container's cgroup
//! at once, and kept in its config for its next starts.

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::state;
use crate::store::Paths;

#[derive(Debug, Args)]
pub struct UpdateArgs {
    #[command(flatten)]
    pub limits: super::limits::LimitFlags,
    /// Containers (names or ids).
    #[arg(required = true)]
    pub containers: Vec<String>,
}

pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: UpdateArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let change = args.limits.resources_unchecked()?;
    if !change.any() {
        bail!("update: nothing to change (give a limit such as --memory, --cpus or --pids-limit)");
    }
    super::lifecycle::for_each(&args.containers, |n| {
        let (cfg, st) = state::find(&paths, n)?;
        let mut merged = cfg.resources.clone();
        merged.merge(&change);
        merged.validate()?;
        let running = st.as_ref().map(crate::lifecycle::effective).is_some_and(|s| s.running());
        if running {
            let leaf = crate::lifecycle::running_leaf(&cfg, st.as_ref())?;
            leaf.check(&change)?;
            leaf.apply(&merged)?;
        } else if !cfg.ignore_limits {
            // Its next start would fail: say so now.
            crate::cgroup::Host::detect().check(&change)?;
        }
        state::update_config(&paths, &cfg.id, |c| {
            c.resources = merged;
            Ok(())
        })?;
        println!("{n}");
        Ok(())
    })
}
