//! The daemon's side: namespaces, bridges, slirp4netns and DNS per network, veths per
//! container, and the poll loop serving the containers' owners.

use std::collections::HashMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, CloneFlags};

use super::super::dns::{Records, Responder};
use super::super::netlink::{mac_for, Netlink};
use super::super::store::NetworkDef;
use super::super::NetAddr;
use super::{Reply, Request, MTU, SOCKET};
use crate::sandbox::msg::Channel;
use crate::store::{lock, Paths};
use crate::sys;

/// Runs `f` with a netlink socket in the network namespace `ns`, in a forked child (this
/// process stays where it is); the child's error comes back as the error.
fn in_netns(ns: BorrowedFd, f: impl FnOnce(&mut Netlink) -> Result<()>) -> Result<()> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create a pipe")?;
    match sys::fork().context("fork")? {
        nix::unistd::ForkResult::Child => {
            drop(r);
            let result = setns(ns, CloneFlags::CLONE_NEWNET)
                .context("join a network namespace")
                .and_then(|()| Netlink::open())
                .and_then(|mut nl| f(&mut nl));
            let code = match result {
                Ok(()) => 0,
                Err(e) => {
                    let _ = nix::unistd::write(&w, format!("{e:#}").as_bytes());
                    1
                }
            };
            sys::exit_now(code)
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(w);
            let mut text = String::new();
            use std::io::Read;
            let _ = File::from(r).read_to_string(&mut text);
            let status = nix::sys::wait::waitpid(child, None).context("wait for a namespace child")?;
            match status {
                nix::sys::wait::WaitStatus::Exited(_, 0) => Ok(()),
                _ if !text.is_empty() => Err(anyhow!(text)),
                s => bail!("a child in the network namespace failed: {s:?}"),
            }
        }
    }
}

/// A UDP socket created in the network namespace `ns` and bound there to `addr`.
fn udp_in_netns(ns: BorrowedFd, addr: SocketAddr) -> Result<UdpSocket> {
    let (ours, theirs) = Channel::pair()?;
    match sys::fork().context("fork")? {
        nix::unistd::ForkResult::Child => {
            drop(ours);
            let sock = setns(ns, CloneFlags::CLONE_NEWNET)
                .context("join a network namespace")
                .and_then(|()| UdpSocket::bind(addr).with_context(|| format!("bind `{addr}`")));
            let code = match sock {
                Ok(s) => match theirs.send_json(&true, &[s.as_raw_fd()]) {
                    Ok(()) => 0,
                    Err(_) => 1,
                },
                Err(e) => {
                    let _ = theirs.send_json(&format!("{e:#}"), &[]);
                    1
                }
            };
            sys::exit_now(code)
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(theirs);
            let got = ours.recv_json::<serde_json::Value>();
            let _ = nix::sys::wait::waitpid(child, None);
            match got? {
                Some((serde_json::Value::Bool(true), mut fds)) if !fds.is_empty() => Ok(UdpSocket::from(fds.remove(0))),
                Some((serde_json::Value::String(e), _)) => Err(anyhow!(e)),
                _ => bail!("create a socket in the network namespace: the child failed"),
            }
        }
    }
}

/// A network that is up: its bridge, slirp4netns, DNS, and which addresses are taken.
struct Active {
    def: NetworkDef,
    slirp: Option<(Child, OwnedFd)>,
    dns: Responder,
    records: Records,
    used: Vec<Ipv4Addr>,
}

/// One container's attachment: its network namespace, names, and per network its link.
struct Attachment {
    id: String,
    names: Vec<String>,
    netns: OwnedFd,
    links: Vec<Link>,
    /// The network that gives the default route.
    routed: Option<String>,
}

struct Link {
    network: String,
    /// The veth's end in the daemon's namespace, and in the container's (ethN).
    host: String,
    inside: String,
    ip: Ipv4Addr,
}

struct Daemon {
    netns: File,
    upstream: Option<SocketAddr>,
    nets: HashMap<String, Active>,
    next_link: u32,
}

impl Daemon {
    /// Brings network `def` up if it is not.
    fn up(&mut self, def: &NetworkDef) -> Result<()> {
        if self.nets.contains_key(&def.name) {
            return Ok(());
        }
        let what = || format!("bring network `{}` up", def.name);
        let bridge = def.bridge();
        let (gw, prefix) = (def.gateway, def.prefix);
        in_netns(self.netns.as_fd(), |nl| {
            let br = nl.create_bridge(&bridge, MTU)?;
            nl.add_address(br, gw, prefix)?;
            nl.set_up(br)
        })
        .with_context(what)?;
        let slirp = match def.internal {
            true => None,
            false => Some(self.slirp(def).with_context(what)?),
        };
        let listen = udp_in_netns(self.netns.as_fd(), SocketAddr::new(gw.into(), 53)).with_context(what)?;
        let upstream = if def.internal { None } else { self.upstream };
        let dns = Responder::new(listen, upstream).with_context(what)?;
        let active = Active { def: def.clone(), slirp, dns, records: Records::default(), used: Vec::new() };
        self.nets.insert(def.name.clone(), active);
        Ok(())
    }

    /// Starts slirp4netns on a tap in `def`'s bridge: the network's router and resolver.
    fn slirp(&self, def: &NetworkDef) -> Result<(Child, OwnedFd)> {
        let exe = crate::helper::find("slirp4netns", crate::hint::Problem::NetworkHelperMissing)?;
        let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create a pipe")?;
        let (exit_r, exit_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create a pipe")?;
        let tap = format!("rlt{}", &def.id[..10]);
        let ns = self.netns.as_raw_fd();
        let mut cmd = Command::new(exe);
        cmd.arg(format!("--mtu={MTU}"))
            .arg(format!("--cidr={}", def.cidr()))
            .arg("--disable-host-loopback")
            .arg("--enable-sandbox")
            .arg("--enable-seccomp")
            .arg(format!("--ready-fd={}", ready_w.as_raw_fd()))
            .arg(format!("--exit-fd={}", exit_r.as_raw_fd()))
            .arg("--netns-type=path")
            .arg(format!("/proc/self/fd/{ns}"))
            .arg(&tap)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let fds = [ready_w.as_raw_fd(), exit_r.as_raw_fd(), ns];
        let mut child = super::super::wiring::spawn_helper(&mut cmd, &fds).context("start slirp4netns")?;
        drop((ready_w, exit_r));
        let mut byte = [0u8; 1];
        if !matches!(nix::unistd::read(ready_r.as_fd(), &mut byte), Ok(1)) {
            let _ = child.kill();
            let _ = child.wait();
            bail!("slirp4netns exited before it was ready");
        }
        let bridge = def.bridge();
        in_netns(self.netns.as_fd(), |nl| {
            let t = nl.link_index(&tap)?.with_context(|| format!("find `{tap}`"))?;
            let br = nl.link_index(&bridge)?.with_context(|| format!("find `{bridge}`"))?;
            nl.set_master(t, br)?;
            nl.set_up(t)
        })?;
        Ok((child, exit_w))
    }

    /// Takes network `name` down (its last container left).
    fn down(&mut self, name: &str) {
        let Some(mut net) = self.nets.remove(name) else { return };
        if let Some((mut child, exit)) = net.slirp.take() {
            drop(exit);
            let _ = child.kill();
            let _ = child.wait();
        }
        let bridge = net.def.bridge();
        let _ = in_netns(self.netns.as_fd(), |nl| match nl.link_index(&bridge)? {
            Some(i) => nl.delete_link(i),
            None => Ok(()),
        });
    }

    /// Attaches the container on `ctr` to `networks`, as eth0, eth1…
    fn attach(
        &mut self,
        networks: &[NetworkDef],
        id: &str,
        names: &[String],
        ctr: OwnedFd,
    ) -> Result<(Attachment, Vec<NetAddr>)> {
        let mut names = names.to_vec();
        names.push(id[..12].to_string());
        let mut att = Attachment { id: id.to_string(), names, netns: ctr, links: Vec::new(), routed: None };
        let mut addrs = Vec::new();
        for def in networks {
            match self.link(&mut att, def, &[]) {
                Ok(a) => addrs.push(a),
                Err(e) => {
                    self.detach(att);
                    return Err(e);
                }
            }
        }
        Ok((att, addrs))
    }

    /// Puts `att`'s container on `def` too, on its next free ethN, known there by its names and
    /// `aliases`; the default route goes through `def` if none does yet.
    fn link(&mut self, att: &mut Attachment, def: &NetworkDef, aliases: &[String]) -> Result<NetAddr> {
        let what = || format!("attach to network `{}`", def.name);
        if att.links.iter().any(|l| l.network == def.name) {
            bail!("container `{}`: already on network `{}`", att.names[0], def.name);
        }
        self.up(def).with_context(what)?;
        let net = self.nets.get_mut(&def.name).context("network is up")?;
        let ip = (10..net.def.size() - 1)
            .map(|n| net.def.host(n))
            .find(|ip| !net.used.contains(ip))
            .with_context(|| format!("network `{}`: no free address left", def.name))?;
        net.used.push(ip);
        self.next_link += 1;
        let host = format!("rlv{:08x}{:x}", std::process::id(), self.next_link);
        let inside =
            (0..).map(|i| format!("eth{i}")).find(|n| !att.links.iter().any(|l| l.inside == *n)).unwrap_or_default();
        att.links.push(Link { network: def.name.clone(), host: host.clone(), inside: inside.clone(), ip });
        let route = (!def.internal && att.routed.is_none()).then(|| def.router());
        let bridge = def.bridge();
        let ctr = att.netns.as_fd();
        let wired = in_netns(self.netns.as_fd(), |nl| {
            let h = nl.create_veth(&host, &inside, ctr, MTU)?;
            let br = nl.link_index(&bridge)?.with_context(|| format!("find `{bridge}`"))?;
            nl.set_master(h, br)?;
            nl.set_up(h)
        })
        .and_then(|()| {
            in_netns(ctr, |nl| {
                let e = nl.link_index(&inside)?.with_context(|| format!("find `{inside}`"))?;
                nl.set_mac(e, mac_for(ip))?;
                nl.add_address(e, ip, def.prefix)?;
                nl.set_up(e)?;
                match route {
                    Some(gw) => nl.add_default_route(gw),
                    None => Ok(()),
                }
            })
        });
        if let Err(e) = wired {
            if let Some(l) = att.links.pop() {
                self.unlink(l);
            }
            return Err(e.context(what()));
        }
        if route.is_some() {
            att.routed = Some(def.name.clone());
        }
        let mut all = att.names.clone();
        all.extend(aliases.iter().cloned());
        if let Some(net) = self.nets.get_mut(&def.name) {
            net.records.insert(&all, ip);
        }
        let mac = mac_for(ip).iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
        Ok(NetAddr {
            name: def.name.clone(),
            ip,
            prefix: def.prefix,
            gateway: (!def.internal).then(|| def.router()),
            mac,
        })
    }

    /// Takes `att`'s container off `network`; the default route moves to another network if
    /// it went through this one.
    fn unlink_network(&mut self, att: &mut Attachment, network: &str) -> Result<()> {
        let Some(at) = att.links.iter().position(|l| l.network == network) else {
            bail!("container `{}`: not on network `{network}`", att.names[0]);
        };
        let link = att.links.remove(at);
        self.unlink(link);
        if att.routed.as_deref() != Some(network) {
            return Ok(());
        }
        att.routed = None;
        let next = att.links.iter().find_map(|l| {
            let net = self.nets.get(&l.network)?;
            (!net.def.internal).then(|| (l.network.clone(), net.def.router()))
        });
        if let Some((name, gw)) = next {
            in_netns(att.netns.as_fd(), |nl| nl.add_default_route(gw)).context("move the default route")?;
            att.routed = Some(name);
        }
        Ok(())
    }

    /// Removes one link: its veth, address and names; the network goes down with its last.
    fn unlink(&mut self, link: Link) {
        let host = link.host;
        let _ = in_netns(self.netns.as_fd(), |nl| match nl.link_index(&host)? {
            Some(i) => nl.delete_link(i),
            None => Ok(()),
        });
        let empty = match self.nets.get_mut(&link.network) {
            Some(net) => {
                net.used.retain(|u| *u != link.ip);
                net.records.remove_ip(link.ip);
                net.used.is_empty()
            }
            None => false,
        };
        if empty {
            self.down(&link.network);
        }
    }

    fn detach(&mut self, att: Attachment) {
        for l in att.links {
            self.unlink(l);
        }
    }
}

/// The host's first nameserver (the daemon is in the host's network namespace, so a loopback
/// resolver works).
fn host_resolver() -> Option<SocketAddr> {
    let text = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next()? == "nameserver").then_some(())?;
        let ip: std::net::IpAddr = w.next()?.parse().ok()?;
        Some(SocketAddr::new(ip, 53))
    })
}

/// Entry point of `rl __netd ROOT RUNROOT FD`; returns the exit code.
pub fn main(args: &[std::ffi::OsString]) -> i32 {
    let _ = nix::sys::prctl::set_name(c"rl-netd");
    match daemon(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("Error: {e:#}");
            crate::hint::EXIT_RL_FAILED
        }
    }
}

fn daemon(args: &[std::ffi::OsString]) -> Result<()> {
    let (Some(root), Some(runroot), Some(fd)) = (args.first(), args.get(1), args.get(2).and_then(|a| a.to_str()))
    else {
        bail!("rl __netd is internal: run a container with `--network NAME`");
    };
    let paths = Paths { root: PathBuf::from(root), runroot: PathBuf::from(runroot) };
    let ready = sys::adopt_fd(fd.parse().context("the ready fd")?).context("the ready fd")?;
    // A user namespace with the default maps and a network namespace in it.
    let plan = crate::cli::run::id_maps(crate::userns::UsernsMode::Root, true)?;
    let flags = libc::CLONE_NEWUSER | libc::CLONE_NEWNET;
    let holder = sys::fork_ns_holder(flags, None)
        .context("fork the namespace holder")?
        .map_err(|e| anyhow!("create a user namespace: {}", e.desc()))?;
    plan.apply(holder.pid, || Ok(()))?;
    holder.rest_ready().context("wait for the namespace holder")?.map_err(|e| anyhow!("{}", e.desc()))?;
    let user = File::open(format!("/proc/{}/ns/user", holder.pid)).context("open the user namespace")?;
    let netns = File::open(format!("/proc/{}/ns/net", holder.pid)).context("open the network namespace")?;
    let sys::NsHolder { pid, release, .. } = holder;
    setns(user.as_fd(), CloneFlags::CLONE_NEWUSER).context("join the user namespace")?;
    drop(release);
    let _ = nix::sys::wait::waitpid(pid, None);
    let sock = paths.runroot.join(SOCKET);
    let _ = std::fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock).with_context(|| format!("listen on `{}`", sock.display()))?;
    listener.set_nonblocking(true).context("set the listener non-blocking")?;
    nix::unistd::write(&ready, b"1").context("report ready")?;
    drop(ready);
    let mut d = Daemon { netns, upstream: host_resolver(), nets: HashMap::new(), next_link: 0 };
    let result = serve(&mut d, &listener, &paths);
    let names: Vec<String> = d.nets.keys().cloned().collect();
    for n in names {
        d.down(&n);
    }
    result
}

/// The poll loop: new connections, requests, DNS; returns when the last container left, with
/// the socket removed.
fn serve(d: &mut Daemon, listener: &UnixListener, paths: &Paths) -> Result<()> {
    let mut clients: Vec<(Channel, Option<Attachment>)> = Vec::new();
    let mut ever = false;
    let started = std::time::Instant::now();
    loop {
        // Done when the last connection closed, or when the one that started it never came.
        if clients.is_empty() && (ever || started.elapsed() > Duration::from_secs(30)) {
            // Under the lock a starter holds while it connects or spawns: either a connection
            // is already queued (serve it) or the socket goes before anyone can find it.
            let _lock = lock::exclusive(&paths.runroot.join("netd.lock"))?;
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    clients.push((Channel::from_fd(OwnedFd::from(stream)), None));
                }
                Err(_) => {
                    let _ = std::fs::remove_file(paths.runroot.join(SOCKET));
                    return Ok(());
                }
            }
        }
        let names: Vec<String> = d.nets.keys().cloned().collect();
        let (ready, dns_ready) = {
            let mut fds = vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)];
            fds.extend(clients.iter().map(|(c, _)| PollFd::new(c.as_fd(), PollFlags::POLLIN)));
            let mut dns_count = Vec::new();
            for n in &names {
                let f = d.nets[n].dns.fds();
                dns_count.push(f.len());
                fds.extend(f.into_iter().map(|fd| PollFd::new(fd, PollFlags::POLLIN)));
            }
            match poll(&mut fds, PollTimeout::from(1000u16)) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).context("poll"),
            }
            let r: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
            let mut at = 1 + clients.len();
            let mut dns_ready = Vec::new();
            for c in dns_count {
                dns_ready.push(r[at..at + c].iter().any(|x| *x));
                at += c;
            }
            (r, dns_ready)
        };
        for (n, ready) in names.iter().zip(&dns_ready) {
            let views = if *ready { views_on(d, &clients, n) } else { HashMap::new() };
            if let Some(net) = d.nets.get_mut(n) {
                let _ = net.dns.handle(&net.records, &views);
            }
        }
        let mut gone = Vec::new();
        let mut requests = Vec::new();
        for (i, (chan, _)) in clients.iter().enumerate() {
            if !ready[1 + i] {
                continue;
            }
            match chan.recv_json::<Request>() {
                Ok(Some((req, fds))) => requests.push((i, req, fds)),
                _ => gone.push(i),
            }
        }
        for (i, req, fds) in requests {
            let reply = handle(d, &mut clients, i, req, fds);
            let _ = clients[i].0.send_json(&reply, &[]);
        }
        for i in gone.into_iter().rev() {
            let (_, att) = clients.remove(i);
            if let Some(a) = att {
                d.detach(a);
            }
        }
        if ready[0] {
            while let Ok((stream, _)) = listener.accept() {
                let _ = stream.set_nonblocking(false);
                clients.push((Channel::from_fd(OwnedFd::from(stream)), None));
                ever = true;
            }
        }
    }
}

/// The names each container on network `n` that is on other networks too resolves: those of
/// all its networks (its address on `n` to the merged records).
fn views_on(d: &Daemon, clients: &[(Channel, Option<Attachment>)], n: &str) -> HashMap<Ipv4Addr, Records> {
    let mut views = HashMap::new();
    let Some(here) = d.nets.get(n) else { return views };
    for att in clients.iter().filter_map(|(_, a)| a.as_ref()).filter(|a| a.links.len() > 1) {
        let Some(mine) = att.links.iter().find(|l| l.network == n) else { continue };
        let mut seen = here.records.clone();
        for l in att.links.iter().filter(|l| l.network != n) {
            if let Some(other) = d.nets.get(&l.network) {
                seen.merge(&other.records);
            }
        }
        views.insert(mine.ip, seen);
    }
    views
}

/// One request of client `i`.
fn handle(
    d: &mut Daemon,
    clients: &mut [(Channel, Option<Attachment>)],
    i: usize,
    req: Request,
    fds: Vec<OwnedFd>,
) -> Reply {
    let failed = |e: anyhow::Error| Reply::Failed { message: format!("{e:#}") };
    match req {
        Request::Hello => Reply::Hello { pid: std::process::id() as i32 },
        Request::Attach { networks, id, names } => {
            let Some(ns) = fds.into_iter().next() else {
                return Reply::Failed { message: "attach: no network namespace was sent".into() };
            };
            match d.attach(&networks, &id, &names, ns) {
                Ok((a, addrs)) => {
                    if let Some(old) = clients[i].1.replace(a) {
                        d.detach(old);
                    }
                    Reply::Attached { addrs }
                }
                Err(e) => failed(e),
            }
        }
        Request::Connect { network, id, names } => match attachment(clients, &id) {
            Ok(att) => match d.link(att, &network, &names) {
                Ok(addr) => Reply::Attached { addrs: vec![addr] },
                Err(e) => failed(e),
            },
            Err(e) => failed(e),
        },
        Request::Disconnect { network, id } => {
            match attachment(clients, &id).and_then(|a| d.unlink_network(a, &network)) {
                Ok(()) => Reply::Detached,
                Err(e) => failed(e),
            }
        }
    }
}

/// The attachment of the running container `id`, held by its owner's connection.
fn attachment<'a>(clients: &'a mut [(Channel, Option<Attachment>)], id: &str) -> Result<&'a mut Attachment> {
    clients
        .iter_mut()
        .find_map(|(_, a)| a.as_mut().filter(|a| a.id == id))
        .with_context(|| format!("container `{}`: not attached to a user network", &id[..id.len().min(12)]))
}
