//! Moving files in and out of a container's filesystem: the stage-1 side of `rl cp`,
//! `rl export` and `rl commit`, and the parent helper ([`Target`]) that starts it.
//!
//! For a running container, stage 1 joins its namespaces ([`Stage1::join`]): its `/` is then the
//! container's root, with the container's own mounts (volumes included, as with `docker cp`).
//! For a stopped one, stage 1 runs in a fresh user namespace with the container's own id maps, so files owned by
//! subordinate ids are readable and writable, and `stat(2)` shows the owners the container sees.
//! For the merged view (cp, export) it unshares a private mount namespace and mounts the
//! container's overlay there — the same upper, work and lower dirs as `rl run` — on a mount point
//! the parent made; the mount dies with the namespace, however stage 1 ends. Reading jobs remount
//! it read-only first. Copying in writes through the overlay, so new files land in the upper dir
//! and never in an image layer. Commit reads the upper dir itself ([`crate::store::export`] turns
//! overlay whiteouts into OCI ones).
//!
//! Paths inside the container are resolved with `openat2(RESOLVE_IN_ROOT)` on the merged root: a
//! symlink (`/escape -> /`) is followed as if the container's root were `/`, so `cp
//! C:/escape/etc/shadow` reads the container's file and `cp f C:/escape/tmp/x` writes inside,
//! whatever the link says. Below the resolved path, the export walk never follows symlinks and
//! the unpack refuses entries that leave the target directory.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, readlinkat, AtFlags, OFlag, OpenHow, ResolveFlag, AT_FDCWD};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::stat::{fstat, fstatat, mkdirat, FileStat, Mode};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tar::{EntryType, Header};

use super::msg::{Job, Msg};
use super::parent::{Spawn, Stage1};
use crate::config::{ContainerConfig, Dirs, OverlayBackend};
use crate::state::{State, Status};
use crate::store::export::header;
use crate::store::Paths;
use crate::store::{export, unpack};

/// Bind-mount targets rl creates in an upper dir; left out of commits and exports when empty.
pub const GENERATED: [&str; 3] = ["etc/hosts", "etc/hostname", "etc/resolv.conf"];

/// What stage 1 does with a container's filesystem; the stream is the fd sent with the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FsJob {
    /// Write the upper dir as an OCI layer tar (commit).
    Upper { upper: PathBuf },
    /// Write the merged rootfs as a tar (export).
    Export { mount: Option<Mounting> },
    /// Write `path` as a tar whose one top entry is its base name, or, with `contents`, the
    /// entries of the directory itself (`SRC/.`). `follow`: resolve a final symlink too.
    CopyOut { mount: Option<Mounting>, path: String, follow: bool, contents: bool },
    /// Extract the tar read from the fd at `path` (see [`copy_in`]).
    CopyIn { mount: Option<Mounting>, path: String, top: Option<Top>, max_uid: u32, max_gid: u32 },
}

/// The top entry of a tar copied in: its name, and whether it is a directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Top {
    pub name: String,
    pub dir: bool,
}

/// The container's overlay and where to mount it; `None` in a job for a running container,
/// whose mount namespace stage 1 has joined (its root is the container's).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Mounting {
    pub dirs: Dirs,
    pub backend: OverlayBackend,
}

/// Parent side: a container whose filesystem a job works on. A stopped one gets a fresh mount
/// point in the run root (removed on drop); a running one is joined.
pub struct Target {
    pub cfg: ContainerConfig,
    /// The container's PID 1 on the host, while it runs.
    pub pid: Option<Pid>,
    at: Option<PathBuf>,
}

impl Target {
    /// The container `query` names (a name, id or unique id prefix).
    pub fn find(paths: &Paths, query: &str) -> Result<Target> {
        let (cfg, st) = crate::state::find(paths, query)?;
        let pid = match st {
            Some(State { status: Status::Running, pid: Some(pid), .. })
                if Path::new(&format!("/proc/{pid}")).exists() =>
            {
                Some(Pid::from_raw(pid))
            }
            _ => None,
        };
        let at = match pid {
            Some(_) => None,
            None => Some(crate::store::images::tempdir_in(&paths.runroot.join("fs"), "mnt")?),
        };
        Ok(Target { cfg, pid, at })
    }

    /// How stage 1 reaches the merged rootfs: `None` when it joins the running container.
    pub fn mounting(&self) -> Option<Mounting> {
        let at = self.at.as_ref()?;
        Some(Mounting { dirs: Dirs { merged: at.clone(), ..self.cfg.dirs.clone() }, backend: self.cfg.overlay })
    }

    /// Runs `job` in stage 1 with `fd` as its stream — in a new user namespace with the
    /// container's maps, or in the running container's namespaces — while `io` reads or writes
    /// the other end here. Stage 1's error comes before `io`'s (a broken pipe is only its echo).
    pub fn run_job<T>(&self, job: FsJob, fd: OwnedFd, io: impl FnOnce() -> Result<T>) -> Result<T> {
        let job = Job::ContainerFs(job);
        let stage = match self.pid {
            // Sealed: this rl process enters the container's namespaces (CVE-2019-5736).
            Some(pid) => Stage1::join(pid, job, Spawn { sealed: true, fds: vec![fd], ..Spawn::default() })?,
            None => {
                let how = Spawn { fds: vec![fd], ..Spawn::default() };
                Stage1::spawn(&self.cfg.idmap, job, how, || Ok(()))?
            }
        };
        let done = io();
        let reply = stage.expect_msg();
        let outcome = match reply {
            Ok(Msg::Done) => done,
            Ok(other) => Err(stage.fail(other)),
            Err(e) => Err(e),
        };
        stage.reap();
        outcome
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(at) = &self.at {
            let _ = std::fs::remove_dir(at);
        }
    }
}

/// Stage 1's side of a job.
pub fn run(job: &FsJob, fds: Vec<OwnedFd>) -> Result<()> {
    let fd = fds.into_iter().next().context("the job came without its stream")?;
    match job {
        FsJob::Upper { upper } => {
            let opts = export::Options { skip_empty: GENERATED.iter().map(|s| s.to_string()).collect() };
            let out = BufWriter::with_capacity(256 << 10, File::from(fd));
            export::export(upper, out, &opts).map(drop)
        }
        FsJob::Export { mount } => with_mount(mount.as_ref(), true, |root| {
            let opts = export::Options { skip_empty: GENERATED.iter().map(|s| s.to_string()).collect() };
            let out = BufWriter::with_capacity(256 << 10, File::from(fd));
            let summary = export::export(&enter(&root)?, out, &opts)?;
            for w in summary.warnings {
                eprintln!("warning: {w}");
            }
            Ok(())
        }),
        FsJob::CopyOut { mount, path, follow, contents } => {
            with_mount(mount.as_ref(), true, |root| copy_out(&root, path, *follow, *contents, File::from(fd)))
        }
        FsJob::CopyIn { mount, path, top, max_uid, max_gid } => with_mount(mount.as_ref(), false, |root| {
            let opts = unpack::Options { max_uid: *max_uid, max_gid: *max_gid, apply_owners: true };
            copy_in(&root, path, top.as_ref(), File::from(fd), &opts)
        }),
    }
}

/// Mounts the overlay in a private mount namespace, runs `work` on an fd of its root, unmounts.
/// Without `m`, stage 1 is in the running container's mount namespace: its `/` is the root.
fn with_mount<T>(m: Option<&Mounting>, read_only: bool, work: impl FnOnce(OwnedFd) -> Result<T>) -> Result<T> {
    let Some(m) = m else {
        let root = openat(AT_FDCWD, "/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| anyhow!("open the container's root: {}", e.desc()))?;
        return work(root);
    };
    unshare(CloneFlags::CLONE_NEWNS).context("unshare the mount namespace")?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .context("make the mounts private")?;
    let merged = &m.dirs.merged;
    let mounted = crate::rootfs::mount(&m.dirs, m.backend)?;
    let result = (|| {
        if read_only {
            let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
            mount(None::<&str>, merged, None::<&str>, flags, None::<&str>)
                .with_context(|| format!("remount `{}` read-only", merged.display()))?;
        }
        let root = openat(AT_FDCWD, merged, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|e| anyhow!("open `{}`: {}", merged.display(), e.desc()))?;
        work(root)
    })();
    let unmounted = mounted.unmount(merged);
    let value = result?;
    unmounted?;
    Ok(value)
}

/// Makes the directory `fd` (already resolved) the working directory and returns `.`: how code
/// that opens by path reaches it. Not `/proc/self/fd/N`: in a running container's mount
/// namespace /proc belongs to a pid namespace stage 1 is not in, so it has no `self`.
fn enter(fd: &OwnedFd) -> Result<PathBuf> {
    nix::unistd::fchdir(fd).map_err(|e| anyhow!("enter the resolved directory: {}", e.desc()))?;
    Ok(PathBuf::from("."))
}

/// Opens `path` (inside the container) relative to `root` as if `root` were `/`.
fn open_in_root(root: &OwnedFd, path: &str, flags: OFlag) -> nix::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let rel = path.trim_start_matches('/');
    openat2(root, if rel.is_empty() { "." } else { rel }, how)
}

/// Splits a container path into its directory and final component; `None` for `/`.
pub fn split(path: &str) -> Option<(&str, &str)> {
    let trimmed = path.trim_end_matches('/');
    match trimmed.rsplit_once('/') {
        Some((dir, name)) => Some((if dir.is_empty() { "/" } else { dir }, name)),
        None if trimmed.is_empty() => None,
        None => Some((".", trimmed)),
    }
}

fn errno_text(path: &str, e: Errno) -> anyhow::Error {
    anyhow!("`{path}`: {}", e.desc())
}

/// Writes `path` as a tar into `out`.
fn copy_out(root: &OwnedFd, path: &str, follow: bool, contents: bool, out: File) -> Result<()> {
    let out = BufWriter::with_capacity(256 << 10, out);
    let Some((dir, name)) = split(path).filter(|_| !contents) else {
        let fd = open_in_root(root, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY).map_err(|e| errno_text(path, e))?;
        return export::export(&enter(&fd)?, out, &export::Options::default()).map(drop);
    };
    if name == ".." || name == "." {
        bail!("`{path}`: name the file or directory itself");
    }
    let parent = open_in_root(root, dir, OFlag::O_PATH | OFlag::O_DIRECTORY).map_err(|e| errno_text(path, e))?;
    // The final component: itself (a symlink is copied as a symlink), or with -L what it points
    // to, still inside the root.
    let (at, leaf): (OwnedFd, &OsStr) = if follow {
        (open_in_root(root, path, OFlag::O_PATH).map_err(|e| errno_text(path, e))?, OsStr::new(""))
    } else {
        (parent, OsStr::new(name))
    };
    let st = stat_at(&at, leaf).map_err(|e| errno_text(path, e))?;
    let mut tar = tar::Builder::new(out);
    let top = name.as_bytes();
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            let fd =
                reopen(root, path, &at, leaf, OFlag::O_RDONLY | OFlag::O_DIRECTORY).map_err(|e| errno_text(path, e))?;
            if fstat(&fd).map(|n| (n.st_dev, n.st_ino)) != Ok((st.st_dev, st.st_ino)) {
                bail!("`{path}`: replaced while being read");
            }
            let here = enter(&fd)?;
            append(&mut tar, header(EntryType::Directory, &st), &[top, b"/"].concat(), None, io::empty())?;
            // The export walk writes the directory's entries without a prefix; they are
            // re-labelled under the top name as they stream through a pipe.
            let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("create a pipe")?;
            let exported = std::thread::scope(|s| {
                let walker = s.spawn(move || {
                    let w = BufWriter::with_capacity(256 << 10, File::from(w));
                    export::export(&here, w, &export::Options::default())
                });
                let relabelled = relabel(File::from(r), &mut tar, top);
                let walked = walker.join().unwrap_or_else(|_| Err(anyhow!("the export thread panicked")));
                walked.and(relabelled)
            });
            exported.with_context(|| format!("copy `{path}`"))?;
        }
        libc::S_IFREG => {
            let fd =
                reopen(root, path, &at, leaf, OFlag::O_RDONLY | OFlag::O_NONBLOCK).map_err(|e| errno_text(path, e))?;
            let now = fstat(&fd).map_err(|e| errno_text(path, e))?;
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
                bail!("`{path}`: replaced while being read");
            }
            let size = u64::try_from(now.st_size).unwrap_or(0);
            let mut h = header(EntryType::Regular, &now);
            h.set_size(size);
            append(&mut tar, h, top, None, File::from(fd).take(size))?;
        }
        libc::S_IFLNK => {
            let target = readlinkat(&at, leaf).map_err(|e| errno_text(path, e))?;
            append(&mut tar, header(EntryType::Symlink, &st), top, Some(target.as_bytes()), io::empty())?;
        }
        libc::S_IFIFO => append(&mut tar, header(EntryType::Fifo, &st), top, None, io::empty())?,
        _ => bail!("`{path}`: not a file, directory or symlink"),
    }
    let mut out = tar.into_inner().context("finish the archive")?;
    out.flush().context("write the archive")
}

fn stat_at(at: &OwnedFd, leaf: &OsStr) -> nix::Result<FileStat> {
    if leaf.is_empty() {
        fstat(at)
    } else {
        fstatat(at, leaf, AtFlags::AT_SYMLINK_NOFOLLOW)
    }
}

/// Opens `leaf` in `at` without following it; with no leaf (`-L`), resolves `path` in `root`
/// again (the caller compares the inode with the one it stat'ed).
fn reopen(root: &OwnedFd, path: &str, at: &OwnedFd, leaf: &OsStr, flags: OFlag) -> nix::Result<OwnedFd> {
    if leaf.is_empty() {
        open_in_root(root, path, flags)
    } else {
        openat(at, leaf, flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW, Mode::empty())
    }
}

/// Appends one entry with raw PAX records `pax` (full keys) besides the long-name ones.
fn append_with<W: Write>(
    tar: &mut tar::Builder<W>,
    h: Header,
    name: &[u8],
    link: Option<&[u8]>,
    pax: &[(String, Vec<u8>)],
    data: impl Read,
) -> Result<()> {
    let records: Vec<(String, &[u8])> = pax.iter().map(|(k, v)| (k.clone(), v.as_slice())).collect();
    crate::store::export::append_entry(tar, h, name, link, &records, data)
}

/// [`append_with`] without extended attributes.
pub fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    h: Header,
    name: &[u8],
    link: Option<&[u8]>,
    data: impl Read,
) -> Result<()> {
    append_with(tar, h, name, link, &[], data)
}

/// Copies every entry of the archive `input` into `tar` with `top/` before its name (and before
/// a hardlink's target), keeping headers and extended attributes.
fn relabel<W: Write>(input: impl Read, tar: &mut tar::Builder<W>, top: &[u8]) -> Result<()> {
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries().context("read the exported entries")? {
        let mut entry = entry.context("read the exported entries")?;
        let name = [top, b"/", &entry.path_bytes()].concat();
        let kind = entry.header().entry_type();
        let link = entry.link_name_bytes().map(|l| match kind {
            EntryType::Link => [top, b"/", &l].concat(),
            _ => l.into_owned(),
        });
        let mut pax = Vec::new();
        if let Some(exts) = entry.pax_extensions().context("read PAX extensions")? {
            for ext in exts {
                let ext = ext.context("read PAX extensions")?;
                match ext.key() {
                    Ok("path" | "linkpath") | Err(_) => {}
                    Ok(k) => pax.push((k.to_string(), ext.value_bytes().to_vec())),
                }
            }
        }
        let h = entry.header().clone();
        append_with(tar, h, &name, link.as_deref(), &pax, &mut entry)?;
    }
    Ok(())
}

/// Extracts the tar `input` at `path` in the container, as `docker cp` does: into `path` when it
/// is a directory (a `top` entry lands as `path/NAME`); otherwise the top entry becomes `path`
/// itself (its parent must exist), through a temporary directory beside it and a rename. A tar
/// without a top entry (`SRC/.`, or a stream on stdin) needs `path` to be a directory, which is
/// created when only it is missing.
fn copy_in(root: &OwnedFd, path: &str, top: Option<&Top>, input: File, opts: &unpack::Options) -> Result<()> {
    let input = io::BufReader::with_capacity(256 << 10, input);
    let unpack_into = |dir: &OwnedFd, input| -> Result<()> {
        let report = unpack::unpack(input, &enter(dir)?, opts)?;
        for w in &report.warnings {
            eprintln!("warning: {w}");
        }
        for d in &report.skipped_devices {
            eprintln!("warning: device node `{d}` skipped (a user namespace cannot create devices)");
        }
        Ok(())
    };
    match open_in_root(root, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
        Ok(dir) => return unpack_into(&dir, input),
        Err(Errno::ENOENT | Errno::ENOTDIR) => {}
        Err(e) => return Err(errno_text(path, e)),
    }
    let (dir, name) = split(path).ok_or_else(|| anyhow!("`{path}`: not a directory"))?;
    if name == "." || name == ".." {
        bail!("`{path}`: no such directory");
    }
    if path.ends_with('/') {
        bail!("`{path}`: no such directory");
    }
    let parent = open_in_root(root, dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY).map_err(|e| errno_text(dir, e))?;
    let existing = fstatat(&parent, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
    let Some(top) = top else {
        if existing.is_some() {
            bail!("`{path}`: not a directory");
        }
        mkdirat(&parent, name, Mode::from_bits_truncate(0o755)).map_err(|e| errno_text(path, e))?;
        let dir = openat(&parent, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW, Mode::empty())
            .map_err(|e| errno_text(path, e))?;
        return unpack_into(&dir, input);
    };
    if top.dir && existing.is_some() {
        bail!("`{path}`: cannot overwrite a non-directory with directory `{}`", top.name);
    }
    let tmp = format!(".rl-cp-{}", &crate::state::new_id()?[..12]);
    mkdirat(&parent, tmp.as_str(), Mode::from_bits_truncate(0o700)).map_err(|e| errno_text(path, e))?;
    let staged = (|| {
        let t = openat(&parent, tmp.as_str(), OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW, Mode::empty())
            .map_err(|e| errno_text(path, e))?;
        unpack_into(&t, input)?;
        nix::fcntl::renameat(&t, top.name.as_str(), &parent, name).map_err(|e| errno_text(path, e))
    })();
    let cleaned = enter(&parent).and_then(|here| super::remove_tree(&here.join(&tmp)));
    staged?;
    cleaned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_paths() {
        assert_eq!(split("/etc/passwd"), Some(("/etc", "passwd")));
        assert_eq!(split("/etc/"), Some(("/", "etc")));
        assert_eq!(split("/x"), Some(("/", "x")));
        assert_eq!(split("x"), Some((".", "x")));
        assert_eq!(split("/"), None);
        assert_eq!(split("//"), None);
    }

    #[test]
    fn relabels_under_a_top_name() {
        let mut input = tar::Builder::new(Vec::new());
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Regular);
        h.set_size(3);
        h.set_mode(0o640);
        input.append_data(&mut h, "a/b", &b"abc"[..]).unwrap();
        let long = "d/".repeat(60) + "f";
        let mut h = Header::new_ustar();
        h.set_entry_type(EntryType::Link);
        h.set_size(0);
        input.append_link(&mut h, &long, "a/b").unwrap();
        let bytes = input.into_inner().unwrap();
        let mut out = tar::Builder::new(Vec::new());
        relabel(&bytes[..], &mut out, b"top").unwrap();
        let bytes = out.into_inner().unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let got: Vec<(String, Option<String>)> = archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let link = e.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned());
                (String::from_utf8_lossy(&e.path_bytes()).into_owned(), link)
            })
            .collect();
        assert_eq!(got, vec![("top/a/b".into(), None), (format!("top/{long}"), Some("top/a/b".into()))]);
    }
}
