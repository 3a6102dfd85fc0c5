//! `rl cp [-a] [-L] CONTAINER:SRC DEST|-` and `rl cp SRC|- CONTAINER:DEST`: files between the
//! host and a container, running or stopped, as `docker cp` places them (into a directory that exists, else
//! as the named path; `SRC/.` copies a directory's contents; `-` is a tar stream on
//! stdin/stdout). The container side runs in stage 1 ([`crate::sandbox::copy`]): paths resolve
//! inside the container's root, symlinks included. The host side runs here, as the user: files
//! copied out belong to the user; files copied in belong to the container's root, or with `-a`
//! keep their uid and gid.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use tar::{EntryType, Header};

use crate::hint::with_fix;
use crate::sandbox::copy::{self, FsJob, Target, Top};
use crate::state;
use crate::store::{unpack, Paths};

#[derive(Debug, Args)]
pub struct CpArgs {
    /// Keep the uid and gid of files copied into the container.
    #[arg(short, long)]
    pub archive: bool,
    /// Follow a symlink named as SRC.
    #[arg(short = 'L', long)]
    pub follow_link: bool,
    /// CONTAINER:PATH, a host path, or `-` (a tar stream on stdin).
    #[arg(value_name = "SRC")]
    pub src: String,
    /// CONTAINER:PATH, a host path, or `-` (a tar stream to stdout).
    #[arg(value_name = "DEST")]
    pub dest: String,
}

/// `rl cp`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: CpArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    match (container_path(&args.src), container_path(&args.dest)) {
        (Some(_), Some(_)) => bail!("cp: copying between containers is not supported; copy through the host"),
        (None, None) => bail!("cp: name a container on one side: `CONTAINER:PATH`"),
        (Some((c, src)), None) => {
            let t = Target::find(&paths, c)?;
            copy_out(&t, src, &args.dest, args.follow_link)
                .with_context(|| format!("copy `{src}` from container `{}`", t.cfg.name))?;
        }
        (None, Some((c, dest))) => {
            let t = Target::find(&paths, c)?;
            copy_in(&t, &args.src, dest, &args)
                .with_context(|| format!("copy `{}` into container `{}`", args.src, t.cfg.name))?;
        }
    }
    Ok(0)
}

/// `NAME:PATH` → (NAME, PATH), as Docker tells them apart: a colon before any slash. A host path
/// with a colon can be written `./a:b`.
fn container_path(arg: &str) -> Option<(&str, &str)> {
    let (c, p) = arg.split_once(':')?;
    (!c.is_empty() && !c.contains('/')).then_some((c, p))
}

/// The container `query` names, refusing one that runs (`verb` says what was to be done).
pub fn stopped(paths: &Paths, query: &str, verb: &str) -> Result<Target> {
    let t = Target::find(paths, query)?;
    if t.pid.is_some() {
        return Err(with_fix(
            format!("{verb} container `{query}`: it is running, and rl has no way to pause it"),
            "wait for it to exit, then run the command again",
        ));
    }
    Ok(t)
}

fn max_inside(maps: &[crate::userns::IdMapping]) -> u32 {
    maps.iter().map(|m| m.inside + m.count.saturating_sub(1)).max().unwrap_or(0)
}

/// Splits `SRC/.` (a directory's contents) from SRC.
fn contents_of(path: &str) -> (&str, bool) {
    match path.strip_suffix("/.") {
        Some(dir) => (if dir.is_empty() { "/" } else { dir }, true),
        None => (path, path == "."),
    }
}

fn copy_out(t: &Target, src: &str, dest: &str, follow: bool) -> Result<()> {
    let (src_path, contents) = contents_of(src);
    // Docker resolves a relative path against the container's root.
    let abs = format!("/{}", src_path.trim_start_matches('/'));
    let contents = contents || copy::split(&abs).is_none();
    let top = copy::split(&abs).map(|(_, n)| n.to_string()).unwrap_or_default();
    let job = FsJob::CopyOut { mount: t.mounting(), path: abs.clone(), follow, contents };
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create a pipe")?;
    if dest == "-" {
        if std::io::stdout().is_terminal() {
            return Err(with_fix(
                "cp: refusing to write a tar stream to a terminal",
                "redirect it: `rl cp CONTAINER:PATH - > FILE`",
            ));
        }
        t.run_job(job, w, || {
            let mut out = std::io::stdout().lock();
            std::io::copy(&mut File::from(r), &mut out).context("write to stdout")?;
            out.flush().context("write to stdout")
        })
    } else {
        t.run_job(job, w, || place(File::from(r), Path::new(dest), (!contents).then_some(top.as_str())))
    }
}

/// Extracts a tar on the host at `dest`, as `docker cp` places it (see the module doc).
fn place(tar: File, dest: &Path, top: Option<&str>) -> Result<()> {
    let opts = unpack::Options { max_uid: u32::MAX, max_gid: u32::MAX, apply_owners: false };
    let input = std::io::BufReader::with_capacity(256 << 10, tar);
    let unpack_into = |dir: &Path, input| -> Result<()> {
        let report = unpack::unpack(input, dir, &opts)?;
        for w in report.warnings {
            eprintln!("warning: {w}");
        }
        Ok(())
    };
    let shown = dest.display();
    let meta = std::fs::metadata(dest);
    if meta.as_ref().is_ok_and(|m| m.is_dir()) {
        return unpack_into(dest, input);
    }
    if let Err(e) = &meta {
        if e.kind() != std::io::ErrorKind::NotFound {
            bail!("`{shown}`: {e}");
        }
        if dest.as_os_str().to_string_lossy().ends_with('/') {
            bail!("`{shown}`: no such directory");
        }
    }
    let Some(top) = top else {
        if meta.is_ok() {
            bail!("`{shown}`: not a directory");
        }
        std::fs::create_dir(dest).with_context(|| format!("create `{shown}`"))?;
        return unpack_into(dest, input);
    };
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !parent.is_dir() {
        bail!("`{}`: no such directory", parent.display());
    }
    let tmp = parent.join(format!(".rl-cp-{}", &state::new_id()?[..12]));
    std::fs::create_dir(&tmp).with_context(|| format!("create `{}`", tmp.display()))?;
    let placed = (|| {
        unpack_into(&tmp, input)?;
        let staged = tmp.join(top);
        let is_dir = std::fs::symlink_metadata(&staged).map(|m| m.is_dir()).unwrap_or(false);
        if is_dir && meta.is_ok() {
            bail!("`{shown}`: cannot overwrite a non-directory with directory `{top}`");
        }
        std::fs::rename(&staged, dest).with_context(|| format!("rename to `{shown}`"))
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    placed
}

fn copy_in(t: &Target, src: &str, dest: &str, args: &CpArgs) -> Result<()> {
    let abs = format!("/{}", dest.trim_start_matches('/'));
    let abs = if dest.ends_with('/') && !abs.ends_with('/') { abs + "/" } else { abs };
    let (max_uid, max_gid) = (max_inside(&t.cfg.idmap.uid), max_inside(&t.cfg.idmap.gid));
    if src == "-" {
        if std::io::stdin().is_terminal() {
            return Err(with_fix(
                "cp: refusing to read a tar stream from a terminal",
                "redirect one: `rl cp - CONTAINER:DIR < FILE.tar`",
            ));
        }
        let stdin: OwnedFd = std::io::stdin().as_fd().try_clone_to_owned().context("duplicate stdin")?;
        let job = FsJob::CopyIn { mount: t.mounting(), path: abs, top: None, max_uid, max_gid };
        return t.run_job(job, stdin, || Ok(()));
    }
    let (src_path, contents) = contents_of(src);
    let src_path = Path::new(src_path);
    let meta = if args.follow_link { std::fs::metadata(src_path) } else { std::fs::symlink_metadata(src_path) };
    let meta = meta.map_err(|e| anyhow!("`{}`: {e}", src_path.display()))?;
    if contents && !meta.is_dir() {
        bail!("`{src}`: not a directory");
    }
    let name = src_path.file_name().map(|n| n.to_string_lossy().into_owned());
    let top = match (contents, name) {
        (false, Some(name)) => Some(Top { name, dir: meta.is_dir() }),
        (false, None) => bail!("`{src}`: name the file or directory itself"),
        (true, _) => None,
    };
    let owners = Owners { keep: args.archive };
    let job = FsJob::CopyIn { mount: t.mounting(), path: abs, top: top.clone(), max_uid, max_gid };
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create a pipe")?;
    t.run_job(job, r, || {
        let mut tar = tar::Builder::new(BufWriter::with_capacity(256 << 10, File::from(w)));
        match &top {
            Some(t) => add_tree(&mut tar, src_path, &meta, t.name.as_bytes(), owners, args.follow_link)?,
            None => add_children(&mut tar, src_path, b"", owners)?,
        }
        let mut out = tar.into_inner().context("finish the tar stream")?;
        out.flush().context("pass the files to the container")
    })
}

#[derive(Debug, Clone, Copy)]
struct Owners {
    keep: bool,
}

/// Appends host path `path` (already stat'ed) as `name`, and a directory's contents below it.
fn add_tree<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    meta: &std::fs::Metadata,
    name: &[u8],
    owners: Owners,
    follow: bool,
) -> Result<()> {
    let ft = meta.file_type();
    let mut h = Header::new_ustar();
    h.set_mode(meta.mode() & 0o7777);
    let (uid, gid) = if owners.keep { (meta.uid(), meta.gid()) } else { (0, 0) };
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    h.set_size(0);
    let shown = path.display();
    if ft.is_dir() {
        h.set_entry_type(EntryType::Directory);
        copy::append(tar, h, &[name, b"/"].concat(), None, std::io::empty())?;
        add_children(tar, path, name, owners)
    } else if ft.is_file() {
        let flags = if follow { 0 } else { libc::O_NOFOLLOW };
        let f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(flags)
            .open(path)
            .with_context(|| format!("open `{shown}`"))?;
        let size = f.metadata().with_context(|| format!("stat `{shown}`"))?.len();
        h.set_entry_type(EntryType::Regular);
        h.set_size(size);
        copy::append(tar, h, name, None, std::io::Read::take(f, size))
    } else if ft.is_symlink() {
        let target = std::fs::read_link(path).with_context(|| format!("read symlink `{shown}`"))?;
        h.set_entry_type(EntryType::Symlink);
        let target = target.as_os_str().as_encoded_bytes();
        copy::append(tar, h, name, Some(target), std::io::empty())
    } else if ft.is_fifo() {
        h.set_entry_type(EntryType::Fifo);
        copy::append(tar, h, name, None, std::io::empty())
    } else {
        eprintln!("warning: skipped `{shown}`: not a file, directory, symlink or FIFO");
        Ok(())
    }
}

/// Appends the entries of host directory `dir`, sorted, under `prefix` (empty: at the top).
fn add_children<W: Write>(tar: &mut tar::Builder<W>, dir: &Path, prefix: &[u8], owners: Owners) -> Result<()> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("read directory `{}`", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("read directory `{}`", dir.display()))?;
    names.sort();
    for n in names {
        let path = dir.join(&n);
        let meta = std::fs::symlink_metadata(&path).with_context(|| format!("stat `{}`", path.display()))?;
        let bytes = n.as_encoded_bytes();
        let name = if prefix.is_empty() { bytes.to_vec() } else { [prefix, b"/", bytes].concat() };
        add_tree(tar, &path, &meta, &name, owners, false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_container_paths_apart() {
        assert_eq!(container_path("c:/etc"), Some(("c", "/etc")));
        assert_eq!(container_path("c:"), Some(("c", "")));
        assert_eq!(container_path("/tmp/a:b"), None);
        assert_eq!(container_path("./a:b"), None);
        assert_eq!(container_path(":x"), None);
        assert_eq!(container_path("file"), None);
        assert_eq!(contents_of("/etc/."), ("/etc", true));
        assert_eq!(contents_of("/."), ("/", true));
        assert_eq!(contents_of("/etc"), ("/etc", false));
    }
}
