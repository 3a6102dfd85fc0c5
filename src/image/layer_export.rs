//! Layers out of the store: stage 1 exports each layer directory as an OCI tar inside the user
//! namespace (files owned by subordinate ids are only readable there, and owners come out as the
//! container's ids) into a pipe, and the `rl` parent hashes it (the new diff id) and writes it
//! to a staging file, gzipped for a registry or plain for an archive. Used by `rl push` and
//! `rl save`.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::digest::{self, Hashing};
use crate::sandbox::msg::{Job, Msg};
use crate::sandbox::parent::{Spawn, Stage1};
use crate::userns::MapPlan;

/// Stage 1's export job: one layer dir per fd sent with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportJob {
    pub layers: Vec<PathBuf>,
}

/// An exported layer in a staging file.
#[derive(Debug, Clone)]
pub struct Blob {
    pub path: PathBuf,
    /// `sha256:` of the file as written (compressed or not).
    pub digest: String,
    pub size: u64,
    /// `sha256:` of the tar.
    pub diff_id: String,
}

/// Exports `dirs` through stage 1 and gzips each into `work`, in parallel.
/// With `gzip` the files are `layer-N.tar.gz`, else `layer-N.tar`.
pub fn export_layers(dirs: &[PathBuf], plan: &MapPlan, work: &Path, gzip: bool) -> Result<Vec<Blob>> {
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    for _ in dirs {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create a layer pipe")?;
        readers.push(r);
        writers.push(w);
    }
    let job = ExportJob { layers: dirs.to_vec() };
    let how = Spawn { fds: writers, ..Spawn::default() };
    let stage = Stage1::spawn(plan, Job::Export(job), how, || Ok(()))?;
    let blobs: Vec<Result<Blob>> = std::thread::scope(|s| {
        let handles: Vec<_> = readers
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                let name = if gzip { format!("layer-{i}.tar.gz") } else { format!("layer-{i}.tar") };
                s.spawn(move || write_layer(r, &work.join(name), gzip))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a compression thread panicked"))))
            .collect()
    });
    let reported = stage.expect_msg();
    stage.reap();
    match reported? {
        Msg::Exported { results } => {
            for (r, d) in results.into_iter().zip(dirs) {
                r.map_err(|e| anyhow!("export layer `{}`: {e}", d.display()))?;
            }
        }
        other => bail!("the stage-1 process sent an unexpected {other:?}"),
    }
    blobs.into_iter().collect()
}

fn write_layer(r: OwnedFd, path: &Path, gzip: bool) -> Result<Blob> {
    let mut tar = Hashing::new(std::io::BufReader::with_capacity(256 << 10, File::from(r)));
    let file = File::create(path).with_context(|| format!("create `{}`", path.display()))?;
    let hashed = digest::HashingWriter::new(BufWriter::new(file));
    let mut out = if gzip {
        Out::Gzip(Box::new(flate2::write::GzEncoder::new(hashed, flate2::Compression::fast())))
    } else {
        Out::Plain(hashed)
    };
    // The compressor sees fixed-size chunks whatever the pipe delivers: its output (and so the
    // blob digest) then depends on the tar alone, and a second push finds the blobs in place.
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let mut n = 0;
        while n < buf.len() {
            match tar.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).context("read the exported layer"),
            }
        }
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).with_context(|| format!("write `{}`", path.display()))?;
    }
    let hashed = match out {
        Out::Gzip(gz) => gz.finish().context("compress the layer")?,
        Out::Plain(w) => w,
    };
    let (mut file, digest, size) = hashed.finish();
    file.flush().with_context(|| format!("write `{}`", path.display()))?;
    let (diff_id, _) = tar.finish();
    Ok(Blob { path: path.to_path_buf(), digest, size, diff_id })
}

enum Out<W: Write> {
    Gzip(Box<flate2::write::GzEncoder<W>>),
    Plain(W),
}

impl<W: Write> Write for Out<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Out::Gzip(w) => w.write(buf),
            Out::Plain(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Out::Gzip(w) => w.flush(),
            Out::Plain(w) => w.flush(),
        }
    }
}

/// Stage 1's side: export every layer into its pipe at once.
pub fn export_all(job: &ExportJob, fds: Vec<OwnedFd>) -> Vec<Result<(), String>> {
    let opts = crate::store::export::Options { skip_empty: Vec::new() };
    super::per_layer(&job.layers, fds, |dir, fd| {
        let out = BufWriter::with_capacity(256 << 10, File::from(fd));
        crate::store::export::export(dir, out, &opts).map(drop)
    })
}
