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

use std::collections::HashMap;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, CloneFlags};
use serde::{Deserialize, Serialize};

use super::dns::{Records, Responder};
use super::netlink::{mac_for, Netlink};
use super::store::NetworkDef;
use super::NetAddr;
use crate::sandbox::msg::Channel;
use crate::store::{lock, Paths};
use crate::sys;

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
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    Hello { pid: i32 },
    Attached { addrs: Vec<NetAddr> },
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
        match self.chan.recv_json::<Reply>()? {
            Some((Reply::Attached { addrs }, _)) => Ok(addrs),
            Some((Reply::Failed { message }, _)) => Err(anyhow!(message)),
            Some((other, _)) => bail!("the network daemon sent an unexpected {other:?}"),
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

/// One container's attachment: per network, its veth's host-side name and address.
struct Attachment {
    links: Vec<(String, String, Ipv4Addr)>,
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
        let mut child = super::wiring::spawn_helper(&mut cmd, &fds).context("start slirp4netns")?;
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

    fn attach(
        &mut self,
        networks: &[NetworkDef],
        id: &str,
        names: &[String],
        ctr: &OwnedFd,
    ) -> Result<(Attachment, Vec<NetAddr>)> {
        let mut att = Attachment { links: Vec::new() };
        let mut addrs = Vec::new();
        let mut routed = false;
        for (i, def) in networks.iter().enumerate() {
            let step = (|| -> Result<NetAddr> {
                self.up(def)?;
                let net = self.nets.get_mut(&def.name).context("network is up")?;
                let ip = (10..net.def.size() - 1)
                    .map(|n| net.def.host(n))
                    .find(|ip| !net.used.contains(ip))
                    .with_context(|| format!("network `{}`: no free address left", def.name))?;
                net.used.push(ip);
                self.next_link += 1;
                let host = format!("rlv{:08x}{:x}", std::process::id(), self.next_link);
                let inside = format!("eth{i}");
                att.links.push((def.name.clone(), host.clone(), ip));
                let bridge = def.bridge();
                let ctr_fd = ctr.as_fd();
                in_netns(self.netns.as_fd(), |nl| {
                    let h = nl.create_veth(&host, &inside, ctr_fd, MTU)?;
                    let br = nl.link_index(&bridge)?.with_context(|| format!("find `{bridge}`"))?;
                    nl.set_master(h, br)?;
                    nl.set_up(h)
                })?;
                let route = (!def.internal && !routed).then(|| def.router());
                routed |= route.is_some();
                let prefix = def.prefix;
                in_netns(ctr_fd, |nl| {
                    let e = nl.link_index(&inside)?.with_context(|| format!("find `{inside}`"))?;
                    nl.set_mac(e, mac_for(ip))?;
                    nl.add_address(e, ip, prefix)?;
                    nl.set_up(e)?;
                    match route {
                        Some(gw) => nl.add_default_route(gw),
                        None => Ok(()),
                    }
                })?;
                let mut all = names.to_vec();
                all.push(id[..12].to_string());
                net.records.insert(&all, ip);
                let mac = mac_for(ip).iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":");
                Ok(NetAddr { name: def.name.clone(), ip, prefix, gateway: (!def.internal).then(|| def.router()), mac })
            })();
            match step {
                Ok(a) => addrs.push(a),
                Err(e) => {
                    self.detach(att);
                    return Err(e.context(format!("attach to network `{}`", def.name)));
                }
            }
        }
        Ok((att, addrs))
    }

    fn detach(&mut self, att: Attachment) {
        for (name, host, ip) in att.links {
            let _ = in_netns(self.netns.as_fd(), |nl| match nl.link_index(&host)? {
                Some(i) => nl.delete_link(i),
                None => Ok(()),
            });
            let empty = match self.nets.get_mut(&name) {
                Some(net) => {
                    net.used.retain(|u| *u != ip);
                    net.records.remove_ip(ip);
                    net.used.is_empty()
                }
                None => false,
            };
            if empty {
                self.down(&name);
            }
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
        for (n, _) in names.iter().zip(&dns_ready) {
            if let Some(net) = d.nets.get_mut(n) {
                let _ = net.dns.handle(&net.records);
            }
        }
        let mut gone = Vec::new();
        for (i, (chan, att)) in clients.iter_mut().enumerate() {
            if !ready[1 + i] {
                continue;
            }
            match chan.recv_json::<Request>() {
                Ok(Some((Request::Hello, _))) => {
                    let _ = chan.send_json(&Reply::Hello { pid: std::process::id() as i32 }, &[]);
                }
                Ok(Some((Request::Attach { networks, id, names }, fds))) => {
                    let reply = match fds.first() {
                        None => Reply::Failed { message: "attach: no network namespace was sent".into() },
                        Some(ns) => match d.attach(&networks, &id, &names, ns) {
                            Ok((a, addrs)) => {
                                if let Some(old) = att.replace(a) {
                                    d.detach(old);
                                }
                                Reply::Attached { addrs }
                            }
                            Err(e) => Reply::Failed { message: format!("{e:#}") },
                        },
                    };
                    let _ = chan.send_json(&reply, &[]);
                }
                _ => gone.push(i),
            }
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
