//! The container's network. The namespace holder brings loopback up as it creates the network
//! namespace; with `--network none` that is all. slirp4netns, pasta and user networks come next.

use anyhow::{Context, Result};

use crate::config::{ContainerConfig, NetworkMode};

/// Configures the container's network namespace for `cfg`, from stage 1.
pub fn setup(cfg: &ContainerConfig) -> Result<()> {
    match cfg.network {
        NetworkMode::None => Ok(()),
    }
}

/// Writes the container's /etc/hostname, /etc/hosts and /etc/resolv.conf into its run dir; the
/// init bind-mounts them over the rootfs's own.
pub fn write_etc_files(cfg: &ContainerConfig) -> Result<()> {
    let dir = &cfg.dirs.run;
    let write = |name: &str, text: String| {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("write `{}`", p.display()))
    };
    write("hostname", format!("{}\n", cfg.hostname))?;
    write("hosts", hosts(&cfg.hostname, &cfg.name))?;
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    write("resolv.conf", host_resolv)
}

/// The container's /etc/hosts: loopback names and its own hostname and name.
pub fn hosts(hostname: &str, name: &str) -> String {
    let own = if hostname == name { hostname.to_string() } else { format!("{hostname} {name}") };
    format!("127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{own}\n")
}
