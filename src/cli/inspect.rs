//! `rl inspect NAME...` (and `rl container inspect`): a container's record as Docker shows it
//! (`Id`, `State`, `Config`, `HostConfig`, …), or an image's when no container has that name.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use crate::config::ContainerConfig;
use crate::monitor::log::rfc3339_nanos;
use crate::state::{State, Status};
use crate::store::Paths;

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Only containers (`container`) or only images (`image`).
    #[arg(long = "type", value_name = "TYPE")]
    pub kind: Option<String>,
    pub names: Vec<String>,
}

fn time(ns: Option<u128>) -> String {
    ns.map_or("0001-01-01T00:00:00Z".into(), rfc3339_nanos)
}

/// One container as `docker inspect` shows it.
pub fn container_json(paths: &Paths, cfg: &ContainerConfig, st: &State) -> Value {
    let st = crate::lifecycle::effective(st);
    let paused = crate::lifecycle::paused(&st);
    let status = match st.status {
        Status::Created => "created",
        Status::Running if paused => "paused",
        Status::Running => "running",
        Status::Exited => "exited",
    };
    let res = &cfg.resources;
    let (path, args) =
        cfg.process.args.split_first().map_or((String::new(), Vec::new()), |(p, a)| (p.clone(), a.to_vec()));
    let restart_max = match cfg.restart {
        crate::config::RestartPolicy::OnFailure { max: Some(n) } => n,
        _ => 0,
    };
    json!({
        "Id": cfg.id,
        "Created": rfc3339_nanos(cfg.created_ns),
        "Path": path,
        "Args": args,
        "State": {
            "Status": status,
            "Running": st.status == Status::Running,
            "Paused": paused,
            "Restarting": false,
            "OOMKilled": st.oom_killed,
            "CgroupPath": st.cgroup.clone().unwrap_or_default(),
            "Dead": false,
            "Pid": st.pid.unwrap_or(0),
            "MonitorPid": st.monitor_pid.filter(|_| st.status == Status::Running).unwrap_or(0),
            "ExitCode": st.exit_code.unwrap_or(0),
            "Error": st.error.clone().unwrap_or_default(),
            "StartedAt": time(st.started_ns),
            "FinishedAt": time(st.finished_ns),
            "Health": cfg.health.as_ref().map(|_| {
                serde_json::to_value(crate::monitor::health::load(&paths.container(&cfg.id)).unwrap_or_default())
                    .unwrap_or_default()
            }),
        },
        "Image": cfg.image.clone().unwrap_or_default(),
        "ImageName": cfg.rootfs_source,
        "Name": format!("/{}", cfg.name),
        "RestartCount": st.restart_count,
        "LogPath": crate::monitor::log::path(&paths.container(&cfg.id)),
        "HostConfig": {
            "RestartPolicy": {"Name": cfg.restart.name(), "MaximumRetryCount": restart_max},
            "LogConfig": {"Type": "k8s-file", "Config": {
                "max-size": cfg.log.max_size.map(|s| s.to_string()).unwrap_or_default(),
                "max-file": cfg.log.max_file.to_string(),
            }},
            "AutoRemove": cfg.remove,
            "ReadonlyRootfs": cfg.read_only,
            "Privileged": cfg.security.privileged,
            "NetworkMode": cfg.network.mode.name(),
            "PortBindings": port_map(&cfg.network.ports),
            "Dns": cfg.network.dns.servers,
            "DnsSearch": cfg.network.dns.search,
            "DnsOptions": cfg.network.dns.options,
            "ExtraHosts": cfg.network.add_hosts.iter().map(|(n, ip)| format!("{n}:{ip}")).collect::<Vec<_>>(),
            "Memory": res.memory.unwrap_or(0),
            "MemorySwap": res.memory_swap.unwrap_or(0),
            "MemoryReservation": res.memory_reservation.unwrap_or(0),
            "NanoCpus": res.nano_cpus.unwrap_or(0),
            "CpuShares": res.cpu_shares.unwrap_or(0),
            "CpuWeight": res.cpu_weight.unwrap_or(0),
            "CpusetCpus": res.cpuset_cpus.clone().unwrap_or_default(),
            "PidsLimit": res.pids_limit.unwrap_or(0),
            "BlkioWeight": res.blkio_weight.unwrap_or(0),
        },
        "NetworkSettings": network_settings(cfg, &st),
        "Config": {
            "Hostname": cfg.hostname,
            "User": cfg.process.user,
            "Env": cfg.process.env,
            "Cmd": cfg.process.args,
            "WorkingDir": cfg.process.cwd,
            "Tty": cfg.process.tty,
            "OpenStdin": cfg.process.stdin,
            "Image": cfg.rootfs_source,
            "StopSignal": cfg.stop_signal.clone().unwrap_or_else(|| "SIGTERM".into()),
            "ExposedPorts": cfg.network.ports.iter()
                .map(|p| (format!("{}/{}", p.container_port, p.proto), json!({})))
                .collect::<serde_json::Map<_, _>>(),
            "Healthcheck": cfg.health.as_ref().map(|h| json!({
                "Test": h.test, "Interval": h.interval_ns, "Timeout": h.timeout_ns,
                "Retries": h.retries, "StartPeriod": h.start_period_ns,
            })),
        },
        "Mounts": cfg.mounts.iter().map(|m| match m {
            crate::config::MountSpec::Bind { source, target, readonly } =>
                json!({"Type": "bind", "Source": source, "Destination": target, "RW": !readonly}),
            crate::config::MountSpec::Tmpfs { target, .. } => json!({"Type": "tmpfs", "Destination": target, "RW": true}),
        }).collect::<Vec<_>>(),
        "GraphDriver": {"Name": "overlay", "Data": {
            "UpperDir": cfg.dirs.upper, "WorkDir": cfg.dirs.work, "MergedDir": cfg.dirs.merged,
            "LowerDir": cfg.dirs.lower.iter().map(|l| l.display().to_string()).collect::<Vec<_>>().join(":"),
        }},
    })
}

/// Docker's port map: `"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]`.
fn port_map(ports: &[crate::network::ports::PortMapping]) -> Value {
    let mut map = serde_json::Map::new();
    for p in ports {
        let key = format!("{}/{}", p.container_port, p.proto);
        let host_ip = p.host_ip.map_or_else(|| "0.0.0.0".to_string(), |ip| ip.to_string());
        let port = if p.host_port == 0 { String::new() } else { p.host_port.to_string() };
        let entry = json!({"HostIp": host_ip, "HostPort": port});
        match map.get_mut(&key).and_then(Value::as_array_mut) {
            Some(list) => list.push(entry),
            None => {
                map.insert(key, json!([entry]));
            }
        }
    }
    Value::Object(map)
}

/// `NetworkSettings`: the addresses and published ports of the container's current run.
fn network_settings(cfg: &ContainerConfig, st: &State) -> Value {
    let running = st.status == Status::Running;
    let net = st.network.clone().filter(|_| running).unwrap_or_default();
    let ip = net.ip.map(|i| i.to_string()).unwrap_or_default();
    let gateway = net.gateway.map(|i| i.to_string()).unwrap_or_default();
    let mode = cfg.network.mode.name();
    let endpoint = json!({
        "IPAddress": ip, "IPPrefixLen": net.prefix, "Gateway": gateway,
        "Aliases": cfg.network.aliases,
    });
    // On user networks, one endpoint per network (as it is now: connect/disconnect change it).
    let mut networks = serde_json::Map::new();
    for n in &net.networks {
        let gateway = n.gateway.map(|g| g.to_string()).unwrap_or_default();
        let endpoint = json!({
            "IPAddress": n.ip.to_string(), "IPPrefixLen": n.prefix, "Gateway": gateway,
            "MacAddress": n.mac, "Aliases": cfg.network.aliases,
        });
        networks.insert(n.name.clone(), endpoint);
    }
    if networks.is_empty() {
        networks.insert(mode.to_string(), endpoint);
    }
    json!({
        "Ports": port_map(&net.ports),
        "IPAddress": ip,
        "IPPrefixLen": net.prefix,
        "Gateway": gateway,
        "Networks": networks,
    })
}

/// `rl inspect`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: InspectArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let mut out = Vec::new();
    let mut failed = false;
    for n in &args.names {
        let container = match args.kind.as_deref() {
            Some("image") => None,
            _ => crate::state::find(&paths, n).ok(),
        };
        let found = match container {
            Some((cfg, Some(st))) => Ok(container_json(&paths, &cfg, &st)),
            _ if args.kind.as_deref() == Some("container") => {
                Err(anyhow::anyhow!("container `{n}`: no such container"))
            }
            _ => super::image::lookup(&paths, n).and_then(|rec| {
                let tags = crate::store::images::tags(&paths)?;
                super::image::inspect_json(&paths, &rec, &crate::store::images::names_of(&tags, &rec.id))
            }),
        };
        match found {
            Ok(v) => out.push(v),
            Err(_) => {
                eprintln!("Error: `{n}`: no such container or image");
                failed = true;
            }
        }
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(if failed { crate::hint::EXIT_RL_FAILED } else { 0 })
}
