//! The port forwarder process, `rl __forward`: started by the container's owner with the host
//! ports already bound (in the host's network namespace), it joins the container's user and
//! network namespaces, so every socket it opens from then on is inside, and relays each
//! connection to the container's address ([`super::forward::serve`]) — rootlesskit's "builtin"
//! port driver, which is much faster than slirp4netns's own forwarding through its TCP/IP stack.
//!
//! A process of its own because joining a user namespace needs a single-threaded process and
//! the owner must stay outside. Fds it is started with: 3 the user namespace, 4 the network
//! namespace, 5 the stop pipe (readable or hung up: exit), 6 the ready pipe (a byte once
//! inside), 7… the bound sockets in the order of the mappings in its argument.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use nix::sched::{setns, CloneFlags};

use super::forward::{self, Bound};
use super::ports::PortMapping;
use super::wiring::Helper;
use crate::hint::EXIT_RL_FAILED;
use crate::sys;

const USERNS_FD: i32 = 3;
const NETNS_FD: i32 = 4;
const STOP_FD: i32 = 5;
const READY_FD: i32 = 6;
const FIRST_SOCKET_FD: i32 = 7;

/// Starts the forwarder for `bound` ports, relaying to `target` in the namespaces `netns` of
/// `userns`.
pub fn start(
    bound: Vec<Bound>,
    target: IpAddr,
    userns: BorrowedFd,
    netns: BorrowedFd,
    run_dir: &Path,
) -> Result<Helper> {
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create a pipe")?;
    let (stop_r, stop_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create a pipe")?;
    let log = run_dir.join("forward.log");
    let log_file = std::fs::File::create(&log).with_context(|| format!("create `{}`", log.display()))?;
    let mappings: Vec<&PortMapping> = bound.iter().map(|b| &b.mapping).collect();
    let mut sources: Vec<BorrowedFd> = vec![userns, netns, stop_r.as_fd(), ready_w.as_fd()];
    sources.extend(bound.iter().map(|b| b.fd.as_fd()));
    // The pre-exec step dups each onto its number in order; copies above every target number
    // first, so none is overwritten before it is moved.
    let above = FIRST_SOCKET_FD + sources.len() as i32;
    let high: Vec<OwnedFd> = sources
        .iter()
        .map(|fd| sys::dup_above(*fd, above))
        .collect::<std::io::Result<_>>()
        .context("arrange the forwarder's fds")?;
    let pairs: Vec<(i32, i32)> = high.iter().zip(USERNS_FD..).map(|(h, to)| (h.as_raw_fd(), to)).collect();
    let mut cmd = Command::new("/proc/self/exe");
    std::os::unix::process::CommandExt::arg0(&mut cmd, "rl");
    cmd.arg("__forward")
        .arg(target.to_string())
        .arg(serde_json::to_string(&mappings).context("encode the port mappings")?)
        .stdout(log_file.try_clone().context("dup the log")?)
        .stderr(log_file);
    sys::set_pre_exec(
        &mut cmd,
        sys::PreExec {
            fds: pairs,
            death_signal: Some(nix::sys::signal::Signal::SIGKILL),
            setsid: true,
            unblock_signals: true,
        },
    );
    cmd.stdin(std::process::Stdio::null());
    let child = cmd.spawn().context("start the port forwarder")?;
    drop((high, ready_w, stop_r, bound));
    Ok(Helper::new("port forwarder", child, stop_w, Some(ready_r), log, None))
}

/// Entry point of `rl __forward TARGET MAPPINGS`; returns the exit code.
pub fn main(args: &[std::ffi::OsString]) -> i32 {
    match forwarder(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e:#}");
            EXIT_RL_FAILED
        }
    }
}

fn forwarder(args: &[std::ffi::OsString]) -> Result<()> {
    let _ = nix::sys::prctl::set_name(c"rl-forward");
    let (Some(target), Some(mappings)) = (args.first().and_then(|a| a.to_str()), args.get(1).and_then(|a| a.to_str()))
    else {
        bail!("rl __forward is internal: use `rl run -p`");
    };
    let target: IpAddr = target.parse().context("the target address")?;
    let mappings: Vec<PortMapping> = serde_json::from_str(mappings).context("the port mappings")?;
    let adopt = |fd: i32| sys::adopt_fd(fd).with_context(|| format!("fd {fd}"));
    let userns = adopt(USERNS_FD)?;
    let netns = adopt(NETNS_FD)?;
    let stop = adopt(STOP_FD)?;
    let ready = adopt(READY_FD)?;
    let mut listeners = Vec::with_capacity(mappings.len());
    for (i, m) in mappings.into_iter().enumerate() {
        let fd = adopt(FIRST_SOCKET_FD + i as i32)?;
        let to = SocketAddr::new(target, m.container_port);
        listeners.push((Bound { mapping: m, fd }, to));
    }
    setns(userns.as_fd(), CloneFlags::CLONE_NEWUSER).context("join the container's user namespace")?;
    setns(netns.as_fd(), CloneFlags::CLONE_NEWNET).context("join the container's network namespace")?;
    drop((userns, netns));
    nix::unistd::write(&ready, b"1").context("report ready")?;
    drop(ready);
    forward::serve(listeners, stop)
}
