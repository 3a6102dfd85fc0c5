//! `rl export [-o FILE] CONTAINER`: a container's whole filesystem — its image's layers
//! with its changes on top, as the container sees it — as one tar, to FILE (written beside it and
//! renamed when complete) or to stdout, but never to a terminal. For a stopped container stage 1
//! mounts the overlay read-only in a private mount namespace; a running one it joins
//! ([`crate::sandbox::copy`]). Either way the walk stays on the root filesystem (volumes and
//! /proc are left out) and owners are the container's ids. `rl import` turns the tar back into an image.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;

use crate::hint::with_fix;
use crate::sandbox::copy::{FsJob, Target};
use crate::store::Paths;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Write the tar to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// The container: a name, id or unique id prefix.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

/// `rl export`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: ExportArgs) -> Result<i32> {
    if args.output.is_none() && std::io::stdout().is_terminal() {
        return Err(with_fix(
            "export: refusing to write a tar to a terminal",
            "give a file with `-o FILE`, or redirect: `rl export CONTAINER > FILE`",
        ));
    }
    let paths = Paths::resolve(root, runroot)?;
    let t = Target::find(&paths, &args.container)?;
    let job = FsJob::Export { mount: t.mounting() };
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create a pipe")?;
    let result = match &args.output {
        None => t.run_job(job, w, || {
            let mut out = std::io::stdout().lock();
            std::io::copy(&mut File::from(r), &mut out).context("write to stdout")?;
            out.flush().context("write to stdout")
        }),
        Some(path) => t.run_job(job, w, || write_beside(path, File::from(r))),
    };
    result.with_context(|| format!("export container `{}`", t.cfg.name))?;
    Ok(0)
}

/// Copies `input` to `path` through a temporary file in its directory, renamed over it when
/// complete: FILE is never half written.
fn write_beside(path: &Path, mut input: File) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{base}.rl-export-{}", &crate::state::new_id()?[..8]));
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("create `{}`", tmp.display()))?;
    let written = (|| {
        std::io::copy(&mut input, &mut file).with_context(|| format!("write `{}`", tmp.display()))?;
        file.sync_all().with_context(|| format!("write `{}`", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("rename `{}` to `{}`", tmp.display(), path.display()))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
