//! Writes a directory — an unpacked layer, or a container's overlay upper directory — back out
//! as one OCI layer: an uncompressed tar stream. The inverse of [`super::unpack`].
//!
//! Where it sits: `rl commit` (and image export) call [`export`] in the stage-1 process, inside
//! the container's user namespace, so `stat(2)` already gives the owners the container sees
//! (0..=65536) and the archive carries them as they are: numeric only, `uname`/`gname` empty.
//! Its output is then compressed and hashed by the caller.
//!
//! The archive is deterministic — the same tree gives the same bytes, so the same diff id:
//! entries sorted by name within each directory, a directory before its contents, mtime in whole
//! seconds, no atime or ctime, PAX (POSIX.1-2001) records only where a field does not fit: a name
//! or link target over 100 bytes (`path`, `linkpath`) and extended attributes
//! (`SCHILY.xattr.NAME`). The layer root itself is no entry, as in the layers `docker` writes.
//!
//! The walk goes through fds: every directory is opened from its parent's fd with `O_NOFOLLOW`,
//! `fstatat` does not follow, symlinks are read with `readlinkat`, and a file's content is read
//! through an fd checked to be the inode that was stat'ed — a symlink swapped in by a running
//! container cannot make the layer carry a host file. Like `tar --one-file-system`, a directory on
//! another filesystem (a mount point) is written but not entered; only directories are compared,
//! because overlayfs reports the lower filesystem's device for non-directories.
//!
//! Whiteouts: overlayfs (and fuse-overlayfs) record a deletion as a character device 0/0 and an
//! opaque directory with the xattr `user.overlay.opaque=y` (`trusted.overlay.opaque` without
//! `userxattr`, `user.fuseoverlayfs.opaque` for fuse-overlayfs). The OCI image spec (layer.md)
//! says `dir/.wh.NAME` and `dir/.wh..wh..opq`: empty regular files, written here with mode 0 and
//! owner 0. The opaque marker comes right after its directory, before the directory's own
//! entries, for extractors that clear the directory when they meet it. fuse-overlayfs, when it
//! cannot `mknod`, writes these names as plain files already; they pass through (an existing
//! `.wh..wh..opq` file is folded into the marker). Other devices and sockets are left out with a
//! warning: an unprivileged user namespace can create neither again. Overlay redirects and
//! metacopy (an upper entry whose data stays in a lower layer) refuse the export: the directory
//! alone is then not the layer. With `userxattr` the kernel enables neither.
//!
//! Hardlinks: a non-directory with `st_nlink > 1` becomes a file the first time its inode is met
//! and a hardlink entry to that name after. Whiteout devices are exempt: overlayfs ≥ 5.8 makes
//! them all links of one shared inode.
//!
//! Extended attributes: `user.*` and `security.capability` (read inside the namespace, a
//! namespaced capability comes back as the plain v2 form, see capabilities(7)) are kept; the
//! overlay's own `user.overlay.*`, `user.fuseoverlayfs.*` and `user.containers.*` are not, nor
//! what a user namespace cannot set again (`trusted.*`, `security.selinux`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use nix::dir::Dir;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag, AT_FDCWD};
use nix::sys::stat::{fstat, fstatat, FileStat, Mode};
use tar::{Builder, EntryType, Header};

use crate::sys;

/// What to leave out of the layer.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Paths below the directory (relative, e.g. `etc/hosts`) left out when they are empty
    /// regular files: the bind-mount targets rl created in an upper directory (`etc/hosts`,
    /// `etc/hostname`, `etc/resolv.conf`). Written as usual when they have content.
    pub skip_empty: Vec<String>,
}

/// What the export wrote.
#[derive(Debug, Default)]
pub struct Summary {
    /// Archive entries, PAX headers not counted: files, directories, links, FIFOs, whiteouts and
    /// opaque markers.
    pub entries: u64,
    /// Bytes of regular-file content.
    pub bytes: u64,
    /// What was left out: devices other than whiteouts, sockets, mount points' contents.
    pub warnings: Vec<String>,
}

const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTRS: [&str; 3] = ["user.overlay.opaque", "trusted.overlay.opaque", "user.fuseoverlayfs.opaque"];
const RESERVED_XATTRS: [&str; 3] = ["user.overlay.", "user.fuseoverlayfs.", "user.containers."];
/// Overlay features whose upper entries are incomplete without the lower layers.
const INCOMPLETE_XATTRS: [&str; 4] =
    ["user.overlay.redirect", "trusted.overlay.redirect", "user.overlay.metacopy", "trusted.overlay.metacopy"];
/// The ustar `name` and `linkname` fields; longer ones go in PAX records.
const NAME_FIELD: usize = 100;

/// Writes `dir` as an uncompressed, deterministic OCI layer tar to `out` and finishes the
/// archive. Errors name the entry: "export `usr/bin/su`: read content: Permission denied".
pub fn export(dir: &Path, out: impl Write, opts: &Options) -> Result<Summary> {
    let root = openat(AT_FDCWD, dir, dir_flags(), Mode::empty())
        .map_err(|e| anyhow!("open directory `{}`: {}", dir.display(), e.desc()))?;
    let dev = fstat(&root).map_err(|e| anyhow!("stat `{}`: {}", dir.display(), e.desc()))?.st_dev;
    let root = Dir::from_fd(root).map_err(|e| anyhow!("read directory `{}`: {}", dir.display(), e.desc()))?;
    let skip = opts.skip_empty.iter().map(|p| p.trim_matches('/').as_bytes().to_vec()).collect();
    let mut x = Exporter {
        tar: Builder::new(out),
        dir,
        dev,
        skip,
        links: HashMap::new(),
        proc_fd: Path::new("/proc/self/fd").is_dir(),
        summary: Summary::default(),
    };
    x.walk(root, b"", false)?;
    let mut out = x.tar.into_inner().context("finish the layer archive")?;
    out.flush().context("write the layer archive")?;
    Ok(x.summary)
}

struct Exporter<'a, W: Write> {
    tar: Builder<W>,
    dir: &'a Path,
    /// The directory's filesystem: directories elsewhere are not entered.
    dev: u64,
    skip: Vec<Vec<u8>>,
    /// Inodes with more than one link already written, by (device, inode), to their first name.
    links: HashMap<(u64, u64), Vec<u8>>,
    proc_fd: bool,
    summary: Summary,
}

/// The extended attributes of one entry that matter here.
#[derive(Default)]
struct Attrs {
    keep: Vec<(String, Vec<u8>)>,
    opaque: bool,
}

impl<W: Write> Exporter<'_, W> {
    /// Writes the entries of `dir`, whose name in the archive is `prefix` (empty for the root),
    /// leaving out an opaque marker file already written as `marker`.
    fn walk(&mut self, mut dir: Dir, prefix: &[u8], marker: bool) -> Result<()> {
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(|e| anyhow!("read directory `{}`: {}", show(prefix), e.desc()))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." && !(marker && name == OPAQUE) {
                names.push(name.to_vec());
            }
        }
        names.sort();
        for name in names {
            let rel = join(prefix, &name);
            // Outside the context: errors below a directory name their own entry.
            if let Some((sub, marker)) =
                self.entry(&dir, &name, &rel).with_context(|| format!("export `{}`", show(&rel)))?
            {
                self.walk(sub, &rel, marker)?;
            }
        }
        Ok(())
    }

    /// Writes one entry; for a directory to enter, returns it and whether its opaque marker file
    /// was already written.
    fn entry(&mut self, dir: &Dir, name: &[u8], rel: &[u8]) -> Result<Option<(Dir, bool)>> {
        let os = OsStr::from_bytes(name);
        let st = fstatat(dir, os, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| anyhow!("stat: {}", e.desc()))?;
        let kind = st.st_mode & libc::S_IFMT;
        if kind == libc::S_IFCHR && st.st_rdev == 0 {
            let whiteout = join(parent(rel), &[WHITEOUT, name].concat());
            return self.add(blank(&st), &whiteout, None, &[], io::empty()).map(|()| None);
        }
        match kind {
            libc::S_IFCHR | libc::S_IFBLK => {
                self.summary.warnings.push(format!("skipped device `{}`: not recreatable unprivileged", show(rel)));
                return Ok(None);
            }
            libc::S_IFSOCK => {
                self.summary.warnings.push(format!("skipped socket `{}`", show(rel)));
                return Ok(None);
            }
            libc::S_IFREG if st.st_size == 0 && self.skip.iter().any(|s| s == rel) => return Ok(None),
            _ => {}
        }
        let attrs = self.attrs(dir, os, rel)?;
        if kind == libc::S_IFDIR {
            return self.dir(dir, os, rel, &st, &attrs);
        }
        let key = (st.st_dev, st.st_ino);
        if st.st_nlink > 1 {
            if let Some(first) = self.links.get(&key) {
                let first = first.clone();
                return self.add(header(EntryType::Link, &st), rel, Some(&first), &[], io::empty()).map(|()| None);
            }
        }
        match kind {
            libc::S_IFREG => {
                let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
                let fd = openat(dir, os, flags, Mode::empty()).map_err(|e| anyhow!("open: {}", e.desc()))?;
                let now = fstat(&fd).map_err(|e| anyhow!("stat: {}", e.desc()))?;
                if (now.st_dev, now.st_ino) != key || now.st_mode & libc::S_IFMT != libc::S_IFREG {
                    bail!("replaced while being read");
                }
                let size = u64::try_from(now.st_size).unwrap_or(0);
                let mut h = header(EntryType::Regular, &now);
                h.set_size(size);
                self.add(h, rel, None, &attrs.keep, Exact { inner: File::from(fd), left: size })?;
                self.summary.bytes += size;
            }
            libc::S_IFLNK => {
                let target = readlinkat(dir, os).map_err(|e| anyhow!("read symlink: {}", e.desc()))?;
                self.add(header(EntryType::Symlink, &st), rel, Some(target.as_bytes()), &attrs.keep, io::empty())?;
            }
            libc::S_IFIFO => self.add(header(EntryType::Fifo, &st), rel, None, &attrs.keep, io::empty())?,
            other => bail!("unknown file type {other:o}"),
        }
        if st.st_nlink > 1 {
            self.links.insert(key, rel.to_vec());
        }
        Ok(None)
    }

    /// Writes a directory (and its opaque marker) and opens it to enter, unless it is a mount point.
    fn dir(
        &mut self,
        parent: &Dir,
        name: &OsStr,
        rel: &[u8],
        st: &FileStat,
        attrs: &Attrs,
    ) -> Result<Option<(Dir, bool)>> {
        let slashed = [rel, b"/"].concat();
        if st.st_dev != self.dev {
            self.add(header(EntryType::Directory, st), &slashed, None, &attrs.keep, io::empty())?;
            self.summary.warnings.push(format!("`{}` is a mount point: its contents are left out", show(rel)));
            return Ok(None);
        }
        let flags = dir_flags() | OFlag::O_NOFOLLOW;
        let fd = openat(parent, name, flags, Mode::empty()).map_err(|e| anyhow!("open directory: {}", e.desc()))?;
        let now = fstat(&fd).map_err(|e| anyhow!("stat: {}", e.desc()))?;
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) {
            bail!("replaced while being read");
        }
        self.add(header(EntryType::Directory, st), &slashed, None, &attrs.keep, io::empty())?;
        // fuse-overlayfs's fallback marker file: folded into the one written here.
        let marker = fstatat(&fd, OsStr::from_bytes(OPAQUE), AtFlags::AT_SYMLINK_NOFOLLOW)
            .is_ok_and(|m| m.st_mode & libc::S_IFMT == libc::S_IFREG && m.st_size == 0);
        if attrs.opaque || marker {
            self.add(blank(st), &join(rel, OPAQUE), None, &[], io::empty())?;
        }
        let dir = Dir::from_fd(fd).map_err(|e| anyhow!("read directory: {}", e.desc()))?;
        Ok(Some((dir, marker)))
    }

    /// Reads the xattrs of `name` in `dir` without following a symlink on the way: the
    /// `/proc/self/fd` link is an intermediate component, `name` the last.
    fn attrs(&self, dir: &Dir, name: &OsStr, rel: &[u8]) -> Result<Attrs> {
        let at: PathBuf = if self.proc_fd {
            Path::new("/proc/self/fd").join(dir.as_fd().as_raw_fd().to_string()).join(name)
        } else {
            self.dir.join(OsStr::from_bytes(rel))
        };
        let mut names = match sys::llist_xattrs(&at) {
            Ok(names) => names,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP | libc::ENODATA)) => return Ok(Attrs::default()),
            Err(e) => bail!("list extended attributes: {e}"),
        };
        names.sort();
        let mut attrs = Attrs::default();
        for xname in names {
            if INCOMPLETE_XATTRS.contains(&xname.as_str()) {
                bail!(
                    "has `{xname}`: its data stays in a lower layer; mount the overlay without redirect_dir/metacopy"
                );
            }
            let opaque = OPAQUE_XATTRS.contains(&xname.as_str());
            let keep = !RESERVED_XATTRS.iter().any(|p| xname.starts_with(p))
                && (xname.starts_with("user.") || xname == "security.capability");
            if !opaque && !keep {
                continue;
            }
            let value = match sys::lget_xattr(&at, &xname) {
                Ok(value) => value,
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => continue,
                Err(e) => bail!("read extended attribute `{xname}`: {e}"),
            };
            if opaque {
                attrs.opaque |= value == b"y";
            } else {
                attrs.keep.push((xname, value));
            }
        }
        Ok(attrs)
    }

    /// Appends one entry named `name` (and, for links, pointing at `link`), with PAX records for
    /// what the ustar header cannot hold.
    fn add(
        &mut self,
        h: Header,
        name: &[u8],
        link: Option<&[u8]>,
        xattrs: &[(String, Vec<u8>)],
        data: impl Read,
    ) -> Result<()> {
        let records: Vec<(String, &[u8])> =
            xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice())).collect();
        append_entry(&mut self.tar, h, name, link, &records, data)?;
        self.summary.entries += 1;
        Ok(())
    }
}

/// Appends one entry named `name` (for links, pointing at `link`) with PAX `records` (full keys,
/// e.g. `SCHILY.xattr.user.x`), adding `path`/`linkpath` records for what the 100-byte ustar
/// fields cannot hold. Shared with `rl cp`'s archives.
pub(crate) fn append_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    mut h: Header,
    name: &[u8],
    link: Option<&[u8]>,
    records: &[(String, &[u8])],
    data: impl Read,
) -> Result<()> {
    let mut pax: Vec<(String, &[u8])> = Vec::new();
    // A header copied from another archive may carry its own name fields: start them empty.
    h.as_old_mut().name.fill(0);
    h.as_old_mut().linkname.fill(0);
    if let Some(u) = h.as_ustar_mut() {
        u.prefix.fill(0);
    }
    if name.len() > NAME_FIELD {
        pax.push(("path".into(), name));
    }
    let n = name.len().min(NAME_FIELD);
    h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
    if let Some(link) = link {
        if link.len() > NAME_FIELD {
            pax.push(("linkpath".into(), link));
        }
        let n = link.len().min(NAME_FIELD);
        h.as_old_mut().linkname[..n].copy_from_slice(&link[..n]);
    }
    pax.extend(records.iter().map(|(k, v)| (k.clone(), *v)));
    tar.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v))).context("write PAX header")?;
    h.set_cksum();
    tar.append(&h, data).context("write entry")
}

/// A ustar header with the type, permission bits, owner and mtime (whole seconds) of `st`.
pub(crate) fn header(kind: EntryType, st: &FileStat) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid.into());
    h.set_gid(st.st_gid.into());
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(0);
    h
}

/// An empty whiteout or opaque-marker file: mode 0, owner 0, the mtime of what it stands for.
fn blank(st: &FileStat) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(0);
    h
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
}

fn join(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    match prefix {
        [] => name.to_vec(),
        _ => [prefix, b"/", name].concat(),
    }
}

fn parent(rel: &[u8]) -> &[u8] {
    rel.iter().rposition(|&b| b == b'/').map_or(&[], |i| &rel[..i])
}

fn show(rel: &[u8]) -> String {
    match rel {
        [] => ".".into(),
        _ => String::from_utf8_lossy(rel).into_owned(),
    }
}

/// Reads exactly `left` bytes, the size the header promised: a file that shrinks while being
/// read is an error, never a short (corrupt) archive; one that grows is cut at the size.
struct Exact<R> {
    inner: R,
    left: u64,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "read content: file shrank while being read"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
#[path = "export_tests.rs"]
mod tests;
