//! Applies one OCI layer — an uncompressed tar stream — into its own directory of the store.
//!
//! Where it sits: the pull pipeline fetches a layer blob, checks its digest and decompresses it,
//! then calls [`unpack`] on a fresh, empty directory of the store. That directory is later one
//! lower layer of a container's rootfs: kernel overlayfs mounted with `userxattr` inside the
//! user namespace, or fuse-overlayfs. `unpack` runs as root of the container's user namespace,
//! so the numeric owners in the archive (0..=65536) land on the user's subordinate ids on disk
//! and come out right inside the container — the containers/storage habit.
//!
//! The archive is untrusted (its digest says only that it is the one the registry served), so
//! the `tar` crate is used only to parse it and every entry is applied here, through fds:
//! - Names: leading `/` are stripped, as tar and moby do (`/etc/passwd` is the layer's
//!   `etc/passwd`: image layers are rooted at the container's `/`); `.` and empty components
//!   are dropped and `..` is resolved lexically, and one that climbs above the layer root
//!   refuses the layer, whether the name was absolute or not (`/abs/../../x` too). NUL bytes
//!   refuse the layer.
//! - Parent directories are opened from an fd on the layer root with `openat2(2)` and
//!   `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: a symlink made by an earlier entry is followed
//!   only while it stays beneath the root; one that leaves it (`a -> /etc` then `a/passwd`, or
//!   `a -> ../..`) fails with EXDEV and the layer is refused. `RESOLVE_IN_ROOT` would instead
//!   clamp it to the layer root and write the layer's own `etc/passwd`, a file the archive never
//!   named. Writers walk real directories, so no well-formed layer routes an entry through one
//!   of its own symlinks: such an entry is an attack or corruption, and refusing it loudly beats
//!   guessing. Missing parents are created (0755, owned by the namespace root).
//! - The last component is never followed: whatever is there is removed first (a directory
//!   with its contents, unless a directory replaces a directory), then created with `O_EXCL`,
//!   `symlinkat`, `linkat` without `AT_SYMLINK_FOLLOW`, `mkfifoat`. Owner, mode, times and
//!   xattrs go through an fd opened `O_NOFOLLOW`, `*at` calls with `AT_SYMLINK_NOFOLLOW`, or
//!   `lsetxattr` on `/proc/self/fd/<parent>/<name>` — never through a link.
//! - Hardlink targets pass the same name and parent checks, so they cannot name a file outside;
//!   a link to a symlink links the symlink itself, never the file it points to.
//! - Devices are skipped and reported: a user namespace may not create them (`mknod(2)`).
//! - Extended attributes: `user.*` and `security.capability` are kept (a namespace root's
//!   capability becomes a v3 namespaced one, see capabilities(7)); the rest is skipped with a
//!   warning. `user.overlay.*`, `user.fuseoverlayfs.*` and `user.containers.*` are dropped: they
//!   steer overlayfs (redirects, metacopy, opaque) and fuse-overlayfs, and only the whiteout
//!   conversion below may set them.
//! - Contents are copied exactly the size the header gives; a stream that ends early is an
//!   error, never a short file. Nothing here panics on a hostile header.
//!
//! Whiteouts: the OCI image spec (layer.md) marks deletions with `dir/.wh.NAME` and an opaque
//! directory with `dir/.wh..wh..opq`. They are converted here to what overlayfs reads natively
//! — a character device 0/0 at `dir/NAME`, and the xattrs `user.overlay.opaque=y` (kernel
//! overlayfs with `userxattr`) and `user.fuseoverlayfs.opaque=y` — so the directory serves as a
//! lower layer as it is, with no conversion at mount time. Since Linux 5.8 a 0/0 device needs
//! no `CAP_MKNOD`, in a user namespace too. Per the spec the opaque marker hides lower layers
//! only: entries of the same layer stay. aufs metadata (`.wh..wh.*`) is skipped.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag, AT_FDCWD};
use nix::sys::stat::{fchmod, fstatat, futimens, mkdirat, mknodat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, mkfifoat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};
use tar::EntryType;

use crate::sys;

/// How to apply a layer.
#[derive(Debug, Clone)]
pub struct Options {
    /// Highest uid/gid that exists in the namespace (65536 with a full subordinate range, 0 with
    /// a single-id map). Owners above it are remapped to 0 (counted in the report) instead of
    /// failing.
    pub max_uid: u32,
    pub max_gid: u32,
    /// Apply owners (fchown, or fchownat without following a symlink); false in tests run
    /// unprivileged: owners are then ignored.
    pub apply_owners: bool,
}

/// What applying a layer did, beyond the files themselves.
#[derive(Debug, Default)]
pub struct Report {
    /// Entries applied: files, directories, links, FIFOs, whiteouts and opaque markers.
    pub files: u64,
    /// Bytes of regular-file content written.
    pub bytes: u64,
    /// Entries whose uid or gid was above the namespace's range and became 0.
    pub remapped_owners: u64,
    /// Character and block devices left out, by name.
    pub skipped_devices: Vec<String>,
    /// What was skipped or degraded; a repeating cause is said once per layer.
    pub warnings: Vec<String>,
}

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTRS: [&str; 2] = ["user.overlay.opaque", "user.fuseoverlayfs.opaque"];
const RESERVED_XATTRS: [&str; 3] = ["user.overlay.", "user.fuseoverlayfs.", "user.containers."];

/// Applies the layer read from `tar` (already decompressed) into `dest`, an existing empty
/// directory. Errors name the entry and the cause: "layer entry `../etc/passwd`: path escapes
/// the layer".
pub fn unpack(tar: impl Read, dest: &Path, opts: &Options) -> Result<Report> {
    let root = openat(AT_FDCWD, dest, dir_flags(), Mode::empty())
        .map_err(|e| anyhow!("open layer directory `{}`: {}", dest.display(), e.desc()))?;
    let mut u = Unpacker {
        root,
        dest,
        opts,
        report: Report::default(),
        dirs: Vec::new(),
        warned: HashSet::new(),
        proc_fd: Path::new("/proc/self/fd").is_dir(),
    };
    let mut archive = tar::Archive::new(tar);
    let mut last = String::new();
    for entry in archive.entries().context("read layer")? {
        let mut entry = entry.map_err(|e| match last.as_str() {
            "" => anyhow!("read layer: {e}"),
            last => anyhow!("read layer after entry `{last}`: {e}"),
        })?;
        last = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        u.apply(&mut entry).with_context(|| format!("layer entry `{last}`"))?;
    }
    u.finish_dirs()?;
    Ok(u.report)
}

/// Owner, mode, time and xattrs of one entry, as the archive gives them.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(String, Vec<u8>)>,
}

struct Unpacker<'a> {
    root: OwnedFd,
    dest: &'a Path,
    opts: &'a Options,
    report: Report,
    /// Directory modes and times, applied once all entries are in: adding an entry changes
    /// its directory's mtime, and a read-only mode could stop the next entry.
    dirs: Vec<(Vec<OsString>, u32, TimeSpec)>,
    warned: HashSet<String>,
    proc_fd: bool,
}

impl Unpacker<'_> {
    fn apply<R: Read>(&mut self, e: &mut tar::Entry<R>) -> Result<()> {
        let kind = e.header().entry_type();
        if kind.is_pax_global_extensions() {
            return Ok(());
        }
        let raw = e.path_bytes().into_owned();
        let path = components(&raw)?;
        if let Some((name, parent)) = path.split_last() {
            if name.as_bytes().starts_with(WHITEOUT) {
                return self.whiteout(parent, name.as_bytes());
            }
        }
        match kind {
            EntryType::Char | EntryType::Block => {
                self.report.skipped_devices.push(show(&path));
                return Ok(());
            }
            EntryType::Regular
            | EntryType::Continuous
            | EntryType::GNUSparse
            | EntryType::Directory
            | EntryType::Symlink
            | EntryType::Link
            | EntryType::Fifo => {}
            other => {
                let byte = [other.as_byte()].escape_ascii().to_string();
                self.report.warnings.push(format!("skipped `{}`: unsupported entry type `{byte}`", show(&path)));
                return Ok(());
            }
        }
        // Old (v7) archives mark directories only with a trailing slash.
        let is_dir = kind == EntryType::Directory || (kind == EntryType::Regular && raw.ends_with(b"/"));
        if is_dir {
            let meta = self.meta(e)?;
            self.dir(&path, meta)?;
        } else {
            let Some((name, parent)) = path.split_last() else {
                bail!("only a directory may name the layer root");
            };
            let dir = self.parent(parent)?;
            match kind {
                EntryType::Link => {
                    let target = e.link_name_bytes().context("hardlink without a target")?.into_owned();
                    self.hardlink(&dir, name, &path, &target)?;
                }
                EntryType::Symlink => {
                    let target = e.link_name_bytes().context("symlink without a target")?.into_owned();
                    let meta = self.meta(e)?;
                    self.symlink(&dir, name, &path, &target, &meta)?;
                }
                EntryType::Fifo => {
                    let meta = self.meta(e)?;
                    self.fifo(&dir, name, &path, &meta)?;
                }
                _ => {
                    let meta = self.meta(e)?;
                    self.file(&dir, name, &path, e, &meta)?;
                }
            }
        }
        self.report.files += 1;
        Ok(())
    }

    fn meta<R: Read>(&mut self, e: &mut tar::Entry<R>) -> Result<Meta> {
        let h = e.header();
        let mode = h.mode().context("read mode")? & 0o7777;
        let (uid, gid) = (h.uid().context("read uid")?, h.gid().context("read gid")?);
        let mut mtime = TimeSpec::new(i64::try_from(h.mtime().context("read mtime")?).unwrap_or(i64::MAX), 0);
        let in_range = |id: u64, max: u32| u32::try_from(id).ok().filter(|id| *id <= max);
        let (uid, gid) = (in_range(uid, self.opts.max_uid), in_range(gid, self.opts.max_gid));
        if uid.is_none() || gid.is_none() {
            self.report.remapped_owners += 1;
        }
        let mut xattrs = Vec::new();
        if let Some(exts) = e.pax_extensions().context("read PAX extensions")? {
            for ext in exts {
                let ext = ext.context("read PAX extensions")?;
                let Ok(key) = ext.key() else { continue };
                if key == "mtime" {
                    mtime = pax_time(ext.value_bytes()).unwrap_or(mtime);
                } else if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    if self.keep_xattr(name) {
                        xattrs.push((name.to_owned(), ext.value_bytes().to_vec()));
                    }
                }
            }
        }
        Ok(Meta { mode, uid: uid.unwrap_or(0), gid: gid.unwrap_or(0), mtime, xattrs })
    }

    fn keep_xattr(&mut self, name: &str) -> bool {
        if RESERVED_XATTRS.iter().any(|p| name.starts_with(p)) {
            self.warn_once(name, format!("dropped extended attribute `{name}`: only whiteouts may steer the overlay"));
            false
        } else if name.starts_with("user.") || name == "security.capability" {
            true
        } else {
            let class = if name.starts_with("trusted.") { "trusted.*" } else { name };
            self.warn_once(class, format!("skipped extended attribute `{class}`: not settable in a user namespace"));
            false
        }
    }

    fn warn_once(&mut self, key: &str, warning: String) {
        if self.warned.insert(key.to_owned()) {
            self.report.warnings.push(warning);
        }
    }

    /// Opens the directory at `path` (components below the layer root), following symlinks only
    /// while they stay beneath the root.
    fn open_dir(&self, path: &[OsString]) -> nix::Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(dir_flags())
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        let rel: PathBuf = if path.is_empty() { PathBuf::from(".") } else { path.iter().collect() };
        openat2(&self.root, &rel, how)
    }

    /// Opens the directory at `path`, creating missing components.
    fn parent(&self, path: &[OsString]) -> Result<OwnedFd> {
        match self.open_dir(path) {
            Err(Errno::ENOENT) => {}
            r => return r.map_err(|e| resolve_error(e, path)),
        }
        let mut dir = self.root.try_clone().context("duplicate the layer root fd")?;
        for (i, name) in path.iter().enumerate() {
            let prefix = &path[..=i];
            dir = match self.open_dir(prefix) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => {
                    let mode = Mode::from_bits_truncate(0o755);
                    match mkdirat(&dir, name.as_os_str(), mode) {
                        Err(Errno::EEXIST) => bail!("`{}` is a dangling symlink", show(prefix)),
                        r => r.ctx(|| format!("create directory `{}`", show(prefix)))?,
                    }
                    let fd = self.open_dir(prefix).map_err(|e| resolve_error(e, prefix))?;
                    // Not left to the umask: the container's users must be able to traverse it.
                    fchmod(&fd, mode).ctx(|| format!("chmod directory `{}`", show(prefix)))?;
                    fd
                }
                Err(e) => return Err(resolve_error(e, prefix)),
            };
        }
        Ok(dir)
    }

    /// Where `lsetxattr` finds `name` in `dir` without following a symlink on the way: the
    /// `/proc/self/fd` link is an intermediate component, `name` the last.
    fn at(&self, dir: &OwnedFd, name: &OsStr, path: &[OsString]) -> PathBuf {
        match self.proc_fd {
            true => Path::new("/proc/self/fd").join(dir.as_raw_fd().to_string()).join(name),
            false => path.iter().fold(self.dest.to_path_buf(), |p, c| p.join(c)),
        }
    }

    /// Like [`Self::at`] for the directory `dir` itself.
    fn at_dir(&self, dir: &OwnedFd, path: &[OsString]) -> PathBuf {
        self.at(dir, OsStr::new("."), path)
    }

    fn chown(&self, fd: &impl AsFd, m: &Meta) -> Result<()> {
        if self.opts.apply_owners {
            fchown(fd, Some(Uid::from_raw(m.uid)), Some(Gid::from_raw(m.gid)))
                .ctx(|| format!("chown to {}:{}", m.uid, m.gid))?;
        }
        Ok(())
    }

    /// Sets the kept archive xattrs; a failure is a warning (the file itself is right).
    fn set_xattrs(&mut self, at: &Path, m: &Meta, path: &[OsString]) {
        for (name, value) in &m.xattrs {
            if let Err(e) = sys::lset_xattr(at, name, value) {
                if name == "security.capability" {
                    self.report.warnings.push(format!("`{}`: file capabilities dropped: {e}", show(path)));
                } else {
                    self.warn_once(name, format!("could not set extended attribute `{name}`: {e}"));
                }
            }
        }
    }

    /// Makes way for a new entry at `name` in `dir`: returns true if a directory is there and
    /// `keep_dir` asks to reuse it; anything else there goes, a directory with its contents.
    fn clear(&self, dir: &OwnedFd, name: &OsStr, keep_dir: bool) -> Result<bool> {
        let st = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::ENOENT) => return Ok(false),
            Err(e) => bail!("inspect the existing entry: {}", e.desc()),
        };
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        if is_dir && keep_dir {
            return Ok(true);
        }
        remove_all(dir.as_fd(), name, is_dir).ctx(|| "remove the existing entry".into())?;
        Ok(false)
    }

    fn file<R: Read>(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &[OsString],
        e: &mut tar::Entry<R>,
        m: &Meta,
    ) -> Result<()> {
        self.clear(dir, name, false)?;
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(dir, name, flags, Mode::from_bits_truncate(0o600)).ctx(|| "create file".into())?;
        let mut file = File::from(fd);
        let want = e.size();
        let got = io::copy(e, &mut file).context("write content")?;
        if got != want {
            bail!("archive ends inside the file ({got} of {want} bytes)");
        }
        self.report.bytes += got;
        // Owner first: chown clears setuid/setgid bits and file capabilities.
        self.chown(&file, m)?;
        self.set_xattrs(&self.at(dir, name, path), m, path);
        fchmod(&file, Mode::from_bits_truncate(m.mode)).ctx(|| format!("chmod {:o}", m.mode))?;
        futimens(&file, &m.mtime, &m.mtime).ctx(|| "set times".into())
    }

    fn dir(&mut self, path: &[OsString], m: Meta) -> Result<()> {
        let fd = match path.split_last() {
            None => self.root.try_clone().context("duplicate the layer root fd")?,
            Some((name, parent)) => {
                let dir = self.parent(parent)?;
                if !self.clear(&dir, name, true)? {
                    mkdirat(&dir, name.as_os_str(), Mode::from_bits_truncate(0o700))
                        .ctx(|| "create directory".into())?;
                }
                openat(&dir, name.as_os_str(), dir_flags() | OFlag::O_NOFOLLOW, Mode::empty())
                    .ctx(|| "open directory".into())?
            }
        };
        self.chown(&fd, &m)?;
        self.set_xattrs(&self.at_dir(&fd, path), &m, path);
        self.dirs.push((path.to_vec(), m.mode, m.mtime));
        Ok(())
    }

    fn symlink(&mut self, dir: &OwnedFd, name: &OsStr, path: &[OsString], target: &[u8], m: &Meta) -> Result<()> {
        if target.contains(&0) {
            bail!("symlink target contains a NUL byte");
        }
        self.clear(dir, name, false)?;
        symlinkat(OsStr::from_bytes(target), dir, name).ctx(|| "create symlink".into())?;
        if self.opts.apply_owners {
            let (uid, gid) = (Some(Uid::from_raw(m.uid)), Some(Gid::from_raw(m.gid)));
            fchownat(dir, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                .ctx(|| format!("chown to {}:{}", m.uid, m.gid))?;
        }
        self.set_xattrs(&self.at(dir, name, path), m, path);
        utimensat(dir, name, &m.mtime, &m.mtime, UtimensatFlags::NoFollowSymlink).ctx(|| "set times".into())
    }

    fn hardlink(&mut self, dir: &OwnedFd, name: &OsStr, path: &[OsString], target: &[u8]) -> Result<()> {
        let shown = String::from_utf8_lossy(target);
        let tpath = components(target).with_context(|| format!("hardlink target `{shown}`"))?;
        let Some((tname, tparent)) = tpath.split_last() else {
            bail!("hardlink to the layer root");
        };
        if tpath == path {
            return Ok(());
        }
        let tdir = self
            .open_dir(tparent)
            .map_err(|e| resolve_error(e, tparent))
            .with_context(|| format!("hardlink target `{shown}`"))?;
        fstatat(&tdir, tname.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW).ctx(|| format!("hardlink target `{shown}`"))?;
        self.clear(dir, name, false)?;
        // Without AT_SYMLINK_FOLLOW: a link to a symlink is a second name for the symlink.
        linkat(&tdir, tname.as_os_str(), dir, name, AtFlags::empty()).ctx(|| format!("link to `{shown}`"))
    }

    fn fifo(&mut self, dir: &OwnedFd, name: &OsStr, path: &[OsString], m: &Meta) -> Result<()> {
        self.clear(dir, name, false)?;
        mkfifoat(dir, name, Mode::from_bits_truncate(0o600)).ctx(|| "create FIFO".into())?;
        // O_NONBLOCK: opening a FIFO for reading must not wait for a writer.
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = openat(dir, name, flags, Mode::empty()).ctx(|| "open FIFO".into())?;
        self.chown(&fd, m)?;
        self.set_xattrs(&self.at(dir, name, path), m, path);
        fchmod(&fd, Mode::from_bits_truncate(m.mode)).ctx(|| format!("chmod {:o}", m.mode))?;
        futimens(&fd, &m.mtime, &m.mtime).ctx(|| "set times".into())
    }

    fn whiteout(&mut self, parent: &[OsString], name: &[u8]) -> Result<()> {
        let dir = self.parent(parent)?;
        if name == OPAQUE {
            let at = self.at_dir(&dir, parent);
            for x in OPAQUE_XATTRS {
                sys::lset_xattr(&at, x, b"y").with_context(|| format!("mark directory opaque: set `{x}`"))?;
            }
            self.report.files += 1;
            return Ok(());
        }
        let hidden = &name[WHITEOUT.len()..];
        if hidden.starts_with(WHITEOUT) {
            self.warn_once(".wh..wh.", "skipped aufs metadata (`.wh..wh.*` entries)".into());
            return Ok(());
        }
        if matches!(hidden, b"" | b"." | b"..") {
            bail!("whiteout names no file");
        }
        let hidden = OsStr::from_bytes(hidden);
        self.clear(&dir, hidden, false)?;
        mknodat(&dir, hidden, SFlag::S_IFCHR, Mode::empty(), 0)
            .ctx(|| format!("create whiteout (character device 0/0) `{}`", hidden.to_string_lossy()))?;
        self.report.files += 1;
        Ok(())
    }

    /// Applies directory modes and times, deepest first: a parent's mode never blocks reaching
    /// a child, and at one depth a later entry for the same directory wins.
    fn finish_dirs(&mut self) -> Result<()> {
        let mut dirs = std::mem::take(&mut self.dirs);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.0.len()));
        for (path, mode, mtime) in dirs {
            let opened = match path.split_last() {
                None => self.open_dir(&[]),
                Some((name, parent)) => self
                    .open_dir(parent)
                    .and_then(|dir| openat(&dir, name.as_os_str(), dir_flags() | OFlag::O_NOFOLLOW, Mode::empty())),
            };
            let fd = match opened {
                Ok(fd) => fd,
                // Replaced or removed by a later entry of the layer.
                Err(Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::EXDEV) => continue,
                Err(e) => bail!("layer entry `{}`: open directory: {}", show(&path), e.desc()),
            };
            fchmod(&fd, Mode::from_bits_truncate(mode))
                .ctx(|| format!("layer entry `{}`: chmod {mode:o}", show(&path)))?;
            futimens(&fd, &mtime, &mtime).ctx(|| format!("layer entry `{}`: set times", show(&path)))?;
        }
        Ok(())
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
}

/// Splits an entry name into components below the layer root: leading `/` stripped, `.` and
/// empty components dropped, `..` resolved lexically and refused above the root.
fn components(raw: &[u8]) -> Result<Vec<OsString>> {
    if raw.contains(&0) {
        bail!("name contains a NUL byte");
    }
    let mut path: Vec<OsString> = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                if path.pop().is_none() {
                    bail!("path escapes the layer");
                }
            }
            c => path.push(OsStr::from_bytes(c).to_owned()),
        }
    }
    Ok(path)
}

fn show(path: &[OsString]) -> String {
    match path {
        [] => ".".into(),
        _ => path.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/"),
    }
}

fn resolve_error(e: Errno, path: &[OsString]) -> anyhow::Error {
    match e {
        Errno::EXDEV => anyhow!("path escapes the layer (`{}` leads outside through a symlink)", show(path)),
        Errno::ENOTDIR => anyhow!("`{}` is not a directory", show(path)),
        e => anyhow!("open directory `{}`: {}", show(path), e.desc()),
    }
}

/// Removes `name` from `dir`, a directory with all it holds, without following symlinks.
fn remove_all(dir: BorrowedFd, name: &OsStr, is_dir: bool) -> nix::Result<()> {
    if !is_dir {
        return unlinkat(dir, name, UnlinkatFlags::NoRemoveDir);
    }
    let mut sub = Dir::from_fd(openat(dir, name, dir_flags() | OFlag::O_NOFOLLOW, Mode::empty())?)?;
    let mut children = Vec::new();
    for entry in sub.iter() {
        let entry = entry?;
        let child = OsStr::from_bytes(entry.file_name().to_bytes()).to_owned();
        if child != "." && child != ".." {
            children.push((child, entry.file_type()));
        }
    }
    for (child, kind) in children {
        let child_is_dir = match kind {
            Some(kind) => kind == Type::Directory,
            None => {
                fstatat(&sub, child.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?.st_mode & libc::S_IFMT == libc::S_IFDIR
            }
        };
        remove_all(sub.as_fd(), &child, child_is_dir)?;
    }
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}

/// A PAX time, `SECONDS[.FRACTION]`; a fraction of a negative time is ignored.
fn pax_time(value: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(value).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if s.starts_with('-') || frac.is_empty() {
        return Some(TimeSpec::new(secs, 0));
    }
    let digits: String = frac.chars().take(9).collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(TimeSpec::new(secs, format!("{digits:0<9}").parse().ok()?))
}

/// Turns a nix errno into an error that names the step: `create file: Permission denied`.
trait Ctx<T> {
    fn ctx(self, step: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Ctx<T> for nix::Result<T> {
    fn ctx(self, step: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| anyhow!("{}: {}", step(), e.desc()))
    }
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
