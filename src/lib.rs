//! rl — a rootless container runner.
//!
//! `rl run` reads straight down this list: [`cli`] parses → [`config`] merges what to run →
//! [`store`] holds the container's writable layer → [`sandbox::parent`] spawns the stage-1
//! process in a new user namespace, [`userns`] writes its id maps → [`network`] → the stage-1
//! process mounts the [`rootfs`] overlay and forks the container init, which applies the
//! [`sandbox::mounts`] plan, pivots and execs → [`monitor`] relays the terminal and signals,
//! waits and cleans up in reverse order. [`state`] records the container on disk, [`hint`] turns
//! known host problems into a fix, [`helper`] finds and starts external programs, and [`sys`] is
//! the only module allowed `unsafe`.
#![deny(unsafe_code)]

pub mod cgroup;
pub mod cli;
pub mod config;
pub mod helper;
pub mod hint;
pub mod image;
pub mod lifecycle;
pub mod monitor;
pub mod network;
pub mod rootfs;
pub mod sandbox;
pub mod state;
pub mod store;
pub mod sys;
pub mod tty;
pub mod userns;

/// Entry point of the binary: runs the command line and returns the process exit code.
pub fn main() -> i32 {
    cli::main()
}
