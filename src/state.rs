//! Containers as records on disk: `<root>/containers/<id>/config.json` (what to run, written
//! once) and `state.json` (status, pid, exit code, times — rewritten atomically), created and
//! removed under the store's containers lock so names stay unique. The writable layer sits
//! beside them (`upper/`, `work/`). Runtime-only files live under the run root, so after a
//! reboot a record whose process is gone reads as exited.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::ContainerConfig;
use crate::store::{lock, Paths};

/// Lifecycle status, as `ps` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Created,
    Running,
    Exited,
}

/// The mutable part of a container record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    /// Host pid of the container's PID 1 while running.
    pub pid: Option<i32>,
    pub exit_code: Option<i32>,
    /// Unix times in nanoseconds.
    pub created_ns: u128,
    pub started_ns: Option<u128>,
    pub finished_ns: Option<u128>,
    /// The process that watches the container (a detached container's monitor, or the `rl run`
    /// in the foreground) and its start time, so a recycled pid is never taken for it.
    #[serde(default)]
    pub monitor_pid: Option<i32>,
    #[serde(default)]
    pub monitor_start: Option<u64>,
    /// How often the restart policy has restarted it.
    #[serde(default)]
    pub restart_count: u32,
    /// Why it is not running when that is not its own exit (start failed, monitor gone).
    #[serde(default)]
    pub error: Option<String>,
    /// `rl stop`/`rl kill` ended it: no restart policy brings it back.
    #[serde(default)]
    pub stopped: bool,
    /// Its network as of its last start: addresses and the host ports really published.
    #[serde(default)]
    pub network: Option<crate::network::Attached>,
    /// Its cgroup v2 path (`/…/rl-ID`) while it runs in a leaf of its own.
    #[serde(default)]
    pub cgroup: Option<String>,
    /// The OOM killer killed a process of its last run.
    #[serde(default)]
    pub oom_killed: bool,
}

impl State {
    /// Whether it runs: recorded as running and its watcher still alive. A record whose watcher
    /// died (killed, or the host rebooted) is not running, whatever it says.
    pub fn running(&self) -> bool {
        self.status == Status::Running && self.watcher_alive()
    }

    /// Whether the recorded watcher process is alive (the same process, not a recycled pid).
    pub fn watcher_alive(&self) -> bool {
        match (self.monitor_pid, self.monitor_start) {
            (Some(pid), Some(start)) => runs(pid, start),
            _ => false,
        }
    }
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.
pub fn start_time(pid: i32) -> Option<u64> {
    proc_stat(pid).map(|(_, t)| t)
}

/// Whether process `pid`, started at `start`, still runs (not a zombie).
pub fn runs(pid: i32, start: u64) -> bool {
    proc_stat(pid).is_some_and(|(state, t)| state != 'Z' && t == start)
}

/// The state letter (`R`, `S`, `Z`, …) and start time of process `pid`.
fn proc_stat(pid: i32) -> Option<(char, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count from its closing one.
    let rest = &stat[stat.rfind(')')? + 2..];
    let state = rest.chars().next()?;
    Some((state, rest.split(' ').nth(19)?.parse().ok()?))
}

/// Nanoseconds since the epoch.
pub fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

/// A new random 64-hex-digit container id.
pub fn new_id() -> Result<String> {
    let mut bytes = [0u8; 32];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").context("open /dev/urandom")?, &mut bytes)
        .context("read /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A Docker-style `adjective_noun` name derived from the id.
pub fn generated_name(id: &str) -> String {
    const ADJ: [&str; 16] = [
        "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry", "nimble", "proud",
        "quiet", "sharp", "tender", "witty",
    ];
    const NOUN: [&str; 16] = [
        "turing", "hopper", "lovelace", "curie", "noether", "dijkstra", "knuth", "ritchie", "thompson", "torvalds",
        "shannon", "hamilton", "liskov", "lamport", "perlman", "wozniak",
    ];
    let n = u32::from_str_radix(id.get(..6).unwrap_or("0"), 16).unwrap_or(0) as usize;
    format!("{}_{}_{}", ADJ[n % 16], NOUN[(n / 16) % 16], id.get(..4).unwrap_or(""))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read(path).with_context(|| format!("read `{}`", path.display()))?;
    serde_json::from_slice(&text).with_context(|| format!("parse `{}`", path.display()))
}

/// Every container's config, in no particular order; unreadable records are skipped.
pub fn list(paths: &Paths) -> Vec<(ContainerConfig, Option<State>)> {
    let Ok(dir) = std::fs::read_dir(paths.containers()) else {
        return Vec::new();
    };
    dir.flatten()
        // `.rm-ID`: a container being removed.
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| {
            let cfg: ContainerConfig = read_json(&e.path().join("config.json")).ok()?;
            let id = e.file_name().to_string_lossy().into_owned();
            let state = load(paths, &id).ok();
            Some((cfg, state))
        })
        .collect()
}

/// The container a user named: by full id, unique id prefix, or name (as Docker resolves them:
/// an exact id or name first, then a prefix). Full ids and names are looked up directly; only
/// a prefix reads every record.
pub fn find(paths: &Paths, query: &str) -> Result<(ContainerConfig, Option<State>)> {
    if query.is_empty() {
        bail!("container name or id must not be empty");
    }
    let direct = match named(paths, query) {
        Some(id) => Some(id),
        None if query.len() == 64 => Some(query.to_string()),
        None => None,
    };
    if let Some(id) = direct {
        let dir = paths.container(&id);
        if let Ok(cfg) = read_json::<ContainerConfig>(&dir.join("config.json")) {
            if cfg.id == query || cfg.name == query {
                return Ok((cfg, load(paths, &id).ok()));
            }
        }
    }
    let all = list(paths);
    if let Some(hit) = all.iter().find(|(c, _)| c.id == query || c.name == query) {
        return Ok(hit.clone());
    }
    let by_prefix: Vec<_> = all.iter().filter(|(c, _)| c.id.starts_with(query)).collect();
    match by_prefix.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(crate::hint::with_fix(
            format!("container `{query}`: no such container"),
            "list containers with `rl ps -a`",
        )),
        more => bail!("container `{query}`: the id prefix is ambiguous ({} containers)", more.len()),
    }
}

/// The names index: `names/NAME` beside `containers/`, a symlink to the id. Creating the link is what
/// claims a name (atomically, under the containers lock), so a new record needs no scan of the
/// others. A link whose record is gone (a crash between the two) is stale and may be taken.
fn name_link(paths: &Paths, name: &str) -> std::path::PathBuf {
    paths.root.join("names").join(name)
}

/// The id the name index gives `name`, if any.
fn named(paths: &Paths, name: &str) -> Option<String> {
    if name.contains('/') || name.starts_with('.') {
        return None;
    }
    let target = std::fs::read_link(name_link(paths, name)).ok()?;
    Some(target.to_string_lossy().into_owned())
}

/// Claims `name` for `id` (the containers lock held); fails naming the holder if another live
/// record has it.
fn claim_name(paths: &Paths, name: &str, id: &str) -> Result<()> {
    let link = name_link(paths, name);
    crate::store::layout::private_dir(link.parent().unwrap_or(&link))?;
    loop {
        match std::os::unix::fs::symlink(id, &link) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let holder = named(paths, name).unwrap_or_default();
                let live = read_json::<ContainerConfig>(&paths.container(&holder).join("config.json"))
                    .is_ok_and(|c| c.name == name);
                if holder == id {
                    return Ok(());
                }
                if live {
                    bail!(
                        "container name `{name}`: already in use by container {}; remove it or choose another --name",
                        &holder[..12.min(holder.len())]
                    );
                }
                std::fs::remove_file(&link).with_context(|| format!("remove stale `{}`", link.display()))?;
            }
            Err(e) => return Err(e).with_context(|| format!("create `{}`", link.display())),
        }
    }
}

/// Gives up `name` if `id` holds it (its record is removed).
pub fn release_name(paths: &Paths, name: &str, id: &str) {
    if named(paths, name).as_deref() == Some(id) {
        let _ = std::fs::remove_file(name_link(paths, name));
    }
}

/// Changes a container's config with `change`, under the containers lock.
pub fn update_config(
    paths: &Paths,
    query: &str,
    change: impl FnOnce(&mut ContainerConfig) -> Result<()>,
) -> Result<()> {
    let _lock = lock::exclusive(&paths.containers_lock())?;
    let (mut cfg, _) = find(paths, query)?;
    change(&mut cfg)?;
    let json = serde_json::to_vec_pretty(&cfg).context("encode config")?;
    lock::write_atomic(&paths.container(&cfg.id).join("config.json"), &json)
}

/// Gives a container a new name (unique among the user's containers).
pub fn rename(paths: &Paths, query: &str, new: &str) -> Result<()> {
    if new.is_empty() || !new.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        bail!("container name `{new}`: only letters, digits, `_`, `.` and `-` are allowed");
    }
    let _lock = lock::exclusive(&paths.containers_lock())?;
    let (mut cfg, _) = find(paths, query)?;
    claim_name(paths, new, &cfg.id)?;
    let old = std::mem::replace(&mut cfg.name, new.to_string());
    let json = serde_json::to_vec_pretty(&cfg).context("encode config")?;
    if let Err(e) = lock::write_atomic(&paths.container(&cfg.id).join("config.json"), &json) {
        release_name(paths, new, &cfg.id);
        return Err(e);
    }
    if old != new {
        release_name(paths, &old, &cfg.id);
    }
    Ok(())
}

/// Creates the record of `cfg` (its dir, config and a `created` state), refusing a taken name.
/// Durable unless `--rm` (a record that dies with its process).
pub fn create(paths: &Paths, cfg: &ContainerConfig) -> Result<()> {
    create_as(paths, cfg, !cfg.remove)
}

/// [`create`], leaving the fsync to [`sync_record`] when not `durable`: `run -d` syncs while
/// the monitor starts the container, off the start's critical path.
pub fn create_as(paths: &Paths, cfg: &ContainerConfig, durable: bool) -> Result<()> {
    crate::store::layout::private_dir(&paths.containers())?;
    let _lock = lock::exclusive(&paths.containers_lock())?;
    claim_name(paths, &cfg.name, &cfg.id)?;
    let written = write_record(paths, cfg, durable);
    if written.is_err() {
        let _ = std::fs::remove_dir_all(paths.container(&cfg.id));
        release_name(paths, &cfg.name, &cfg.id);
    }
    written
}

/// Flushes a record written without fsync to disk.
pub fn sync_record(paths: &Paths, id: &str) -> Result<()> {
    for name in ["config.json", "state.json"] {
        let p = paths.container(id).join(name);
        std::fs::File::open(&p).and_then(|f| f.sync_all()).with_context(|| format!("sync `{}`", p.display()))?;
    }
    Ok(())
}

fn write_record(paths: &Paths, cfg: &ContainerConfig, durable: bool) -> Result<()> {
    let dir = paths.container(&cfg.id);
    std::fs::create_dir(&dir).with_context(|| format!("create `{}`", dir.display()))?;
    let json = serde_json::to_vec_pretty(cfg).context("encode config")?;
    lock::write_replace(&dir.join("config.json"), &json, durable)?;
    let state = State {
        status: Status::Created,
        pid: None,
        exit_code: None,
        created_ns: now_ns(),
        started_ns: None,
        finished_ns: None,
        monitor_pid: None,
        monitor_start: None,
        restart_count: 0,
        error: None,
        stopped: false,
        network: None,
        cgroup: None,
        oom_killed: false,
    };
    let json = serde_json::to_vec_pretty(&state).context("encode state")?;
    lock::write_replace(&dir.join("state.json"), &json, durable)
}

/// Reads a container's state: the record's, or the runtime one a running container's monitor
/// wrote since ([`save_running`]).
pub fn load(paths: &Paths, id: &str) -> Result<State> {
    let stored: State = read_json(&paths.container(id).join("state.json"))?;
    match read_json::<State>(&runtime_file(paths, id)) {
        Ok(live) if is_newer(&live, &stored) => Ok(live),
        _ => Ok(stored),
    }
}

/// Whether a runtime state describes a start after everything the record knows: anything
/// written to the record since (the exit, a stop request) wins over it.
fn is_newer(live: &State, stored: &State) -> bool {
    let started = live.started_ns.unwrap_or(0);
    started > stored.started_ns.unwrap_or(0) && started > stored.finished_ns.unwrap_or(0)
}

/// Where a running container's state is kept: in its runtime dir, on the run root's tmpfs. A
/// start is written there, not to the store (an fsync-free tmpfs write on every detached
/// start's path), and after a reboot it is gone with the processes it described.
fn runtime_file(paths: &Paths, id: &str) -> std::path::PathBuf {
    paths.container_run(id).join("state.json")
}

/// Records that the container runs ([`load`] prefers it until the record says otherwise).
pub fn save_running(paths: &Paths, id: &str, state: &State) -> Result<()> {
    let json = serde_json::to_vec_pretty(state).context("encode state")?;
    lock::write_replace(&runtime_file(paths, id), &json, false)
}

/// Rewrites a container's state atomically.
pub fn save(paths: &Paths, id: &str, state: &State) -> Result<()> {
    save_as(paths, id, state, true)
}

/// [`save`]; without `durable`, no fsync (a state that means nothing after a crash).
pub fn save_as(paths: &Paths, id: &str, state: &State, durable: bool) -> Result<()> {
    let json = serde_json::to_vec_pretty(state).context("encode state")?;
    lock::write_replace(&paths.container(id).join("state.json"), &json, durable)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_unique_names() {
        let base = std::env::temp_dir().join(format!("rl-state-{}", std::process::id()));
        let paths = Paths::resolve(Some(base.join("s")), Some(base.join("r"))).unwrap();
        let id = new_id().unwrap();
        assert_eq!(id.len(), 64);
        let cfg = ContainerConfig { id: id.clone(), name: generated_name(&id), ..Default::default() };
        create(&paths, &cfg).unwrap();
        let dup = ContainerConfig { id: new_id().unwrap(), ..cfg.clone() };
        assert!(create(&paths, &dup).unwrap_err().to_string().contains("already in use"));
        let mut st = load(&paths, &id).unwrap();
        assert_eq!(st.status, Status::Created);
        st.status = Status::Exited;
        st.exit_code = Some(3);
        save(&paths, &id, &st).unwrap();
        let all = list(&paths);
        assert_eq!(all.len(), 1);
        assert_eq!(find(&paths, &id[..6]).unwrap().0.id, id);
        assert_eq!(find(&paths, &cfg.name).unwrap().0.id, id);
        assert!(find(&paths, "zzz").unwrap_err().to_string().contains("no such container"));
        assert_eq!(all[0].1.as_ref().unwrap().exit_code, Some(3));
        // A rename frees the old name and claims the new one; a name whose record vanished
        // (a crash between link and record) is taken over.
        rename(&paths, &cfg.name, "renamed").unwrap();
        assert_eq!(find(&paths, "renamed").unwrap().0.id, id);
        assert!(find(&paths, &cfg.name).is_err());
        let reuse = ContainerConfig { id: new_id().unwrap(), ..cfg.clone() };
        create(&paths, &reuse).unwrap();
        let clash = ContainerConfig { id: new_id().unwrap(), name: "renamed".into(), ..cfg.clone() };
        assert!(create(&paths, &clash).unwrap_err().to_string().contains("already in use"));
        std::fs::remove_dir_all(paths.container(&id)).unwrap();
        create(&paths, &clash).unwrap();
        assert_eq!(find(&paths, "renamed").unwrap().0.id, clash.id);
        std::fs::remove_dir_all(&base).unwrap();
    }
}
