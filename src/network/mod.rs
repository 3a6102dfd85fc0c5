//! The container's network: what `--network`, `-p` and the DNS flags ask for ([`NetworkConfig`],
//! in the container's record), and the helpers that provide it while the container runs.
//!
//! The namespace holder brings loopback up as it creates the network namespace; `none` stops
//! there. `slirp4netns` and `pasta` are user-mode TCP/IP stacks started by the process that owns
//! the container (`rl run`, or a detached container's monitor) once the namespace exists, while
//! stage 1 mounts the rootfs; the init waits for them before it execs the payload. Published
//! ports are bound on the host by that owner (so a clash fails the start before anything runs)
//! and relayed by a forwarder process inside the container's network namespace
//! ([`proxy`]); pasta forwards them itself, keeping the client's address. `host` keeps the
//! user's own network namespace; `container:NAME` joins another container's.

pub mod dns;
pub mod etc;
pub mod forward;
pub mod netd;
pub mod netlink;
pub mod pasta;
pub mod ports;
pub mod proxy;
pub mod slirp;
pub mod store;
pub mod wiring;

use std::net::{IpAddr, Ipv4Addr};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::ContainerConfig;
use etc::DnsOptions;
use ports::PortMapping;

/// Everything about a container's network that its record keeps.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NetworkConfig {
    pub mode: NetworkMode,
    /// `-p`/`-P`, as asked (a host port of 0 is picked at each start).
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    #[serde(default)]
    pub dns: DnsOptions,
    /// `--add-host NAME:IP`, with `host-gateway` kept as written (resolved at start).
    #[serde(default)]
    pub add_hosts: Vec<(String, String)>,
    /// `--network-alias`: more names for the container on user networks.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// `--network`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    /// A private network namespace with only loopback.
    #[default]
    None,
    /// The user's own network namespace.
    Host,
    /// A private network namespace connected by slirp4netns.
    Slirp4netns(SlirpOptions),
    /// A private network namespace connected by pasta; the extra arguments go to pasta.
    Pasta(Vec<String>),
    /// The network namespace of another container (its id).
    Container(String),
    /// User networks (`rl network create`), by name: a veth on each one's bridge in the
    /// per-user network daemon's namespace.
    Bridge(Vec<String>),
}

/// `--network slirp4netns:OPT=VAL,…` (Podman's option names).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlirpOptions {
    /// The container may reach the host's loopback services through the gateway (10.0.2.2).
    pub allow_host_loopback: bool,
    pub enable_ipv6: bool,
    pub mtu: u32,
    /// The virtual network (default 10.0.2.0/24: gateway .2, DNS .3, container .100).
    pub cidr: Option<(Ipv4Addr, u8)>,
    /// Forward published ports through slirp4netns's own stack (its API socket) instead of
    /// rl's forwarder.
    pub slirp_port_handler: bool,
}

impl Default for SlirpOptions {
    fn default() -> Self {
        SlirpOptions {
            allow_host_loopback: false,
            enable_ipv6: true,
            mtu: 65520,
            cidr: None,
            slirp_port_handler: false,
        }
    }
}

impl SlirpOptions {
    /// The network, the container's address, the gateway (the host, from inside) and the DNS
    /// forwarder slirp4netns places in it.
    pub fn addresses(&self) -> (Ipv4Addr, u8, Ipv4Addr, Ipv4Addr, Ipv4Addr) {
        let (net, prefix) = self.cidr.unwrap_or((Ipv4Addr::new(10, 0, 2, 0), 24));
        let at = |n: u32| Ipv4Addr::from(u32::from(net) + n);
        (net, prefix, at(100), at(2), at(3))
    }

    fn parse(opts: &str) -> Result<SlirpOptions> {
        let mut o = SlirpOptions::default();
        for opt in opts.split(',').filter(|s| !s.is_empty()) {
            let (key, value) = opt.split_once('=').unwrap_or((opt, "true"));
            let flag = || match value {
                "true" => Ok(true),
                "false" => Ok(false),
                _ => bail!("network option `{opt}`: expected true or false"),
            };
            match key {
                "allow_host_loopback" => o.allow_host_loopback = flag()?,
                "enable_ipv6" => o.enable_ipv6 = flag()?,
                "mtu" => {
                    o.mtu = value.parse().ok().filter(|m| (1280..=65521).contains(m)).with_context(|| {
                        format!("network option `{opt}`: the MTU must be a number from 1280 to 65521")
                    })?
                }
                "cidr" => o.cidr = Some(parse_cidr(value).with_context(|| format!("network option `{opt}`"))?),
                "port_handler" => match value {
                    "rootlesskit" | "rl" => o.slirp_port_handler = false,
                    "slirp4netns" => o.slirp_port_handler = true,
                    _ => bail!("network option `{opt}`: expected rootlesskit or slirp4netns"),
                },
                "outbound_addr" | "outbound_addr6" => {
                    bail!("network option `{opt}`: not supported")
                }
                _ => bail!(
                    "network option `{opt}`: unknown (expected allow_host_loopback, enable_ipv6, mtu, cidr or port_handler)"
                ),
            }
        }
        Ok(o)
    }
}

/// `A.B.C.D/N` with room for slirp4netns's fixed hosts (.2, .3, .100).
fn parse_cidr(s: &str) -> Result<(Ipv4Addr, u8)> {
    let (addr, bits) = s.split_once('/').context("expected ADDRESS/PREFIX")?;
    let addr: Ipv4Addr = addr.parse().context("not an IPv4 address")?;
    let bits: u8 = bits.parse().ok().filter(|b| (1..=24).contains(b)).context("the prefix must be 1 to 24")?;
    let mask = u32::MAX << (32 - bits);
    Ok((Ipv4Addr::from(u32::from(addr) & mask), bits))
}

impl NetworkMode {
    /// Parses `--network`; `container:NAME` keeps the name for the caller to resolve.
    pub fn parse(s: &str) -> Result<NetworkMode> {
        let (kind, opts) = s.split_once(':').unwrap_or((s, ""));
        Ok(match kind {
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            "slirp4netns" => NetworkMode::Slirp4netns(SlirpOptions::parse(opts)?),
            "pasta" => NetworkMode::Pasta(opts.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect()),
            "container" if !opts.is_empty() => NetworkMode::Container(opts.to_string()),
            "container" => bail!("network `{s}`: expected container:NAME"),
            // Docker's default network name: user-mode networking here.
            "bridge" | "default" | "private" if opts.is_empty() => Self::host_default()?,
            _ if opts.is_empty() => NetworkMode::Bridge(vec![s.to_string()]),
            _ => bail!("network `{s}`: options are only for slirp4netns and pasta"),
        })
    }

    /// The default: slirp4netns where installed, else pasta, else loopback only (with a warning
    /// naming the package).
    pub fn host_default() -> Result<NetworkMode> {
        if which::which("slirp4netns").is_ok() {
            return Ok(NetworkMode::Slirp4netns(SlirpOptions::default()));
        }
        if which::which("pasta").is_ok() {
            return Ok(NetworkMode::Pasta(Vec::new()));
        }
        eprintln!("warning: neither slirp4netns nor pasta is installed: the container has only loopback");
        eprintln!("hint: {}", crate::hint::Problem::NetworkHelperMissing.hint());
        Ok(NetworkMode::None)
    }

    /// Docker's `HostConfig.NetworkMode` word for it.
    pub fn name(&self) -> String {
        match self {
            NetworkMode::None => "none".into(),
            NetworkMode::Host => "host".into(),
            NetworkMode::Slirp4netns(_) => "slirp4netns".into(),
            NetworkMode::Pasta(_) => "pasta".into(),
            NetworkMode::Container(id) => format!("container:{id}"),
            NetworkMode::Bridge(names) => names.first().cloned().unwrap_or_default(),
        }
    }

    /// Whether helper processes (slirp4netns, pasta, the port forwarder) serve the container,
    /// which its payload then waits for.
    pub fn has_helpers(&self) -> bool {
        matches!(self, NetworkMode::Slirp4netns(_) | NetworkMode::Pasta(_) | NetworkMode::Bridge(_))
    }

    /// Whether the container gets a network namespace of its own.
    pub fn own_namespace(&self) -> bool {
        !matches!(self, NetworkMode::Host | NetworkMode::Container(_))
    }
}

/// What the container's network looks like from inside while it runs (for `inspect`, `ps`,
/// `port`): filled at each start.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Attached {
    /// Published ports with the host ports really bound.
    pub ports: Vec<PortMapping>,
    pub ip: Option<IpAddr>,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    /// On user networks: the address on each.
    #[serde(default)]
    pub networks: Vec<NetAddr>,
}

/// A container's address on a user network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetAddr {
    pub name: String,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    /// Its router (slirp4netns on the network), unless the network is internal.
    pub gateway: Option<Ipv4Addr>,
    pub mac: String,
}

impl NetworkConfig {
    /// The addresses the container will have, as far as they are known before it starts.
    pub fn expected(&self) -> Attached {
        match &self.mode {
            NetworkMode::Slirp4netns(o) => {
                let (_, prefix, own, gw, _) = o.addresses();
                Attached { ip: Some(own.into()), prefix, gateway: Some(gw.into()), ..Default::default() }
            }
            NetworkMode::Pasta(_) => match pasta::host_address() {
                Some((ip, prefix, gw)) => Attached { ip: Some(ip), prefix, gateway: gw, ..Default::default() },
                None => Attached::default(),
            },
            _ => Attached::default(),
        }
    }

    /// See [`NetworkMode::has_helpers`].
    pub fn has_helpers(&self) -> bool {
        self.mode.has_helpers()
    }

    /// Resolves `--add-host` entries (`host-gateway`: the address that reaches the host).
    fn extra_hosts(&self) -> Result<Vec<(String, IpAddr)>> {
        let gateway = match &self.mode {
            NetworkMode::Slirp4netns(o) => Some(IpAddr::from(o.addresses().3)),
            NetworkMode::Pasta(_) => self.expected().gateway,
            NetworkMode::Host => Some(IpAddr::from(Ipv4Addr::LOCALHOST)),
            // Resolved once the network daemon gave the container its addresses.
            NetworkMode::Bridge(_) => Some(IpAddr::from(Ipv4Addr::UNSPECIFIED)),
            NetworkMode::None | NetworkMode::Container(_) => None,
        };
        let mut out = Vec::new();
        for (name, value) in &self.add_hosts {
            let ip = match value.as_str() {
                "host-gateway" => gateway.with_context(|| {
                    format!("add-host `{name}:host-gateway`: network `{}` has no way to the host", self.mode.name())
                })?,
                v => v.parse().with_context(|| format!("add-host `{name}:{v}`: not an IP address"))?,
            };
            out.push((name.clone(), ip));
        }
        Ok(out)
    }
}

/// Parses `--add-host NAME:IP` (IPv6 addresses contain colons: the name ends at the first).
pub fn parse_add_host(spec: &str) -> Result<(String, String)> {
    let (name, value) = spec.split_once([':', '=']).with_context(|| format!("add-host `{spec}`: expected NAME:IP"))?;
    let value = value.trim_start_matches('[').trim_end_matches(']');
    if name.is_empty() || value.is_empty() {
        bail!("add-host `{spec}`: expected NAME:IP");
    }
    if value != "host-gateway" && value.parse::<IpAddr>().is_err() {
        bail!("add-host `{spec}`: `{value}` is not an IP address (or host-gateway)");
    }
    Ok((name.to_string(), value.to_string()))
}

/// Configures the container's network namespace for `cfg`, from stage 1 (root of its user
/// namespace, in its network namespace; the holder brought loopback up and the helpers
/// configure their own interfaces): unprivileged ICMP sockets for the container's groups, so
/// `ping` works without CAP_NET_RAW, as in Docker and Podman. The range may only name gids
/// mapped in the namespace: from 0 to the highest one (only 0 with a single-id map, or the
/// user's own id with keep-id and no subordinate ids).
pub fn setup(cfg: &ContainerConfig) -> Result<()> {
    if !cfg.network.mode.own_namespace() {
        return Ok(());
    }
    let high = cfg.idmap.gid.iter().map(|m| m.inside.saturating_add(m.count.saturating_sub(1))).max();
    let low = cfg.idmap.gid.iter().map(|m| m.inside).min();
    let (Some(low), Some(high)) = (low, high) else { return Ok(()) };
    let path = "/proc/sys/net/ipv4/ping_group_range";
    // Best effort: a kernel without the sysctl, or one that refuses it, only loses `ping`.
    let _ = std::fs::write(path, format!("{low} {high}"));
    Ok(())
}

/// Writes the container's /etc/hostname, /etc/hosts and /etc/resolv.conf into its run dir; the
/// init bind-mounts them over the rootfs's own. `container:` mode copies the other container's
/// hosts and resolv.conf (it shares their network).
pub fn write_etc_files(cfg: &ContainerConfig) -> Result<()> {
    let dir = &cfg.dirs.run;
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("write `{}`", p.display()))
    };
    write("hostname", format!("{}\n", cfg.hostname))?;
    let net = &cfg.network;
    let expected = net.expected();
    let mut names = vec![cfg.name.as_str()];
    names.extend(net.aliases.iter().map(String::as_str));
    write("hosts", etc::hosts(&cfg.hostname, &names, expected.ip, &net.extra_hosts()?))?;
    let dns_proxy = match &net.mode {
        NetworkMode::Slirp4netns(o) => Some(IpAddr::from(o.addresses().4)),
        NetworkMode::Pasta(_) => Some(pasta::DNS_FORWARD.into()),
        // The host's own resolvers work from the host's network namespace.
        NetworkMode::Host => None,
        // Rewritten once the network daemon gave the container its addresses.
        NetworkMode::Bridge(_) => None,
        NetworkMode::None | NetworkMode::Container(_) => None,
    };
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let resolv = match net.mode {
        // The host's loopback resolvers answer in the host's network namespace.
        NetworkMode::Host if net.dns == DnsOptions::default() => host_resolv,
        _ => etc::resolv_conf(&host_resolv, &net.dns, dns_proxy),
    };
    write("resolv.conf", resolv)
}
