//! The sandbox, one file per process role, in the order they run: [`parent`] (the `rl` process:
//! a forked holder creates the namespaces, the setuid helpers map them, stage 1 is spawned into
//! them), [`stage1`] (inside the new user namespace: rootfs, cgroup and pid namespaces, waits for
//! the container, cleans up), [`init`] (the container's PID 1: mounts, pivot, user, hardening,
//! exec) — or, for `rl exec`, [`exec`] (stage 1 in a running container's namespaces forks the
//! process and gives it the init's hardening). They talk through the typed messages of [`msg`]. The pure parts —
//! [`mounts`] (the mount plan), [`caps`], [`user`], [`seccomp`] — are unit-tested on their own.

pub mod caps;
pub mod copy;
pub mod exec;
pub mod init;
pub mod mounts;
pub mod msg;
pub mod parent;
pub mod seccomp;
pub mod stage1;
pub mod user;

use std::path::Path;

use anyhow::{Context, Result};
use nix::sys::signal::Signal;

/// Signals rl passes on to the container's PID 1 (Docker's sig-proxy set, without the ones that
/// stop or are about rl's own terminal).
pub const FORWARDED: [Signal; 8] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGTERM,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGALRM,
    Signal::SIGCONT,
];

/// Removes a tree if it exists (missing is fine).
pub fn remove_tree(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("remove `{}`", path.display())),
    }
}
