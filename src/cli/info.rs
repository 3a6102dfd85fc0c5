//! `rl info`: what this host offers rootless containers — kernel, cgroup version, manager and
//! the controllers delegated to the user, subordinate ids, helpers — and where the store is.
//! Text like Podman's `info`, or `--format json`.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use crate::cgroup::Host;
use crate::store::Paths;

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// `json`, or a Go template over the JSON's top-level fields.
    #[arg(short, long)]
    pub format: Option<String>,
}

/// The cgroup part of `rl info`.
fn cgroup_json(host: &Host) -> Value {
    // Under a systemd user manager the delegated subtree is systemd's (`Delegate=`); elsewhere
    // rl manages the cgroupfs subtree an admin or a CI container handed over.
    let manager = match &host.delegated {
        Some(d) if d.path.contains("/user@") => "systemd (delegated subtree)",
        Some(_) => "cgroupfs (delegated subtree)",
        None => "none (not delegated: limits cannot be enforced)",
    };
    json!({
        "cgroupVersion": host.version.name(),
        "cgroupManager": manager,
        "cgroupPath": host.own.clone().unwrap_or_default(),
        "cgroupDelegated": host.delegated.as_ref().map(|d| d.path.clone()).unwrap_or_default(),
        "cgroupControllers": host.delegated.as_ref().map(|d| d.controllers.clone()).unwrap_or_default(),
    })
}

pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: InfoArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let host = Host::detect();
    let uname = nix::sys::utsname::uname().ok();
    let kernel = uname.map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    let user = nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten();
    let (name, uid) = user.map_or((String::new(), nix::unistd::getuid().as_raw()), |u| (u.name, u.uid.as_raw()));
    let ranges = |file: &str| {
        crate::userns::subid::lookup(std::path::Path::new(file), &name, uid)
            .unwrap_or_default()
            .iter()
            .map(|r| json!({"hostId": r.start, "size": r.count}))
            .collect::<Vec<_>>()
    };
    let tool = |t: &str| which::which(t).map(|p| p.display().to_string()).unwrap_or_default();
    let (containers, running) = {
        let all = crate::state::list(&paths);
        let running = all
            .iter()
            .filter(|(_, s)| s.as_ref().map(crate::lifecycle::effective).is_some_and(|s| s.running()))
            .count();
        (all.len(), running)
    };
    let mut host_json = cgroup_json(&host);
    host_json["kernel"] = json!(kernel);
    host_json["os"] = json!(os_name());
    host_json["rootless"] = json!(true);
    host_json["uidMap"] = json!(ranges("/etc/subuid"));
    host_json["gidMap"] = json!(ranges("/etc/subgid"));
    host_json["newuidmap"] = json!(tool("newuidmap"));
    host_json["slirp4netns"] = json!(tool("slirp4netns"));
    host_json["pasta"] = json!(tool("pasta"));
    host_json["fuseOverlayfs"] = json!(tool("fuse-overlayfs"));
    let v = json!({
        "host": host_json,
        "store": {
            "root": paths.root, "runRoot": paths.runroot,
            "containers": containers, "running": running,
        },
        "version": env!("CARGO_PKG_VERSION"),
    });
    match args.format.as_deref() {
        Some("json") => println!("{}", serde_json::to_string_pretty(&v)?),
        Some(t) => println!("{}", super::format::Template::parse(t)?.render(&v)?),
        None => print!("{}", text(&v)),
    }
    Ok(0)
}

/// PRETTY_NAME of /etc/os-release.
fn os_name() -> String {
    let text = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default()
}

/// The JSON as indented `key: value` lines, as Podman prints its info.
fn text(v: &Value) -> String {
    fn walk(v: &Value, indent: usize, out: &mut String) {
        if let Value::Object(map) = v {
            for (k, val) in map {
                let pad = " ".repeat(indent);
                match val {
                    Value::Object(_) => {
                        out.push_str(&format!("{pad}{k}:\n"));
                        walk(val, indent + 2, out);
                    }
                    Value::Array(a) => {
                        let items: Vec<String> = a
                            .iter()
                            .map(|x| match x {
                                Value::String(s) => s.clone(),
                                Value::Object(o) => o.values().map(|y| y.to_string()).collect::<Vec<_>>().join(":"),
                                other => other.to_string(),
                            })
                            .collect();
                        out.push_str(&format!("{pad}{k}: [{}]\n", items.join(", ")));
                    }
                    Value::String(s) => out.push_str(&format!("{pad}{k}: {s}\n")),
                    other => out.push_str(&format!("{pad}{k}: {other}\n")),
                }
            }
        }
    }
    let mut out = String::new();
    walk(v, 0, &mut out);
    out
}
