//! Resource limits through cgroup v2, for a user who owns a cgroup subtree: what the host offers
//! ([`Host::detect`]: version, the user's own cgroup, the delegated subtree and its controllers),
//! and each container's own leaf ([`Leaf`]) with its limits.
//!
//! Where it sits: the `rl` process (or a detached container's monitor) creates the leaf and
//! writes the limits before stage 1 starts ([`for_start`]); the container's init moves itself
//! into it ([`join`]) right after it is forked and before anything of the payload runs, then
//! unshares its cgroup namespace there, so the container sees its leaf as `/sys/fs/cgroup`'s root
//! and every process it ever forks is counted. `rl exec` moves its stage 1 into the leaf before
//! it forks the command (that stage 1 counts, as the exec'd process's parent). The watcher
//! removes the leaf after the container (reading its OOM count first). The container's stage 1
//! and the monitor stay outside the leaf: they count neither against the container's pids nor
//! its memory, as conmon stays outside Podman's.
//!
//! Delegation, as systemd's `Delegate=` does it: the user owns a cgroup directory and its
//! `cgroup.procs`, `cgroup.subtree_control` and `cgroup.threads`. rl walks up from its own cgroup
//! while it owns them; the topmost is the delegated root. Its `cgroup.controllers` are what can
//! be given to containers; rl enables them in its `cgroup.subtree_control` and puts the leaves
//! beside its own cgroup, as `rl-ID`. A cgroup with processes cannot give controllers to its
//! children (the "no internal processes" rule), so a delegated root that holds processes is an
//! error with the fix — unless rl is alone in it ([`settle`]). In a login session's scope, which
//! the user does not own, `rl run` with limits asks the user's systemd for a delegated scope
//! ([`systemd`]). Without delegation (cgroup v1, or hybrid mode like this CI host's, whose v2
//! hierarchy has no controllers) containers run in rl's own cgroup and a run that asks for a
//! limit fails with what is missing, unless `--ignore-limits`.

pub mod limits;
pub mod stats;
pub mod systemd;

use std::io::{Read, Seek, Write as _};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::{access, AccessFlags};

use crate::hint::{hinted, Problem};
pub use limits::Resources;

/// Where cgroup hierarchies are mounted.
const SYS_FS_CGROUP: &str = "/sys/fs/cgroup";
/// The controllers rl gives containers when the host delegates them.
pub const CONTROLLERS: [&str; 5] = ["cpuset", "cpu", "io", "memory", "pids"];

/// The cgroup layout of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Version {
    /// Pure cgroup v2 (the unified hierarchy on /sys/fs/cgroup).
    V2,
    /// cgroup v1 controllers with a v2 hierarchy beside them (/sys/fs/cgroup/unified) that has
    /// no controllers.
    Hybrid,
    /// cgroup v1 only.
    V1,
    /// No cgroup filesystem mounted.
    None,
}

impl Version {
    /// As `rl info` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Version::V2 => "v2",
            Version::Hybrid => "hybrid",
            Version::V1 => "v1",
            Version::None => "none",
        }
    }
}

/// What the host offers this user.
#[derive(Debug, Clone)]
pub struct Host {
    pub version: Version,
    /// Where the v2 hierarchy is mounted, if there is one.
    pub mount: Option<PathBuf>,
    /// rl's own cgroup, relative to the v2 root (`/user.slice/…`).
    pub own: Option<String>,
    /// The subtree delegated to the user, if any.
    pub delegated: Option<Delegated>,
}

/// A cgroup subtree the user owns.
#[derive(Debug, Clone)]
pub struct Delegated {
    /// Its root, relative to the v2 root.
    pub path: String,
    /// The controllers its children can have (its `cgroup.controllers`).
    pub controllers: Vec<String>,
    /// It holds processes itself, so it cannot give controllers to children.
    pub busy: bool,
}

/// Whether `path` is of filesystem type cgroup2.
fn is_cgroup2(path: &str) -> bool {
    nix::sys::statfs::statfs(path).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
}

/// Whether the host runs pure cgroup v2 (the unified hierarchy on /sys/fs/cgroup).
pub fn unified() -> bool {
    is_cgroup2(SYS_FS_CGROUP)
}

/// The v2 path of process `pid` ("self" for this one): the `0::` line of /proc/PID/cgroup.
pub fn cgroup_of(pid: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_string)
}

/// Whether this user may manage the cgroup `dir` as its delegate: its directory and the files
/// systemd hands over with `Delegate=` are writable.
fn owned(dir: &Path) -> bool {
    ["", "cgroup.procs", "cgroup.subtree_control"].iter().all(|f| access(&dir.join(f), AccessFlags::W_OK).is_ok())
}

/// Reads a one-line cgroup file as words.
fn words(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().split_whitespace().map(str::to_string).collect()
}

impl Host {
    /// Looks at the host: statfs on the mount points, /proc/self/cgroup, and `access` on the
    /// cgroups above rl's own.
    pub fn detect() -> Host {
        let unified = format!("{SYS_FS_CGROUP}/unified");
        let (version, mount) = if is_cgroup2(SYS_FS_CGROUP) {
            (Version::V2, Some(PathBuf::from(SYS_FS_CGROUP)))
        } else if is_cgroup2(&unified) {
            (Version::Hybrid, Some(PathBuf::from(unified)))
        } else if Path::new(SYS_FS_CGROUP).join("memory").is_dir() || Path::new(SYS_FS_CGROUP).join("pids").is_dir() {
            (Version::V1, None)
        } else {
            (Version::None, None)
        };
        let own = mount.as_ref().and_then(|_| cgroup_of("self"));
        let delegated = match (&mount, &own) {
            (Some(m), Some(o)) => delegated_root(m, o),
            _ => None,
        };
        Host { version, mount, own, delegated }
    }

    /// An absolute path of the cgroup `rel` (a v2 path such as `/rl/rl-ID`).
    pub fn path(&self, rel: &str) -> Option<PathBuf> {
        self.mount.as_ref().map(|m| m.join(rel.trim_start_matches('/')))
    }

    /// Whether the limits `res` can be enforced here: the error says what is missing and how to
    /// get it.
    pub fn check(&self, res: &Resources) -> Result<()> {
        let needed = res.controllers();
        let Some(&(_, flag)) = needed.first() else { return Ok(()) };
        let own = self.own.as_deref().unwrap_or("?");
        match self.version {
            Version::V2 => {}
            Version::Hybrid => {
                return Err(hinted(
                    Problem::CgroupV1,
                    format!(
                        "{flag}: limits need cgroup v2, and this host mounts it in hybrid mode, without controllers"
                    ),
                ))
            }
            Version::V1 | Version::None => {
                return Err(hinted(
                    Problem::CgroupV1,
                    format!("{flag}: limits need cgroup v2, and this host has only v1"),
                ))
            }
        }
        let Some(d) = &self.delegated else {
            return Err(hinted(
                Problem::CgroupNotDelegated,
                format!("{flag}: your cgroup `{own}` is not delegated to you (you cannot create cgroups under it)"),
            ));
        };
        if d.busy {
            return Err(hinted(
                Problem::CgroupBusy,
                format!(
                    "{flag}: your delegated cgroup `{}` holds processes, so it cannot give controllers to containers",
                    d.path
                ),
            ));
        }
        for (ctl, flag) in needed {
            if !d.controllers.iter().any(|c| c == ctl) {
                let have = if d.controllers.is_empty() { "none".to_string() } else { d.controllers.join(" ") };
                return Err(hinted(
                    Problem::CgroupNotDelegated,
                    format!(
                        "{flag}: the {ctl} controller is not delegated to your cgroup `{}` (delegated: {have})",
                        d.path
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// One cgroup on the way up from rl's own: its v2 path, whether this user may manage it, and
/// whether systemd marked it delegated.
struct Level {
    rel: String,
    owned: bool,
    marked: bool,
}

/// Whether systemd (≥ 251) marked the cgroup `dir` as delegated: `user.delegate=1`, which an
/// unprivileged reader can see (`trusted.delegate` needs CAP_SYS_ADMIN to read).
fn marked(dir: &Path) -> bool {
    crate::sys::lget_xattr(dir, "user.delegate").is_ok_and(|v| v == b"1")
}

/// Which cgroup of `levels` (rl's own first, then each parent up to the root) is delegated to
/// this user. Under systemd, the nearest one it marked delegated — except a user's manager's
/// own `user@UID.service` when rl runs deeper: the cgroups there belong to the manager's units
/// (systemd.io/CGROUP_DELEGATION), so rl needs a scope of its own. Elsewhere (an admin's chown,
/// a container's cgroup namespace) the topmost cgroup the user owns.
fn choose(levels: &[Level]) -> Option<&Level> {
    if let Some((i, n)) = levels.iter().enumerate().find(|(_, l)| l.marked) {
        let managers = n.rel.rsplit('/').next().is_some_and(|name| name.starts_with("user@"));
        return (n.owned && !(managers && i > 0)).then_some(n);
    }
    levels.iter().take_while(|l| l.owned).last()
}

/// The delegated cgroup at or above `own` ([`choose`]).
fn delegated_root(mount: &Path, own: &str) -> Option<Delegated> {
    let mut levels = Vec::new();
    let mut rel = own.trim_end_matches('/').to_string();
    loop {
        let dir = mount.join(rel.trim_start_matches('/'));
        let shown = if rel.is_empty() { "/".to_string() } else { rel.clone() };
        levels.push(Level { owned: owned(&dir), marked: marked(&dir), rel: shown });
        if rel.is_empty() {
            break;
        }
        rel.truncate(rel.rfind('/').unwrap_or(0));
    }
    let path = choose(&levels)?.rel.clone();
    let dir = mount.join(path.trim_start_matches('/'));
    let busy = std::fs::read_to_string(dir.join("cgroup.procs")).is_ok_and(|s| !s.trim().is_empty());
    Some(Delegated { controllers: words(&dir.join("cgroup.controllers")), path, busy })
}

/// A container's own cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    /// Its directory.
    pub dir: PathBuf,
    /// Its v2 path (what /proc/PID/cgroup shows on the host), kept in the container's state.
    pub rel: String,
}

/// Writes `value` into the cgroup file `path` (one write, as the kernel wants it).
fn write_file(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new().write(true).open(path)?.write_all(value.as_bytes())
}

/// Moves the calling process into the cgroup `dir` (the init, before its cgroup namespace).
pub fn join(dir: &Path) -> Result<()> {
    let procs = dir.join("cgroup.procs");
    write_file(&procs, "0").with_context(|| format!("join the container's cgroup: write `{}`", procs.display()))
}

/// The leaf for a start of container `id` with limits `res`: `None` where the host delegates
/// nothing (and no limit is asked for, or `ignore` lets the start go on without them: `rl run`
/// warned when it made the container). With `ignore`, the limits the delegated controllers can
/// enforce are. A stale leaf of an earlier start is replaced.
pub fn for_start(id: &str, res: &Resources, ignore: bool) -> Result<Option<Leaf>> {
    let host = Host::detect();
    let mut res = res;
    let kept;
    if let Err(e) = host.check(res) {
        if !ignore {
            return Err(e);
        }
        // What the delegated controllers can enforce still is.
        kept = res.enforceable(host.delegated.as_ref().map_or(&[][..], |d| &d.controllers));
        res = &kept;
    }
    let (Some(d), Some(mount)) = (&host.delegated, &host.mount) else { return Ok(None) };
    if d.busy {
        return Ok(None);
    }
    let root = mount.join(d.path.trim_start_matches('/'));
    let leaf = Leaf::create(&root, &d.path, id, &d.controllers)?;
    if let Err(e) = leaf.apply(res) {
        let _ = std::fs::remove_dir(&leaf.dir);
        return Err(e);
    }
    Ok(Some(leaf))
}

/// When rl is the only process of the delegated cgroup it runs in — as
/// `systemd-run --user --scope -p Delegate=yes rl run …` starts it — moves itself into a child
/// `supervisor` of it, so the delegated cgroup can give controllers to containers (a cgroup with
/// processes cannot). Called by the verbs that start containers, before their watchers exist.
pub fn settle() {
    let host = Host::detect();
    let (Some(d), Some(own), Some(mount)) = (&host.delegated, &host.own, &host.mount) else { return };
    if !d.busy || d.path != *own {
        return;
    }
    let dir = mount.join(own.trim_start_matches('/'));
    let me = std::process::id().to_string();
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
    if procs.split_whitespace().any(|p| p != me) {
        return;
    }
    let child = dir.join("supervisor");
    if std::fs::create_dir(&child).is_ok() || child.is_dir() {
        let _ = write_file(&child.join("cgroup.procs"), "0");
    }
}

/// After the container's exit: whether the OOM killer killed one of its processes; the leaf is
/// removed (a failure to is a warning: the container's exit is what matters).
pub fn finish(leaf: &Leaf, name: &str) -> bool {
    let oom = leaf.oom_kills() > 0;
    if let Err(e) = leaf.remove() {
        eprintln!("warning: container {name}: {e:#}");
    }
    oom
}

impl Leaf {
    /// The leaf at v2 path `rel` on this host.
    pub fn at(rel: &str) -> Option<Leaf> {
        let dir = Host::detect().path(rel)?;
        dir.is_dir().then(|| Leaf { dir, rel: rel.to_string() })
    }

    /// Enables `controllers` in the delegated root `root` (v2 path `root_rel`) and makes the
    /// leaf `rl-ID` under it.
    pub fn create(root: &Path, root_rel: &str, id: &str, controllers: &[String]) -> Result<Leaf> {
        let control = root.join("cgroup.subtree_control");
        let enabled = words(&control);
        let missing: Vec<String> = controllers
            .iter()
            .filter(|c| CONTROLLERS.contains(&c.as_str()) && !enabled.contains(c))
            .map(|c| format!("+{c}"))
            .collect();
        // All at once is one write; if one is refused, each alone, so the others still go on.
        if !missing.is_empty() && write_file(&control, &missing.join(" ")).is_err() {
            for m in &missing {
                write_file(&control, m).with_context(|| format!("enable {} in `{}`", &m[1..], control.display()))?;
            }
        }
        let name = format!("rl-{id}");
        let dir = root.join(&name);
        let leaf = Leaf { rel: format!("{}/{name}", root_rel.trim_end_matches('/')), dir };
        if let Err(e) = std::fs::create_dir(&leaf.dir) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                return Err(e).with_context(|| format!("create cgroup `{}`", leaf.dir.display()));
            }
            // Left by a watcher that was killed: maybe frozen, with an OOM count and child
            // cgroups of its own. A start gets a fresh one.
            leaf.remove().context("left over from an earlier run")?;
            std::fs::create_dir(&leaf.dir).with_context(|| format!("create cgroup `{}`", leaf.dir.display()))?;
        }
        Ok(leaf)
    }

    /// Whether its controllers can take the limits `res` (`rl update` of a running container,
    /// from wherever the user runs it).
    pub fn check(&self, res: &Resources) -> Result<()> {
        let have = words(&self.dir.join("cgroup.controllers"));
        match res.controllers().into_iter().find(|(c, _)| !have.iter().any(|h| h == c)) {
            Some((ctl, flag)) => Err(hinted(
                Problem::CgroupNotDelegated,
                format!("{flag}: the container's cgroup `{}` has no {ctl} controller", self.rel),
            )),
            None => Ok(()),
        }
    }

    /// Writes the limits (again, for `rl update`).
    pub fn apply(&self, res: &Resources) -> Result<()> {
        for w in res.writes() {
            // With the BFQ scheduler its own weight (in blkio's range) is the one that counts;
            // io.weight acts only where io.cost is on.
            let (file, value) = match res.blkio_weight {
                Some(b) if w.file == "io.weight" && self.dir.join("io.bfq.weight").exists() => {
                    ("io.bfq.weight", b.to_string())
                }
                _ => (w.file, w.value),
            };
            let path = self.dir.join(file);
            match write_file(&path, &value) {
                Ok(()) => {}
                Err(e) if w.optional && e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("set {file}: write `{value}` to `{}`", path.display()))
                }
            }
        }
        Ok(())
    }

    /// How many processes the OOM killer killed in it.
    pub fn oom_kills(&self) -> u64 {
        let events = std::fs::read_to_string(self.dir.join("memory.events")).unwrap_or_default();
        stats::keyed(&events, "oom_kill").unwrap_or(0)
    }

    /// Whether it is frozen (`rl pause`).
    pub fn frozen(&self) -> bool {
        std::fs::read_to_string(self.dir.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
    }

    /// Freezes or thaws it and waits until the kernel says it is done.
    pub fn freeze(&self, on: bool) -> Result<()> {
        let path = self.dir.join("cgroup.freeze");
        write_file(&path, if on { "1" } else { "0" }).with_context(|| format!("write `{}`", path.display()))?;
        let done = self.wait_event("frozen", on as u64, 10_000);
        if done.is_err() && on {
            // Not half paused: a process in uninterruptible sleep (a FUSE or NFS request) can
            // keep a freeze from completing.
            let _ = write_file(&path, "0");
        }
        done.with_context(|| format!("freeze cgroup `{}` (a process in uninterruptible sleep?)", self.rel))
    }

    /// Waits until `cgroup.events` says `key value`: the kernel wakes pollers of that file with
    /// POLLPRI on every change. Gives up after `ms`.
    fn wait_event(&self, key: &str, value: u64, ms: u64) -> Result<()> {
        let path = self.dir.join("cgroup.events");
        let mut file = std::fs::File::open(&path).with_context(|| format!("open `{}`", path.display()))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(ms);
        loop {
            let mut text = String::new();
            file.rewind()
                .and_then(|_| file.read_to_string(&mut text))
                .with_context(|| format!("read `{}`", path.display()))?;
            if stats::keyed(&text, key) == Some(value) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(anyhow!("cgroup `{}`: not {key} {value} after {ms} ms", self.rel));
            }
            let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
            let t = PollTimeout::try_from(left.as_millis().min(60_000) as i32).unwrap_or(PollTimeout::NONE);
            match poll(&mut fds, t) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).with_context(|| format!("poll `{}`", path.display())),
            }
        }
    }

    /// Removes it once its last process is gone (the container's processes die with its PID 1,
    /// but the kernel may still be tearing them down).
    pub fn remove(&self) -> Result<()> {
        if !self.dir.exists() {
            return Ok(());
        }
        // A frozen leaf never empties: its processes cannot run to exit.
        let _ = write_file(&self.dir.join("cgroup.freeze"), "0");
        self.wait_event("populated", 0, 5000)?;
        remove_cgroup(&self.dir)
    }
}

/// Removes an empty cgroup and the child cgroups a privileged container made in it, deepest
/// first (rmdir is how a cgroup goes; its files go with it).
fn remove_cgroup(dir: &Path) -> Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path())?;
            }
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("remove cgroup `{}`", dir.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
