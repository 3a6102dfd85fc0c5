//! The network flags of `rl run` and `rl create` (`--network`, `-p`, `-P`, `--dns*`,
//! `--add-host`, `--network-alias`), turned into the container's [`NetworkConfig`].

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::hint::{hinted, Problem};
use crate::network::etc::DnsOptions;
use crate::network::{ports, NetworkConfig, NetworkMode};
use crate::state;
use crate::store::Paths;

#[derive(Debug, Args, Default, Clone)]
pub struct NetFlags {
    /// Network: slirp4netns[:OPTIONS] (the default where installed), pasta[:ARGS], none, host,
    /// container:NAME, or a user network's name (`rl network create`).
    #[arg(long, alias = "net", value_name = "MODE")]
    pub network: Option<String>,
    /// Publish a container port on the host: [IP:][HOSTPORT:]CONTAINERPORT[/tcp|/udp].
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    pub publish: Vec<String>,
    /// Publish every port the image exposes, on free host ports.
    #[arg(short = 'P', long)]
    pub publish_all: bool,
    /// DNS server for the container (instead of the host's).
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// DNS search domain (`.` for none).
    #[arg(long, value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// resolv.conf option (e.g. ndots:2).
    #[arg(long, alias = "dns-opt", value_name = "OPTION")]
    pub dns_option: Vec<String>,
    /// Add NAME:IP (or NAME:host-gateway) to /etc/hosts.
    #[arg(long, value_name = "NAME:IP")]
    pub add_host: Vec<String>,
    /// Another name for the container on its networks.
    #[arg(long, value_name = "NAME")]
    pub network_alias: Vec<String>,
}

/// The container's network from the flags and the image's EXPOSE list.
pub fn build(paths: &Paths, flags: &NetFlags, expose: &[String]) -> Result<NetworkConfig> {
    let mode = match flags.network.as_deref() {
        None => NetworkMode::host_default()?,
        Some(s) => match NetworkMode::parse(s)? {
            NetworkMode::Container(name) => {
                let (peer, _) = state::find(paths, &name).with_context(|| format!("network `{s}`"))?;
                NetworkMode::Container(peer.id)
            }
            m => m,
        },
    };
    let helper = match &mode {
        NetworkMode::Slirp4netns(_) => Some("slirp4netns"),
        NetworkMode::Pasta(_) => Some("pasta"),
        _ => None,
    };
    if let Some(h) = helper {
        crate::helper::find(h, Problem::NetworkHelperMissing)
            .map_err(|_| hinted(Problem::NetworkHelperMissing, format!("network `{h}`: `{h}` is not installed")))?;
    }
    let mut ports = Vec::new();
    for p in &flags.publish {
        ports.extend(ports::parse(p)?);
    }
    if flags.publish_all {
        let asked: Vec<(u16, ports::Proto)> = ports.iter().map(|p| (p.container_port, p.proto)).collect();
        for p in ports::from_expose(expose)? {
            if !asked.contains(&(p.container_port, p.proto)) {
                ports.push(p);
            }
        }
    }
    if let NetworkMode::Bridge(names) = &mode {
        for n in names {
            crate::network::store::find(paths, n)?;
        }
    }
    if !ports.is_empty() && !mode.has_helpers() {
        bail!("publish port {}: network `{}` cannot publish ports (use slirp4netns or pasta)", ports[0], mode.name());
    }
    check_privileged_ports(&ports)?;
    let mut dns =
        DnsOptions { search: flags.dns_search.clone(), options: flags.dns_option.clone(), ..Default::default() };
    for d in &flags.dns {
        dns.servers.push(d.parse().with_context(|| format!("dns `{d}`: not an IP address"))?);
    }
    let add_hosts = flags.add_host.iter().map(|h| crate::network::parse_add_host(h)).collect::<Result<_>>()?;
    if matches!(mode, NetworkMode::Container(_)) && (!flags.dns.is_empty() || !flags.add_host.is_empty()) {
        bail!("network `container:…`: --dns and --add-host belong to the container whose network is shared");
    }
    Ok(NetworkConfig { mode, ports, dns, add_hosts, aliases: flags.network_alias.clone() })
}

/// Host ports below `net.ipv4.ip_unprivileged_port_start` are the administrator's: say so
/// before anything is created.
fn check_privileged_ports(ports: &[ports::PortMapping]) -> Result<()> {
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    if let Some(p) = ports.iter().find(|p| p.host_port != 0 && p.host_port < start) {
        return Err(hinted(
            Problem::PrivilegedPort,
            format!(
                "publish port {p}: host port {} is below net.ipv4.ip_unprivileged_port_start ({start}), \
                 which only root may bind",
                p.host_port
            ),
        ));
    }
    Ok(())
}
