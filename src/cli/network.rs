//! `rl network create|ls|inspect|rm|prune|connect|disconnect`: user networks, whose containers
//! reach each other by name ([`crate::network::store`] keeps them; [`crate::network::netd`]
//! runs them).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::config::ContainerConfig;
use crate::network::store::{self, NetworkDef};
use crate::network::NetworkMode;
use crate::state::{self, Status};
use crate::store::Paths;

#[derive(Debug, Args)]
pub struct NetworkArgs {
    #[command(subcommand)]
    pub command: NetworkCommand,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network.
    Create {
        /// IPv4 subnet, e.g. 10.90.0.0/24 (default: the first free 10.89.K.0/24).
        #[arg(long)]
        subnet: Option<String>,
        /// The network's own address, where its DNS answers (default: the subnet's .1).
        #[arg(long)]
        gateway: Option<String>,
        /// No way out: containers on it reach only each other.
        #[arg(long)]
        internal: bool,
        /// Accepted for Docker compatibility (only `bridge`).
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        name: String,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        /// Only names.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Show networks as JSON.
    Inspect { names: Vec<String> },
    /// Remove networks no container uses.
    #[command(alias = "remove")]
    Rm { names: Vec<String> },
    /// Remove every network no container uses.
    Prune {
        /// Do not ask (rl never asks).
        #[arg(short, long)]
        force: bool,
    },
    /// Put a container on a network too (a running one on user networks at once).
    Connect {
        /// Another name for the container on this network.
        #[arg(long)]
        alias: Vec<String>,
        network: String,
        container: String,
    },
    /// Take a container off a network.
    Disconnect { network: String, container: String },
}

/// The containers whose config puts them on `net`.
fn users(paths: &Paths, net: &str) -> Vec<(ContainerConfig, Option<state::State>)> {
    state::list(paths)
        .into_iter()
        .filter(|(c, _)| matches!(&c.network.mode, NetworkMode::Bridge(n) if n.iter().any(|x| x == net)))
        .collect()
}

fn inspect_json(paths: &Paths, def: &NetworkDef) -> serde_json::Value {
    let mut containers = serde_json::Map::new();
    for (c, st) in users(paths, &def.name) {
        let running = st.as_ref().is_some_and(|s| s.status == Status::Running);
        let addr = st
            .as_ref()
            .and_then(|s| s.network.as_ref())
            .and_then(|n| n.networks.iter().find(|a| a.name == def.name))
            .filter(|_| running)
            .map(|a| format!("{}/{}", a.ip, def.prefix))
            .unwrap_or_default();
        containers.insert(c.id.clone(), json!({"Name": c.name, "IPv4Address": addr}));
    }
    json!({
        "Name": def.name,
        "Id": def.id,
        "Created": crate::monitor::log::rfc3339_nanos(def.created_ns),
        "Driver": "bridge",
        "Internal": def.internal,
        "IPAM": {"Driver": "default", "Config": [{"Subnet": def.cidr(), "Gateway": def.gateway.to_string()}]},
        "Options": {"com.docker.network.bridge.name": def.bridge(), "router": def.router().to_string()},
        "Containers": containers,
    })
}

/// `rl network …`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: NetworkArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    match args.command {
        NetworkCommand::Create { subnet, gateway, internal, driver, name } => {
            if driver != "bridge" {
                bail!("network driver `{driver}`: not supported (only bridge)");
            }
            let def = store::create(&paths, &name, subnet.as_deref(), gateway.as_deref(), internal)?;
            println!("{}", def.name);
        }
        NetworkCommand::Ls { quiet } => {
            let all = store::list(&paths)?;
            if !quiet {
                println!("{:<14}{:<24}{:<10}{:<20}INTERNAL", "NETWORK ID", "NAME", "DRIVER", "SUBNET");
            }
            for n in all {
                match quiet {
                    true => println!("{}", n.name),
                    false => {
                        println!("{:<14}{:<24}{:<10}{:<20}{}", &n.id[..12], n.name, "bridge", n.cidr(), n.internal)
                    }
                }
            }
        }
        NetworkCommand::Inspect { names } => {
            let mut out = Vec::new();
            let mut failed = false;
            for n in &names {
                match store::find(&paths, n) {
                    Ok(def) => out.push(inspect_json(&paths, &def)),
                    Err(e) => {
                        eprintln!("Error: {e:#}");
                        failed = true;
                    }
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            if failed {
                return Ok(crate::hint::EXIT_RL_FAILED);
            }
        }
        NetworkCommand::Rm { names } => {
            for n in &names {
                let def = store::find(&paths, n)?;
                if let Some((c, _)) = users(&paths, &def.name).first() {
                    return Err(crate::hint::with_fix(
                        format!("network `{}`: container `{}` is on it", def.name, c.name),
                        format!("remove the container first (`rl rm -f {}`) or disconnect it", c.name),
                    ));
                }
                store::remove(&paths, &def.name)?;
                println!("{}", def.name);
            }
        }
        NetworkCommand::Prune { force: _ } => {
            for def in store::list(&paths)? {
                if users(&paths, &def.name).is_empty() {
                    store::remove(&paths, &def.name)?;
                    println!("{}", def.name);
                }
            }
        }
        NetworkCommand::Connect { alias, network, container } => {
            let def = store::find(&paths, &network)?;
            state::update_config(&paths, &container, |cfg| {
                let running = running_on_user_networks(&paths, cfg, "connect")?;
                match &mut cfg.network.mode {
                    NetworkMode::Bridge(nets) if nets.contains(&def.name) => {
                        bail!("container `{}`: already on network `{}`", cfg.name, def.name)
                    }
                    NetworkMode::Bridge(nets) => nets.push(def.name.clone()),
                    NetworkMode::Slirp4netns(_) | NetworkMode::Pasta(_) => {
                        cfg.network.mode = NetworkMode::Bridge(vec![def.name.clone()])
                    }
                    other => bail!("container `{}`: network mode `{}` cannot join a network", cfg.name, other.name()),
                }
                if let Some(mut st) = running {
                    let conn = crate::network::netd::connect_running(&paths)?;
                    let addr = conn
                        .connect_running(&def, &cfg.id, alias.clone())
                        .with_context(|| format!("network connect `{}`", cfg.name))?;
                    let att = st.network.get_or_insert_with(Default::default);
                    att.networks.push(addr);
                    state::save(&paths, &cfg.id, &st)?;
                    follow_resolver(&paths, cfg, &st)?;
                }
                cfg.network.aliases.extend(alias);
                Ok(())
            })?;
        }
        NetworkCommand::Disconnect { network, container } => {
            let def = store::find(&paths, &network)?;
            state::update_config(&paths, &container, |cfg| {
                let running = running_on_user_networks(&paths, cfg, "disconnect")?;
                match &mut cfg.network.mode {
                    NetworkMode::Bridge(nets) if nets.contains(&def.name) => {
                        nets.retain(|n| *n != def.name);
                        if nets.is_empty() {
                            cfg.network.mode = NetworkMode::None;
                        }
                    }
                    _ => bail!("container `{}`: not on network `{}`", cfg.name, def.name),
                }
                if let Some(mut st) = running {
                    let conn = crate::network::netd::connect_running(&paths)?;
                    conn.disconnect_running(&def.name, &cfg.id)
                        .with_context(|| format!("network disconnect `{}`", cfg.name))?;
                    if let Some(att) = st.network.as_mut() {
                        att.networks.retain(|n| n.name != def.name);
                    }
                    state::save(&paths, &cfg.id, &st)?;
                    follow_resolver(&paths, cfg, &st)?;
                }
                Ok(())
            })?;
        }
    }
    Ok(0)
}

/// A running container's resolver is its first network's DNS responder: after a change of its
/// networks, its /etc/resolv.conf names the gateway of the first one it is still on.
fn follow_resolver(paths: &Paths, cfg: &ContainerConfig, st: &state::State) -> Result<()> {
    let first = st.network.as_ref().and_then(|a| a.networks.first());
    let resolver = first.map(|n| store::find(paths, &n.name)).transpose()?.map(|d| d.gateway);
    crate::network::wiring::write_user_net_resolv_conf(&cfg.dirs.run, &cfg.network, resolver)
}

/// A running container's state, if it runs; connecting or disconnecting a running container
/// works on user networks only (its network namespace is in the network daemon's), as with
/// Podman: other modes are refused, saying so.
fn running_on_user_networks(paths: &Paths, cfg: &ContainerConfig, verb: &str) -> Result<Option<state::State>> {
    let st = match state::load(paths, &cfg.id) {
        Ok(st) if st.running() => st,
        _ => return Ok(None),
    };
    let on_user_nets = st.network.as_ref().is_some_and(|a| !a.networks.is_empty());
    if !on_user_nets {
        return Err(crate::hint::with_fix(
            format!(
                "network {verb} `{}`: the container runs with network mode `{}`; only a container started on a user network can change networks while it runs",
                cfg.name,
                cfg.network.mode.name()
            ),
            format!("`rl stop {0}`, then {verb}, then `rl start {0}`", cfg.name),
        ));
    }
    Ok(Some(st))
}
