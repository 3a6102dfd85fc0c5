//! External helper programs (newuidmap, fuse-overlayfs, later slirp4netns and pasta): found with
//! `which`, started with `std::process` under a parent-death signal so they never outlive the
//! process that needs them, with their stderr kept for the error message.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};
use nix::sys::signal::Signal;

use crate::hint::{hinted, Problem};
use crate::sys;

/// Finds `name` in PATH; `problem` explains how to install it.
pub fn find(name: &str, problem: Problem) -> Result<PathBuf> {
    which::which(name).map_err(|_| hinted(problem, format!("find `{name}`: not found in PATH")))
}

/// Whether `path` carries file capabilities (Fedora installs newuidmap that way).
pub fn has_file_caps(path: &Path) -> bool {
    sys::has_xattr(path, "security.capability")
}

/// Starts `cmd` so that it is killed when the calling thread exits, with stdin closed and stderr
/// captured.
pub fn spawn_tied(cmd: &mut Command) -> Result<Child> {
    sys::set_pre_exec(cmd, sys::PreExec { death_signal: Some(Signal::SIGKILL), ..Default::default() });
    cmd.stdin(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn().with_context(|| format!("start `{}`", cmd.get_program().to_string_lossy()))
}

/// The helper's captured stderr, one line, for an error message.
pub fn stderr_text(child: &mut Child) -> String {
    use std::io::Read;
    let mut s = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    s.trim().replace('\n', "; ")
}
