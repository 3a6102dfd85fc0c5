//! The container's mounts, first as a plan — a list of operations as data, built from the config
//! and unit-tested without privileges (bubblewrap's habit) — then applied in order by the
//! container init, inside its own mount namespace, on the merged rootfs before `pivot_root`.
//!
//! Every target is resolved with `openat2(RESOLVE_IN_ROOT)` against the rootfs, so a symlink in
//! the image (`/etc/hosts -> /home/user/.ssh/...`) can never redirect a mount or a file creation
//! onto the host; the mount then goes onto `/proc/self/fd/N` of the resolved target.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, MsFlags};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{statvfs, FsFlags};

use crate::config::{ContainerConfig, MountSpec};

/// What kind of object a mount target must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// One step of the plan. Targets are absolute paths inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Mount a fresh filesystem.
    Fs { fstype: &'static str, target: String, flags: MsFlags, data: String },
    /// Bind `source` (a host path) onto `target`, creating a file or directory to match.
    Bind { source: PathBuf, target: String, readonly: bool },
    /// sysfs read-only; where the kernel refuses, the host's /sys bound read-only instead.
    Sysfs { target: String },
    /// The container's cgroup namespace as a cgroup2 mount (read-only unless privileged);
    /// skipped on hosts without pure cgroup v2, or where the kernel refuses it.
    Cgroup { target: String, readonly: bool },
    /// A symlink `link` → `to` (in the fresh /dev).
    Symlink { to: String, link: String },
    /// Hide a file (bind /dev/null over it) or directory (empty read-only tmpfs); skipped if absent.
    Mask { target: String },
    /// Make an existing path read-only (bind onto itself, remount); skipped if absent.
    ReadOnly { target: String },
    /// Create a directory (the working directory) if it is missing.
    Dir { target: String },
    /// Make the rootfs itself read-only, last.
    RootReadOnly,
}

/// OCI/Podman default masked paths.
pub const MASKED: [&str; 13] = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/interrupts",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/sys/fs/selinux",
    "/sys/dev/block",
];

/// OCI/Podman default read-only paths.
pub const READ_ONLY: [&str; 6] =
    ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Device nodes bound from the host's /dev (a user namespace may not mknod).
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Builds the plan. `tty_gid` says whether gid 5 is mapped, for devpts's `gid=5`.
pub fn plan(cfg: &ContainerConfig, tty_gid: bool) -> Vec<Op> {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let fs =
        |fstype, target: &str, flags, data: &str| Op::Fs { fstype, target: target.into(), flags, data: data.into() };
    let mut ops = vec![
        fs("proc", "/proc", nosuid_nodev_noexec, ""),
        Op::Sysfs { target: "/sys".into() },
        Op::Cgroup { target: "/sys/fs/cgroup".into(), readonly: !cfg.security.privileged },
        fs("tmpfs", "/dev", MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME, "mode=755,size=65536k"),
    ];
    for d in DEVICES {
        ops.push(Op::Bind { source: PathBuf::from("/dev").join(d), target: format!("/dev/{d}"), readonly: false });
    }
    let pts = if tty_gid { "newinstance,ptmxmode=0666,mode=0620,gid=5" } else { "newinstance,ptmxmode=0666,mode=0620" };
    ops.push(fs("devpts", "/dev/pts", MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, pts));
    ops.push(fs("tmpfs", "/dev/shm", nosuid_nodev_noexec, "mode=1777,size=65536k"));
    ops.push(fs("mqueue", "/dev/mqueue", nosuid_nodev_noexec, ""));
    for (to, link) in [
        ("pts/ptmx", "/dev/ptmx"),
        ("/proc/self/fd", "/dev/fd"),
        ("/proc/self/fd/0", "/dev/stdin"),
        ("/proc/self/fd/1", "/dev/stdout"),
        ("/proc/self/fd/2", "/dev/stderr"),
        ("/proc/kcore", "/dev/core"),
    ] {
        ops.push(Op::Symlink { to: to.into(), link: link.into() });
    }
    for f in ["hostname", "hosts", "resolv.conf"] {
        ops.push(Op::Bind { source: cfg.dirs.run.join(f), target: format!("/etc/{f}"), readonly: false });
    }
    if cfg.read_only && cfg.read_only_tmpfs {
        for t in ["/tmp", "/var/tmp", "/run"] {
            let mode = if t == "/run" { "mode=755" } else { "mode=1777" };
            ops.push(fs("tmpfs", t, MsFlags::MS_NOSUID | MsFlags::MS_NODEV, mode));
        }
    }
    for m in &cfg.mounts {
        ops.push(match m {
            MountSpec::Bind { source, target, readonly } => {
                Op::Bind { source: source.clone(), target: target.clone(), readonly: *readonly }
            }
            MountSpec::Tmpfs { target, options } => {
                let (flags, data) = tmpfs_options(options);
                Op::Fs { fstype: "tmpfs", target: target.clone(), flags, data }
            }
        });
    }
    if cfg.security.mask_paths {
        ops.extend(MASKED.iter().map(|t| Op::Mask { target: t.to_string() }));
        ops.extend(READ_ONLY.iter().map(|t| Op::ReadOnly { target: t.to_string() }));
    }
    if !cfg.process.cwd.is_empty() && cfg.process.cwd != "/" {
        ops.push(Op::Dir { target: cfg.process.cwd.clone() });
    }
    if cfg.read_only {
        ops.push(Op::RootReadOnly);
    }
    ops
}

/// Splits `--tmpfs` options into mount flags and filesystem data (Docker's defaults: nosuid,
/// nodev; `ro`, `noexec`, … as flags; `size=`, `mode=`, … as data).
pub fn tmpfs_options(options: &str) -> (MsFlags, String) {
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    let mut data = Vec::new();
    for o in options.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => flags |= MsFlags::MS_RDONLY,
            "rw" => flags &= !MsFlags::MS_RDONLY,
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "exec" => flags &= !MsFlags::MS_NOEXEC,
            "suid" => flags &= !MsFlags::MS_NOSUID,
            "dev" => flags &= !MsFlags::MS_NODEV,
            "nosuid" | "nodev" => {}
            _ => data.push(o),
        }
    }
    (flags, data.join(","))
}

/// Applies `ops` on the rootfs mounted at `root`.
pub fn apply(root: &Path, ops: &[Op]) -> Result<()> {
    let root_fd = nix::fcntl::open(root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .with_context(|| format!("open rootfs `{}`", root.display()))?;
    for op in ops {
        apply_one(root, &root_fd, op).with_context(|| describe(op))?;
    }
    Ok(())
}

fn describe(op: &Op) -> String {
    match op {
        Op::Fs { fstype, target, .. } => format!("mount {fstype} on `{target}`"),
        Op::Bind { source, target, .. } => format!("bind `{}` on `{target}`", source.display()),
        Op::Sysfs { target } => format!("mount sysfs on `{target}`"),
        Op::Cgroup { target, .. } => format!("mount cgroup2 on `{target}`"),
        Op::Symlink { link, .. } => format!("create symlink `{link}`"),
        Op::Mask { target } => format!("mask `{target}`"),
        Op::ReadOnly { target } => format!("make `{target}` read-only"),
        Op::Dir { target } => format!("create the working directory `{target}`"),
        Op::RootReadOnly => "make the rootfs read-only".into(),
    }
}

fn fd_path(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

fn apply_one(root: &Path, root_fd: &OwnedFd, op: &Op) -> Result<()> {
    match op {
        Op::Fs { fstype, target, flags, data } => {
            let t = ensure(root_fd, target, Kind::Dir)?;
            let data = (!data.is_empty()).then_some(data.as_str());
            mount(Some(*fstype), fd_path(&t).as_str(), Some(*fstype), *flags, data)?;
        }
        Op::Sysfs { target } => {
            let t = ensure(root_fd, target, Kind::Dir)?;
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY;
            if let Err(e) = mount(Some("sysfs"), fd_path(&t).as_str(), Some("sysfs"), flags, None::<&str>) {
                if e != Errno::EPERM && e != Errno::EACCES {
                    return Err(e.into());
                }
                // The kernel refuses a new sysfs where the net namespace is not ours to show.
                mount(
                    Some("/sys"),
                    fd_path(&t).as_str(),
                    None::<&str>,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    None::<&str>,
                )?;
                // Opened again: `t` is the directory under the new mount.
                remount_ro(&open_in_root(root_fd, target)?)?;
            }
        }
        Op::Cgroup { target, readonly } => {
            // On cgroup v1 or hybrid hosts the container sees what sysfs shows, as with Podman:
            // an empty cgroup2 there would tell cgroup-aware programs it is a v2 host.
            if !crate::cgroup::unified() {
                return Ok(());
            }
            // Opened, not made: the read-only sysfs under it has the directory or nothing.
            let Ok(t) = open_in_root(root_fd, target) else { return Ok(()) };
            let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            if *readonly {
                flags |= MsFlags::MS_RDONLY;
            }
            match mount(Some("cgroup2"), fd_path(&t).as_str(), Some("cgroup2"), flags, None::<&str>) {
                // No cgroup2 here (cgroup v1 only) or not ours to mount: the directory stays as
                // sysfs has it, as in Podman on such hosts.
                Err(Errno::EPERM | Errno::EACCES | Errno::ENODEV | Errno::ENOENT | Errno::EBUSY) => {}
                r => r?,
            }
        }
        Op::Bind { source, target, readonly } => {
            let meta = std::fs::metadata(source).with_context(|| format!("stat `{}`", source.display()))?;
            let kind = if meta.is_dir() { Kind::Dir } else { Kind::File };
            let t = ensure(root_fd, target, kind)?;
            mount(
                Some(source.as_path()),
                fd_path(&t).as_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            if *readonly {
                remount_ro(&open_in_root(root_fd, target)?)?;
            }
        }
        Op::Symlink { to, link } => {
            let (parent, name) = split(link)?;
            let p = ensure(root_fd, parent, Kind::Dir)?;
            match nix::unistd::symlinkat(to.as_str(), p.as_fd(), name) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Op::Mask { target } => {
            let t = match open_in_root(root_fd, target) {
                Ok(t) => t,
                Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let is_dir = nix::sys::stat::fstat(&t)?.st_mode & libc::S_IFMT == libc::S_IFDIR;
            if is_dir {
                let flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
                mount(Some("tmpfs"), fd_path(&t).as_str(), Some("tmpfs"), flags, Some("size=0"))?;
            } else {
                let null = root.join("dev/null");
                mount(Some(null.as_path()), fd_path(&t).as_str(), None::<&str>, MsFlags::MS_BIND, None::<&str>)?;
            }
        }
        Op::ReadOnly { target } => {
            let t = match open_in_root(root_fd, target) {
                Ok(t) => t,
                Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(e.into()),
            };
            let p = fd_path(&t);
            mount(Some(p.as_str()), p.as_str(), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)?;
            remount_ro(&open_in_root(root_fd, target)?)?;
        }
        Op::Dir { target } => {
            ensure(root_fd, target, Kind::Dir)?;
        }
        Op::RootReadOnly => {
            remount_ro(root_fd)?;
        }
    }
    Ok(())
}

/// Remounts the bind mount at `fd` read-only, keeping the flags the kernel locks on mounts
/// inherited from a more privileged namespace (nosuid, nodev, noexec, atime), else EPERM.
fn remount_ro(fd: &OwnedFd) -> Result<()> {
    let p = fd_path(fd);
    let st = statvfs(p.as_str()).with_context(|| format!("statvfs `{p}`"))?;
    let f = st.flags();
    let mut flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    for (fs_flag, ms_flag) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if f.contains(fs_flag) {
            flags |= ms_flag;
        }
    }
    mount(None::<&str>, p.as_str(), None::<&str>, flags, None::<&str>).with_context(|| "remount read-only".to_string())
}

fn split(path: &str) -> Result<(&str, &str)> {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((parent, name)) if !name.is_empty() && name != ".." && name != "." => {
            Ok((if parent.is_empty() { "/" } else { parent }, name))
        }
        _ => bail!("path `{path}` has no final component"),
    }
}

/// Opens `path` (absolute inside the container) as an O_PATH fd, resolving every symlink as if
/// `root` were `/`.
pub fn open_in_root(root: &OwnedFd, path: &str) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let rel = path.trim_start_matches('/');
    nix::fcntl::openat2(root, if rel.is_empty() { "." } else { rel }, how)
}

/// Opens `path` inside the rootfs, creating it (and missing parents) as `kind` if absent. A
/// dangling symlink on the way is followed inside the rootfs and its target created.
pub fn ensure(root: &OwnedFd, path: &str, kind: Kind) -> Result<OwnedFd> {
    ensure_depth(root, path, kind, 0)
}

fn ensure_depth(root: &OwnedFd, path: &str, kind: Kind, depth: u32) -> Result<OwnedFd> {
    // The kernel's own limit on symlinks followed in one lookup.
    if depth > 40 {
        bail!("create `{path}` in the rootfs: too many levels of symbolic links");
    }
    match open_in_root(root, path) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(anyhow!("open `{path}` in the rootfs: {e}")),
    }
    let (parent, name) = split(path)?;
    let p = ensure_depth(root, parent, Kind::Dir, depth + 1)?;
    let created = match kind {
        Kind::Dir => nix::sys::stat::mkdirat(p.as_fd(), name, Mode::from_bits_truncate(0o755)),
        Kind::File => nix::fcntl::openat(
            p.as_fd(),
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        )
        .map(drop),
    };
    match created {
        Ok(()) => {}
        Err(Errno::EEXIST) => {
            if let Ok(link) = nix::fcntl::readlinkat(p.as_fd(), name) {
                let link = link.to_string_lossy();
                let target = if link.starts_with('/') {
                    link.into_owned()
                } else {
                    format!("{}/{link}", parent.trim_end_matches('/'))
                };
                return ensure_depth(root, &target, kind, depth + 1);
            }
        }
        Err(e) => return Err(anyhow!("create `{path}` in the rootfs: {e}")),
    }
    open_in_root(root, path).map_err(|e| anyhow!("open `{path}` in the rootfs: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Security;

    fn cfg() -> ContainerConfig {
        let mut c = ContainerConfig::default();
        c.dirs.run = PathBuf::from("/run/user/1000/rl/containers/x");
        c.security = Security { mask_paths: true, ..Default::default() };
        c
    }

    fn targets(ops: &[Op]) -> Vec<String> {
        ops.iter()
            .map(|o| match o {
                Op::Fs { target, .. } | Op::Bind { target, .. } | Op::Sysfs { target } | Op::Dir { target } => {
                    target.clone()
                }
                Op::Cgroup { target, readonly } => format!("cgroup{}:{target}", if *readonly { "-ro" } else { "" }),
                Op::Symlink { link, .. } => link.clone(),
                Op::Mask { target } => format!("mask:{target}"),
                Op::ReadOnly { target } => format!("ro:{target}"),
                Op::RootReadOnly => "ro:/".into(),
            })
            .collect()
    }

    #[test]
    fn default_plan_order() {
        let t = targets(&plan(&cfg(), true));
        let pos = |s: &str| t.iter().position(|x| x == s).unwrap_or_else(|| panic!("{s} missing in {t:?}"));
        assert!(pos("/proc") < pos("mask:/proc/kcore"));
        assert!(pos("/dev") < pos("/dev/null") && pos("/dev/null") < pos("/dev/pts"));
        assert!(pos("/etc/hosts") > pos("/dev/mqueue"));
        assert!(pos("ro:/proc/sys") > pos("/proc"));
        assert!(!t.contains(&"ro:/".to_string()));
        assert!(!t.contains(&"/tmp".to_string()));
        // The cgroup mount goes on the sysfs, read-only for an unprivileged container.
        assert!(pos("/sys") < pos("cgroup-ro:/sys/fs/cgroup"));
        let mut privileged = cfg();
        privileged.security.privileged = true;
        assert!(targets(&plan(&privileged, true)).contains(&"cgroup:/sys/fs/cgroup".to_string()));
    }

    #[test]
    fn read_only_adds_tmpfs_and_root_last() {
        let mut c = cfg();
        c.read_only = true;
        c.read_only_tmpfs = true;
        c.mounts.push(MountSpec::Tmpfs { target: "/data".into(), options: "size=1m,noexec".into() });
        let ops = plan(&c, false);
        let t = targets(&ops);
        assert_eq!(t.last().unwrap(), "ro:/");
        assert!(t.contains(&"/tmp".into()) && t.contains(&"/var/tmp".into()) && t.contains(&"/run".into()));
        let pts = ops.iter().find_map(|o| match o {
            Op::Fs { fstype: "devpts", data, .. } => Some(data.clone()),
            _ => None,
        });
        assert!(!pts.unwrap().contains("gid=5"));
        let data = ops.iter().find_map(|o| match o {
            Op::Fs { target, flags, data, .. } if target == "/data" => Some((*flags, data.clone())),
            _ => None,
        });
        let (flags, data) = data.unwrap();
        assert!(flags.contains(MsFlags::MS_NOEXEC) && data == "size=1m");
    }

    #[test]
    fn privileged_has_no_masks() {
        let mut c = cfg();
        c.security.mask_paths = false;
        assert!(!plan(&c, true).iter().any(|o| matches!(o, Op::Mask { .. } | Op::ReadOnly { .. })));
    }

    #[test]
    fn ensure_stays_inside_the_root() {
        let base = std::env::temp_dir().join(format!("rl-mounts-{}", std::process::id()));
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // An absolute symlink in the image pointing at the host must resolve inside the rootfs.
        std::os::unix::fs::symlink(&outside, root.join("etc/evil")).unwrap();
        let root_fd = nix::fcntl::open(&root, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        ensure(&root_fd, "/etc/evil/file", Kind::File).unwrap();
        assert!(std::fs::read_dir(&outside).unwrap().next().is_none(), "created outside the root");
        assert!(root.join(outside.strip_prefix("/").unwrap()).join("file").exists());
        ensure(&root_fd, "/a/b/c", Kind::Dir).unwrap();
        assert!(root.join("a/b/c").is_dir());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn split_paths() {
        assert_eq!(split("/etc/hosts").unwrap(), ("/etc", "hosts"));
        assert_eq!(split("/x").unwrap(), ("/", "x"));
        assert!(split("/").is_err());
    }
}
