//! The resource-limit flags `rl run`, `rl create` and `rl update` share (Docker's names), parsed
//! into [`crate::cgroup::Resources`].

use anyhow::Result;
use clap::Args;

use crate::cgroup::limits::{self, Resources};

#[derive(Debug, Args, Default)]
pub struct LimitFlags {
    /// Memory limit (e.g. 512m, 2g); the OOM killer acts above it.
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub memory: Option<String>,
    /// Memory plus swap (-1: unlimited swap; default: as much swap as memory).
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Memory the container is protected from reclaim below (memory.low).
    #[arg(long, value_name = "SIZE")]
    pub memory_reservation: Option<String>,
    /// CPUs the container may use (e.g. 0.5, 2).
    #[arg(long, value_name = "N")]
    pub cpus: Option<String>,
    /// CPU shares, relative weight (default 1024).
    #[arg(short = 'c', long, value_name = "N")]
    pub cpu_shares: Option<String>,
    /// CPU weight, cgroup v2's unit (1-10000, default 100).
    #[arg(long, value_name = "N")]
    pub cpu_weight: Option<String>,
    /// CPUs the container may run on (e.g. 0-2,4).
    #[arg(long, value_name = "LIST")]
    pub cpuset_cpus: Option<String>,
    /// At most N processes and threads (-1: unlimited).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    pub pids_limit: Option<String>,
    /// Block I/O weight, relative (10-1000).
    #[arg(long, value_name = "N")]
    pub blkio_weight: Option<String>,
}

impl LimitFlags {
    /// The limits the flags ask for, each value and their combination checked.
    pub fn resources(&self) -> Result<Resources> {
        let r = self.resources_unchecked()?;
        r.validate()?;
        Ok(r)
    }

    /// The limits the flags ask for, each value checked (`rl update` checks the combination
    /// once merged with the container's).
    pub fn resources_unchecked(&self) -> Result<Resources> {
        let opt = |v: &Option<String>, f: &dyn Fn(&str) -> Result<i64>| v.as_deref().map(f).transpose();
        let r = Resources {
            memory: self.memory.as_deref().map(|s| limits::parse_memory("--memory", s)).transpose()?,
            memory_swap: self.memory_swap.as_deref().map(limits::parse_swap).transpose()?.flatten(),
            memory_reservation: self
                .memory_reservation
                .as_deref()
                .map(|s| limits::parse_bytes("--memory-reservation", s))
                .transpose()?,
            nano_cpus: self.cpus.as_deref().map(limits::parse_cpus).transpose()?,
            cpu_shares: opt(&self.cpu_shares, &|s| limits::parse_in("--cpu-shares", s, 2, 262_144))?.map(|n| n as u64),
            cpu_weight: opt(&self.cpu_weight, &|s| limits::parse_in("--cpu-weight", s, 1, 10_000))?.map(|n| n as u64),
            cpuset_cpus: self.cpuset_cpus.as_deref().map(limits::parse_cpuset).transpose()?,
            pids_limit: opt(&self.pids_limit, &|s| limits::parse_in("--pids-limit", s, -1, i64::MAX))?,
            blkio_weight: opt(&self.blkio_weight, &|s| limits::parse_in("--blkio-weight", s, 10, 1000))?
                .map(|n| n as u64),
        };
        Ok(r)
    }
}
