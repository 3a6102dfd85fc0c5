//! A container's network while it starts and runs, on the owner's side (`rl run`, or the
//! detached container's monitor): [`prepare`] before the namespaces exist (bind the published
//! ports, open the namespaces of a `container:` peer), [`Prepared::start`] once they do (start
//! slirp4netns or pasta and the port forwarder, which load while stage 1 mounts the rootfs),
//! [`Wiring::wait_ready`] before the payload runs. Dropping the [`Wiring`] ends the helpers.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;

use super::forward::{self, Bound};
use super::netd::Connection;
use super::ports::PortMapping;
use super::store::NetworkDef;
use super::{Attached, NetworkMode};
use crate::config::ContainerConfig;
use crate::state;
use crate::store::Paths;
use crate::sys;

/// How long a helper may take to get ready: slirp4netns and pasta take milliseconds; a host
/// under heavy load, much longer, but never forever.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A helper process of a running container.
pub struct Helper {
    name: &'static str,
    child: Child,
    /// Closing it tells the helper to exit (slirp4netns's `--exit-fd`, the forwarder's stop
    /// pipe); `None` for helpers that are ended with SIGTERM.
    stop: Option<OwnedFd>,
    /// Readable once the helper is ready (a byte) or gone (EOF).
    ready: Option<OwnedFd>,
    /// The helper's stdout and stderr, for the error when it fails.
    log: PathBuf,
    /// slirp4netns's API socket, with `port_handler=slirp4netns`.
    pub(super) api: Option<PathBuf>,
    /// It binds published host ports itself (pasta; slirp4netns's own port handler): it is
    /// waited for when ended, so the ports are free when the container's owner returns.
    pub(super) holds_ports: bool,
}

impl Helper {
    pub(super) fn new(
        name: &'static str,
        child: Child,
        stop: OwnedFd,
        ready: Option<OwnedFd>,
        log: PathBuf,
        api: Option<PathBuf>,
    ) -> Helper {
        Helper { name, child, stop: Some(stop), ready, log, api, holds_ports: false }
    }

    /// A helper that is ended with SIGTERM.
    pub(super) fn signalled(name: &'static str, child: Child, ready: Option<OwnedFd>, log: PathBuf) -> Helper {
        Helper { name, child, stop: None, ready, log, api: None, holds_ports: false }
    }

    /// Why the helper failed: its log, one line.
    fn failure(&mut self, what: &str) -> anyhow::Error {
        let status = self.child.try_wait().ok().flatten();
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let text = text.trim().replace('\n', "; ");
        let status = status.map_or_else(String::new, |s| format!(" ({s})"));
        match text.is_empty() {
            true => anyhow!("{}: {what}{status}", self.name),
            false => anyhow!("{}: {what}{status}: {text}", self.name),
        }
    }

    fn wait_ready(&mut self, deadline: Instant) -> Result<()> {
        let Some(fd) = self.ready.take() else { return Ok(()) };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
            let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
            match poll(&mut fds, PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)) {
                Ok(0) => return Err(self.failure("not ready in time")),
                Ok(_) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(e).context("wait for a network helper"),
            }
        }
        let mut byte = [0u8; 1];
        match nix::unistd::read(fd.as_fd(), &mut byte) {
            Ok(1) => Ok(()),
            _ => {
                // Gone: reap it so its status is known.
                let _ = self.child.wait();
                Err(self.failure("exited before it was ready"))
            }
        }
    }
}

impl Drop for Helper {
    /// Ends the helper with SIGKILL and does not wait for it: its exit closes the tap device,
    /// which the kernel tears down synchronously (~20 ms for slirp4netns here), and its stop fd
    /// or SIGTERM would add its own shutdown (15-40 ms) — time every `rl run --rm` would spend.
    /// Neither has anything to clean up. The owner exits soon after (or, for a restarting
    /// container's monitor, keeps a zombie per restart until it does).
    fn drop(&mut self) {
        drop(self.stop.take());
        let _ = self.child.kill();
        // The forwarder has no device to tear down: reap it; and a helper holding published
        // ports must be gone before they are reported free.
        match self.name == "port forwarder" || self.holds_ports {
            true => drop(self.child.wait()),
            false => drop(self.child.try_wait()),
        }
        if let Some(api) = &self.api {
            let _ = std::fs::remove_file(api);
        }
    }
}

/// Spawns a helper with the fds `inherit` open in it, in a session of its own (a Ctrl-C at the
/// user's terminal is for the container, not for its network) and killed if the spawning
/// thread dies.
pub(super) fn spawn_helper(cmd: &mut Command, inherit: &[RawFd]) -> Result<Child> {
    let pre = sys::PreExec {
        fds: inherit.iter().map(|&fd| (fd, fd)).collect(),
        death_signal: Some(Signal::SIGKILL),
        setsid: true,
        unblock_signals: true,
    };
    sys::set_pre_exec(cmd, pre);
    cmd.stdin(std::process::Stdio::null());
    cmd.spawn().with_context(|| format!("start `{}`", cmd.get_program().to_string_lossy()))
}

/// The namespace holder of a start ([`crate::sys::fork_ns_holder`]): released (and reaped) when
/// dropped. slirp4netns joins the namespaces through its pid, so it stays until that is done.
pub struct Hold {
    pub pid: nix::unistd::Pid,
    pub release: Option<OwnedFd>,
}

impl Drop for Hold {
    fn drop(&mut self) {
        drop(self.release.take());
        let _ = nix::sys::wait::waitpid(self.pid, None);
    }
}

/// What a container's network needs before its namespaces exist.
pub struct Prepared {
    mode: NetworkMode,
    /// Published ports bound on the host, for the forwarder.
    bound: Vec<Bound>,
    /// Published ports a helper binds itself (pasta, slirp4netns's port handler), with host
    /// port 0 replaced by a free one.
    helper_ports: Vec<PortMapping>,
    /// `container:` mode: the other container's user and network namespaces.
    peer: Option<(File, File)>,
    /// User networks: the daemon (whose user namespace the container joins) and the networks.
    netd: Option<UserNets>,
    run_dir: PathBuf,
    /// Root is mapped in the container's user namespace (not so with `--userns keep-id` and no
    /// subordinate ids), which slirp4netns's sandbox needs.
    root_mapped: bool,
}

/// A start on user networks: the daemon's connection, the networks, what the container's /etc
/// files need once its addresses are known.
struct UserNets {
    conn: Connection,
    user: File,
    defs: Vec<NetworkDef>,
    id: String,
    names: Vec<String>,
    hostname: String,
    net: super::NetworkConfig,
}

/// Prepares `cfg`'s network for a start: binds its published ports (so a clash fails here,
/// before anything runs) and opens a `container:` peer's namespaces.
pub fn prepare(paths: &Paths, cfg: &ContainerConfig) -> Result<Prepared> {
    let net = &cfg.network;
    let helper_binds = match &net.mode {
        NetworkMode::Pasta(_) => true,
        NetworkMode::Slirp4netns(o) => o.slirp_port_handler,
        _ => false,
    };
    let (bound, helper_ports) = match helper_binds {
        // Bound and let go: the helper binds them itself, and a clash still fails here.
        true => (Vec::new(), forward::bind_all(&net.ports)?.into_iter().map(|b| b.mapping).collect()),
        false => (forward::bind_all(&net.ports)?, Vec::new()),
    };
    let peer = match &net.mode {
        NetworkMode::Container(id) => Some(peer_namespaces(paths, id, cfg)?),
        _ => None,
    };
    let netd = match &net.mode {
        NetworkMode::Bridge(names) => Some(user_networks(paths, names, cfg)?),
        _ => None,
    };
    let root_mapped = cfg.idmap.uid_mapped(0) && cfg.idmap.gid_mapped(0);
    // The helpers keep their logs and sockets in the container's runtime dir, and may start
    // before the rest of it is written.
    if !bound.is_empty() || matches!(net.mode, NetworkMode::Slirp4netns(_) | NetworkMode::Pasta(_)) {
        crate::store::layout::private_dir(&cfg.dirs.run)?;
    }
    Ok(Prepared { mode: net.mode.clone(), bound, helper_ports, peer, netd, run_dir: cfg.dirs.run.clone(), root_mapped })
}

/// Connects to the network daemon (starting it) for a container on the user networks `names`.
fn user_networks(paths: &Paths, names: &[String], cfg: &ContainerConfig) -> Result<UserNets> {
    let defs = names.iter().map(|n| super::store::find(paths, n)).collect::<Result<Vec<_>>>()?;
    let conn = super::netd::connect(paths)?;
    let first = names.first().map(String::as_str).unwrap_or_default();
    let user = crate::userns::share::of_pid(conn.pid, &cfg.idmap).ok_or_else(|| {
        anyhow!(
            "network `{first}`: containers on user networks share the network daemon's user namespace, which has the default id maps (not --userns keep-id)"
        )
    })?;
    let mut all = vec![cfg.name.clone()];
    all.extend(cfg.network.aliases.iter().cloned());
    Ok(UserNets {
        conn,
        user,
        defs,
        id: cfg.id.clone(),
        names: all,
        hostname: cfg.hostname.clone(),
        net: cfg.network.clone(),
    })
}

/// The user and network namespaces of the running container `id`, which `cfg` joins.
fn peer_namespaces(paths: &Paths, id: &str, cfg: &ContainerConfig) -> Result<(File, File)> {
    let what = || format!("network `container:{id}`");
    let st = state::load(paths, id).with_context(what)?;
    let pid = match (st.running(), st.pid) {
        (true, Some(pid)) => pid,
        _ => bail!("{}: the container is not running", what()),
    };
    let user = crate::userns::share::of_pid(pid, &cfg.idmap).ok_or_else(|| {
        anyhow!("{}: it runs with other id maps (its --userns differs), so its network cannot be shared", what())
    })?;
    let path = format!("/proc/{pid}/ns/net");
    let net = File::open(&path).with_context(|| format!("{}: open `{path}`", what()))?;
    Ok((user, net))
}

impl Prepared {
    /// Whether the container gets a network namespace of its own (else it keeps the user's, or
    /// joins [`Self::peer_netns`]).
    pub fn own_netns(&self) -> bool {
        self.mode.own_namespace()
    }

    /// The user namespace to join instead of a new one: a `container:` peer's, or the network
    /// daemon's for user networks.
    pub fn peer_userns(&self) -> Option<BorrowedFd<'_>> {
        match (&self.peer, &self.netd) {
            (Some((u, _)), _) => Some(u.as_fd()),
            (None, Some(n)) => Some(n.user.as_fd()),
            (None, None) => None,
        }
    }

    /// `container:` mode: the network namespace stage 1 joins.
    pub fn peer_netns(&self) -> Result<Option<File>> {
        self.peer.as_ref().map(|(_, n)| n.try_clone().context("dup the peer's network namespace")).transpose()
    }

    /// Starts the helpers on the container's new namespaces: they load while stage 1 mounts the
    /// rootfs.
    pub fn start(self, userns: BorrowedFd, netns: BorrowedFd, hold: Hold) -> Result<Wiring> {
        let mut helpers = Vec::new();
        let mut attached = Attached::default();
        let target = match &self.mode {
            NetworkMode::Slirp4netns(o) => {
                helpers.push(super::slirp::start(o, hold.pid, &self.run_dir, self.root_mapped)?);
                let (_, prefix, own, gw, _) = o.addresses();
                attached = Attached { ip: Some(own.into()), prefix, gateway: Some(gw.into()), ..Default::default() };
                Some(std::net::IpAddr::from(own))
            }
            NetworkMode::Pasta(args) => {
                helpers.push(super::pasta::start(args, &self.helper_ports, userns, netns, &self.run_dir)?);
                if let Some((ip, prefix, gw)) = super::pasta::host_address() {
                    attached = Attached { ip: Some(ip), prefix, gateway: gw, ..Default::default() };
                }
                None
            }
            NetworkMode::None | NetworkMode::Host | NetworkMode::Container(_) | NetworkMode::Bridge(_) => None,
        };
        attached.ports = self.bound.iter().map(|b| b.mapping.clone()).collect();
        attached.ports.extend(self.helper_ports.iter().cloned());
        let mut bound = self.bound;
        let mut pending = None;
        if let Some(n) = self.netd {
            n.conn.attach(&n.defs, &n.id, n.names.clone(), netns)?;
            // The forwarder needs the container's address: it starts once the daemon replied.
            let fds = (userns.try_clone_to_owned().context("dup")?, netns.try_clone_to_owned().context("dup")?);
            pending = Some((n, std::mem::take(&mut bound), fds));
        }
        if !bound.is_empty() {
            let target = target.context("published ports need a network helper")?;
            helpers.push(super::proxy::start(bound, target, userns, netns, &self.run_dir)?);
        }
        let hold = helpers.iter().any(|h| h.name == "slirp4netns").then_some(hold);
        Ok(Wiring {
            helpers,
            attached,
            forward_by_slirp: self.helper_ports,
            hold,
            pending,
            run_dir: self.run_dir,
            netd: None,
        })
    }
}

/// A container's running network helpers; dropping it ends them.
pub struct Wiring {
    helpers: Vec<Helper>,
    /// What the container's network looks like, for its state.
    pub attached: Attached,
    /// Ports slirp4netns forwards through its API socket once ready (or pasta binds itself).
    forward_by_slirp: Vec<PortMapping>,
    /// The namespace holder, until the helpers are ready.
    hold: Option<Hold>,
    /// User networks: the daemon's attach under way, the ports to forward and the container's
    /// namespaces for the forwarder.
    pending: Option<(UserNets, Vec<Bound>, (OwnedFd, OwnedFd))>,
    run_dir: PathBuf,
    /// The daemon's connection while the container runs: closing it detaches the container.
    netd: Option<Connection>,
}

impl Wiring {
    /// Waits until every helper is ready (the network is configured, ports are served).
    pub fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        for h in &mut self.helpers {
            h.wait_ready(deadline)?;
            if let Some(api) = h.api.clone() {
                super::slirp::add_forwards(&api, &self.forward_by_slirp)?;
            }
        }
        drop(self.hold.take());
        if let Some((n, bound, (userns, netns))) = self.pending.take() {
            let addrs = n.conn.attached()?;
            let first = addrs.first().context("the network daemon gave no address")?.clone();
            self.attached.ip = Some(first.ip.into());
            self.attached.prefix = first.prefix;
            self.attached.gateway = first.gateway.map(Into::into);
            self.attached.networks = addrs;
            write_user_net_etc(&self.run_dir, &n, first.ip)?;
            if !bound.is_empty() {
                let target = std::net::IpAddr::from(first.ip);
                let mut fwd = super::proxy::start(bound, target, userns.as_fd(), netns.as_fd(), &self.run_dir)?;
                fwd.wait_ready(deadline)?;
                self.helpers.push(fwd);
            }
            self.netd = Some(n.conn);
        }
        Ok(())
    }

    /// Whether the payload must wait for [`Self::wait_ready`].
    pub fn has_helpers(&self) -> bool {
        !self.helpers.is_empty() || self.pending.is_some()
    }
}

/// The /etc/hosts and /etc/resolv.conf of a container on user networks, once its address is
/// known: written in place (the init bind-mounted these files already) before the payload runs.
/// Its resolver is the first network's DNS responder.
fn write_user_net_etc(run_dir: &std::path::Path, n: &UserNets, ip: std::net::Ipv4Addr) -> Result<()> {
    let names: Vec<&str> = n.names.iter().map(String::as_str).collect();
    let extra: Vec<(String, std::net::IpAddr)> = n
        .net
        .add_hosts
        .iter()
        .filter_map(|(name, v)| {
            let ip = match v.as_str() {
                "host-gateway" => n.defs.first().filter(|d| !d.internal).map(|d| d.router().into()),
                v => v.parse().ok(),
            };
            ip.map(|ip| (name.clone(), ip))
        })
        .collect();
    let hosts = super::etc::hosts(&n.hostname, &names, Some(ip.into()), &extra);
    let p = run_dir.join("hosts");
    std::fs::write(&p, hosts).with_context(|| format!("write `{}`", p.display()))?;
    write_user_net_resolv_conf(run_dir, &n.net, n.defs.first().map(|d| d.gateway))
}

/// The /etc/resolv.conf of a container on user networks, written in place: `resolver` (a
/// network's DNS responder, its gateway) unless the user chose servers.
pub fn write_user_net_resolv_conf(
    run_dir: &std::path::Path,
    net: &super::NetworkConfig,
    resolver: Option<std::net::Ipv4Addr>,
) -> Result<()> {
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut dns = net.dns.clone();
    if dns.servers.is_empty() {
        dns.servers = resolver.map(|r| vec![r.into()]).unwrap_or_default();
    }
    let mut resolv = super::etc::resolv_conf(&host_resolv, &dns, None);
    if net.dns.search.is_empty() {
        resolv = match resolv.strip_prefix("search ") {
            Some(rest) => format!("search dns.rl {rest}"),
            None => format!("search dns.rl\n{resolv}"),
        };
    }
    let p = run_dir.join("resolv.conf");
    std::fs::write(&p, resolv).with_context(|| format!("write `{}`", p.display()))
}
