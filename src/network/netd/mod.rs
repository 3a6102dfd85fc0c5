//! The per-user network daemon, `rl __netd`: user networks live in its network namespace.
//!
//! Started on demand by the first container that starts on a user network ([`connect`]), it
//! makes a user namespace (the default id maps, so containers on user networks join it: a veth
//! can only be moved between network namespaces of one user namespace) and a network namespace
//! in it, and stays in the host's network namespace itself, so the slirp4netns it starts there
//! and its DNS upstream use the host's sockets. Work inside a namespace is done by a forked child
//! that joins it ([`in_netns`]): a netlink socket is bound to its creator's namespace, and this
//! process could not come back.
//!
//! Per network, when its first container attaches: a bridge (the gateway address on it), a
//! slirp4netns on a tap in the bridge (`--cidr` = the network: router .2, resolver .3; none for
//! `--internal`), and a DNS responder on gateway:53 answering the names of the network's
//! containers and forwarding the rest to the host's resolver. Per container: a veth whose inside
//! end (eth0, eth1…) gets its address, MAC and default route. Each container's owner (`rl run`
//! or the monitor) keeps its connection open while the container runs; when it closes, the
//! container's veths, addresses and names go, a network without containers goes down, and with
//! nothing left the daemon exits.

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::store::NetworkDef;
use super::NetAddr;
use crate::sandbox::msg::Channel;
use crate::store::{lock, Paths};
use crate::sys;

mod daemon;
pub use daemon::main;

const SOCKET: &str = "netd.sock";
const MTU: u32 = 65520;

#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    Hello,
    /// Put the container whose network namespace is attached on `networks` (in order:
    /// eth0, eth1…; the first non-internal one gives the default route).
    Attach {
        networks: Vec<NetworkDef>,
        id: String,
        names: Vec<String>,
    },
    /// Put the running container `id`, attached by its owner's connection, on one more network
    /// (the next free ethN), known there by `names`.
    Connect {
        network: NetworkDef,
        id: String,
        names: Vec<String>,
    },
    /// Take the running container `id` off `network`.
    Disconnect {
        network: String,
        id: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Hello { pid: i32 },
    Attached { addrs: Vec<NetAddr> },
    Detached,
    Failed { message: String },
}

/// A connection to the daemon, for one container start; the daemon detaches the container
/// when it is dropped.
pub struct Connection {
    chan: Channel,
    /// The daemon's pid: containers join its user namespace.
    pub pid: i32,
}

impl Connection {
    /// Asks for the container on `netns` to be attached to `networks`; the reply is
    /// [`Connection::attached`].
    pub fn attach(&self, networks: &[NetworkDef], id: &str, names: Vec<String>, netns: BorrowedFd) -> Result<()> {
        let req = Request::Attach { networks: networks.to_vec(), id: id.to_string(), names };
        self.chan.send_json(&req, &[netns.as_raw_fd()]).context("ask the network daemon")
    }

    /// The container's addresses, once attached.
    pub fn attached(&self) -> Result<Vec<NetAddr>> {
        match self.reply()? {
            Reply::Attached { addrs } => Ok(addrs),
            other => bail!("the network daemon sent an unexpected {other:?}"),
        }
    }

    /// Puts the running container `id` on `network` too; its address there.
    pub fn connect_running(&self, network: &NetworkDef, id: &str, names: Vec<String>) -> Result<NetAddr> {
        let req = Request::Connect { network: network.clone(), id: id.to_string(), names };
        self.chan.send_json(&req, &[]).context("ask the network daemon")?;
        match self.reply()? {
            Reply::Attached { mut addrs } if addrs.len() == 1 => Ok(addrs.remove(0)),
            other => bail!("the network daemon sent an unexpected {other:?}"),
        }
    }

    /// Takes the running container `id` off `network`.
    pub fn disconnect_running(&self, network: &str, id: &str) -> Result<()> {
        let req = Request::Disconnect { network: network.to_string(), id: id.to_string() };
        self.chan.send_json(&req, &[]).context("ask the network daemon")?;
        match self.reply()? {
            Reply::Detached => Ok(()),
            other => bail!("the network daemon sent an unexpected {other:?}"),
        }
    }

    /// The next reply; a failure as the error.
    fn reply(&self) -> Result<Reply> {
        match self.chan.recv_json::<Reply>()? {
            Some((Reply::Failed { message }, _)) => Err(anyhow!(message)),
            Some((r, _)) => Ok(r),
            None => bail!("the network daemon exited (see its log `netd.log` in the run root)"),
        }
    }
}

/// Connects to the user's network daemon, starting it if it is not running.
pub fn connect(paths: &Paths) -> Result<Connection> {
    let sock = paths.runroot.join(SOCKET);
    for _ in 0..3 {
        if let Some(c) = hello(&sock) {
            return Ok(c);
        }
        let _lock = lock::exclusive(&paths.runroot.join("netd.lock"))?;
        if let Some(c) = hello(&sock) {
            return Ok(c);
        }
        spawn(paths)?;
    }
    bail!("start the network daemon: it exited at once (see `{}`)", paths.runroot.join("netd.log").display())
}

/// Connects to the user's network daemon if it runs (a container on a user network runs).
pub fn connect_running(paths: &Paths) -> Result<Connection> {
    hello(&paths.runroot.join(SOCKET)).context("the network daemon is not running")
}

fn hello(sock: &Path) -> Option<Connection> {
    let stream = UnixStream::connect(sock).ok()?;
    let chan = Channel::from_fd(OwnedFd::from(stream));
    chan.send_json(&Request::Hello, &[]).ok()?;
    match chan.recv_json::<Reply>().ok()?? {
        (Reply::Hello { pid }, _) => Some(Connection { chan, pid }),
        _ => None,
    }
}

/// Starts `rl __netd ROOT RUNROOT FD` in a session of its own and waits for its ready byte.
fn spawn(paths: &Paths) -> Result<()> {
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create a pipe")?;
    let log = paths.runroot.join("netd.log");
    let log_file = File::create(&log).with_context(|| format!("create `{}`", log.display()))?;
    let mut cmd = Command::new("/proc/self/exe");
    std::os::unix::process::CommandExt::arg0(&mut cmd, "rl");
    cmd.arg("__netd")
        .arg(&paths.root)
        .arg(&paths.runroot)
        .arg(ready_w.as_raw_fd().to_string())
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone().context("dup the log")?)
        .stderr(log_file);
    let pre = sys::PreExec {
        fds: vec![(ready_w.as_raw_fd(), ready_w.as_raw_fd())],
        setsid: true,
        unblock_signals: true,
        ..Default::default()
    };
    sys::set_pre_exec(&mut cmd, pre);
    let mut child = cmd.spawn().context("start the network daemon")?;
    drop(ready_w);
    let mut byte = [0u8; 1];
    let got = nix::unistd::read(ready_r.as_fd(), &mut byte);
    // The daemon lives on in its own session; the process we reap is its launcher role only
    // when it failed.
    if !matches!(got, Ok(1)) {
        let _ = child.wait();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        bail!("start the network daemon: {}", text.trim().replace('\n', "; "));
    }
    // Not waited for: it runs until its last container goes (then init reaps it, as our
    // child's parent is gone or we exit first).
    drop(child);
    Ok(())
}
