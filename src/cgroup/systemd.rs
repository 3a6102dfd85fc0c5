//! A delegated cgroup from the user's systemd: when rl runs in a cgroup the user does not own (a
//! login session's scope) and a start asks for limits, `rl` execs itself again under
//! `systemd-run --user --scope -p Delegate=yes`. The user's manager makes a transient scope,
//! owned by the user, with the controllers it may delegate; systemd-run execs rl in it (same
//! pid, so signals and the terminal stay as they were). From there rl finds its delegated root
//! as anywhere else (the manager's own subtree, or the scope itself, which it then leaves for a
//! child: [`super::settle`]). A detached container's monitor stays in the scope, which lives as
//! long as it does. Not tested here: neither this CI host nor its VM runs a systemd.

use std::os::unix::process::CommandExt;
use std::path::Path;

/// Set in the environment of the rl that systemd-run starts, so it never asks again.
const IN_SCOPE: &str = "RL_IN_SYSTEMD_SCOPE";

/// Whether the user's systemd manager can be reached (its private socket, or the session bus).
fn user_manager() -> bool {
    std::env::var_os("XDG_RUNTIME_DIR")
        .is_some_and(|d| Path::new(&d).join("systemd/private").exists() || Path::new(&d).join("bus").exists())
}

/// Execs `systemd-run --user --scope -p Delegate=yes -- rl ARGS…` when the limits `res` cannot
/// be enforced from where rl runs and the user's systemd could delegate a scope; returns only
/// if it does not (or the exec failed, with the error).
pub fn rerun_in_scope(res: &super::Resources) -> Option<std::io::Error> {
    if !res.any() || std::env::var_os(IN_SCOPE).is_some() || !user_manager() {
        return None;
    }
    let host = super::Host::detect();
    if host.version != super::Version::V2 || host.check(res).is_ok() {
        return None;
    }
    let systemd_run = which::which("systemd-run").ok()?;
    // Exec'd, systemd-run cannot fall back: make sure the manager answers first.
    let answers = std::process::Command::new("systemctl")
        .args(["--user", "show-environment"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !answers {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    Some(
        std::process::Command::new(systemd_run)
            .args(["--user", "--scope", "--quiet", "--collect", "-p", "Delegate=yes", "--"])
            .arg(exe)
            .args(args)
            .env(IN_SCOPE, "1")
            .exec(),
    )
}
