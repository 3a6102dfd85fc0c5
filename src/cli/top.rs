//! `rl top CONTAINER`: what runs in a container (its processes, found by their pid namespace,
//! as the host sees them and as the container numbers them).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::store::Paths;

#[derive(Debug, Args)]
pub struct TopArgs {
    pub container: String,
}

/// `/proc/PID/status` field `key`.
fn status_field(pid: i32, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(|v| v.trim().to_string()))
}

/// Maps a host id back through a container's `uid_map` (`inside outside count` lines).
fn inside_id(map: &str, host: u64) -> Option<u64> {
    map.lines().find_map(|l| {
        let v: Vec<u64> = l.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        match v.as_slice() {
            [inside, outside, count] if host >= *outside && host < outside + count => Some(inside + (host - outside)),
            _ => None,
        }
    })
}

/// `rl top`.
pub fn top(root: Option<PathBuf>, runroot: Option<PathBuf>, args: TopArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let (_, st) = crate::state::find(&paths, &args.container)?;
    let Some(pid) = st.filter(|s| s.running()).and_then(|s| s.pid) else {
        bail!("container `{}`: not running", args.container);
    };
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/pid"))?;
    let uid_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap_or_default();
    println!("{:<8} {:<8} {:<8} {:<8} COMMAND", "UID", "PID", "PPID", "HOSTPID");
    let mut pids: Vec<i32> = std::fs::read_dir("/proc")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|p: &i32| std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|n| n == ns))
        .collect();
    pids.sort_unstable();
    for p in pids {
        // NSpid: the pid in every namespace from the host's down; the last is the container's.
        let inner = status_field(p, "NSpid").and_then(|v| v.split_whitespace().last().map(str::to_string));
        let ppid = status_field(p, "PPid").and_then(|host| {
            status_field(host.parse().ok()?, "NSpid").and_then(|v| v.split_whitespace().last().map(str::to_string))
        });
        let uid = status_field(p, "Uid")
            .and_then(|u| u.split_whitespace().next()?.parse().ok())
            .and_then(|h| inside_id(&uid_map, h))
            .map_or("?".to_string(), |u| u.to_string());
        let cmd = std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default();
        let cmd: Vec<String> =
            cmd.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        println!(
            "{:<8} {:<8} {:<8} {:<8} {}",
            uid,
            inner.unwrap_or_default(),
            ppid.unwrap_or_else(|| "0".into()),
            p,
            cmd.join(" ")
        );
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_map_back_into_the_container() {
        let map = "         0       1001          1\n         1     200000      65536\n";
        assert_eq!(super::inside_id(map, 1001), Some(0));
        assert_eq!(super::inside_id(map, 200999), Some(1000));
        assert_eq!(super::inside_id(map, 5), None);
    }
}
