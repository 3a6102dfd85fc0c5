//! `rl port CONTAINER [PRIVATE_PORT[/PROTO]]`: the host addresses a running container's ports
//! are published on, as its last start bound them (a host port of 0 became a free one).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::network::ports::Proto;
use crate::state::Status;
use crate::store::Paths;

#[derive(Debug, Args)]
pub struct PortArgs {
    pub container: String,
    /// Only this container port (`80` or `80/tcp`).
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    pub private: Option<String>,
}

/// `rl port`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: PortArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let (_, st) = crate::state::find(&paths, &args.container)?;
    let Some(st) = st else { return Ok(0) };
    let ports = match (&st.network, st.status) {
        (Some(n), Status::Running) => n.ports.clone(),
        _ => Vec::new(),
    };
    let Some(private) = &args.private else {
        for p in &ports {
            println!("{}/{} -> {}", p.container_port, p.proto, host(p));
        }
        return Ok(0);
    };
    let (num, proto) = private.split_once('/').unwrap_or((private, "tcp"));
    let proto = match proto {
        "tcp" => Proto::Tcp,
        "udp" => Proto::Udp,
        _ => bail!("port `{private}`: the protocol must be tcp or udp"),
    };
    let Ok(num) = num.parse::<u16>() else { bail!("port `{private}`: not a port number") };
    let found: Vec<_> = ports.iter().filter(|p| p.container_port == num && p.proto == proto).collect();
    if found.is_empty() {
        bail!("container `{}`: no public port `{num}/{proto}` published", args.container);
    }
    for p in found {
        println!("{}", host(p));
    }
    Ok(0)
}

/// `0.0.0.0:8080` (IPv6 in brackets).
fn host(p: &crate::network::ports::PortMapping) -> String {
    let side = p.host_side();
    side.rsplit_once('/').map_or(side.clone(), |(h, _)| h.to_string())
}
