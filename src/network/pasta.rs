//! pasta (from passt): connects the container's network namespace by translating its traffic to
//! the host's own sockets — faster than slirp4netns, and published ports keep the client's
//! address because pasta forwards them itself. The container gets a copy of the host's address
//! and routes.
//!
//! Started by the container's owner once the namespace exists, on the namespace fds as
//! `/proc/self/fd/N` paths; pasta runs in the foreground as the owner's child, so it ends when
//! the owner drops it (SIGTERM) or dies (its parent-death signal).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use super::ports::{PortMapping, Proto};
use super::wiring::Helper;
use crate::hint::Problem;

/// The address the container sends DNS queries to, which pasta forwards to the host's first
/// resolver (Podman uses the same link-local address).
pub const DNS_FORWARD: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// The host's IPv4 address, prefix length and gateway on the interface of its default route:
/// what pasta copies into the container.
pub fn host_address() -> Option<(IpAddr, u8, Option<IpAddr>)> {
    let routes = std::fs::read_to_string("/proc/net/route").ok()?;
    let (iface, gw) = routes.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[1] == "00000000").then(|| (f[0].to_string(), u32::from_str_radix(f[2], 16).ok()))
    })?;
    let gw = gw.filter(|g| *g != 0).map(|g| IpAddr::V4(Ipv4Addr::from(u32::from_be(g))));
    let addrs = nix::ifaddrs::getifaddrs().ok()?;
    for a in addrs {
        if a.interface_name != iface {
            continue;
        }
        let (Some(addr), Some(mask)) = (a.address, a.netmask) else { continue };
        let (Some(addr), Some(mask)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) else { continue };
        return Some((IpAddr::V4(addr.ip()), u32::from(mask.ip()).count_ones() as u8, gw));
    }
    None
}

/// pasta's `-t`/`-u` spec for one published port: `[ADDR/]HOSTPORT:CONTAINERPORT`.
fn forward_spec(p: &PortMapping) -> String {
    let addr = p.host_ip.map_or_else(String::new, |ip| format!("{ip}/"));
    format!("{addr}{}:{}", p.host_port, p.container_port)
}

/// Starts pasta on the network namespace `netns` (owned by `userns`), forwarding `ports`;
/// `args` are the user's extra pasta arguments (`--network pasta:ARG,…`).
pub fn start(
    args: &[String],
    ports: &[PortMapping],
    userns: BorrowedFd,
    netns: BorrowedFd,
    run_dir: &Path,
) -> Result<Helper> {
    let exe = crate::helper::find("pasta", Problem::NetworkHelperMissing)?;
    let log = run_dir.join("pasta.log");
    let (ready_r, ready_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create a pipe")?;
    let mut cmd = Command::new(&exe);
    cmd.arg("--config-net")
        .arg("--foreground")
        .arg("--quiet")
        .arg(format!("--log-file={}", log.display()))
        .arg(format!("--userns=/proc/self/fd/{}", userns.as_raw_fd()))
        .arg(format!("--netns=/proc/self/fd/{}", netns.as_raw_fd()))
        .arg(format!("--pid=/proc/self/fd/{}", ready_w.as_raw_fd()));
    // Nothing of the host's loopback reaches in, nor the container's ports out, unless asked.
    let user_says = |flag: &str| args.iter().any(|a| a == flag);
    for (flag, proto) in [("-t", Proto::Tcp), ("-u", Proto::Udp)] {
        let specs: Vec<String> = ports.iter().filter(|p| p.proto == proto).map(forward_spec).collect();
        if specs.is_empty() && !user_says(flag) {
            cmd.arg(flag).arg("none");
        }
        for s in specs {
            cmd.arg(flag).arg(s);
        }
    }
    for flag in ["-T", "-U"] {
        if !user_says(flag) {
            cmd.arg(flag).arg("none");
        }
    }
    if !user_says("--map-gw") {
        cmd.arg("--no-map-gw");
    }
    cmd.arg(format!("--dns-forward={DNS_FORWARD}"));
    cmd.args(args.iter().filter(|a| *a != "--map-gw"));
    let log_file = std::fs::File::create(&log).with_context(|| format!("create `{}`", log.display()))?;
    cmd.stdout(log_file.try_clone().context("dup the log")?).stderr(log_file);
    let inherit = [userns.as_raw_fd(), netns.as_raw_fd(), ready_w.as_raw_fd()];
    let child = super::wiring::spawn_helper(&mut cmd, &inherit).context("start pasta")?;
    drop(ready_w);
    // Its pid file is our pipe: pasta writes it once the namespace is configured.
    let mut helper = Helper::signalled("pasta", child, Some(ready_r), log);
    helper.holds_ports = !ports.is_empty();
    Ok(helper)
}
