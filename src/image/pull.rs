//! `rl pull`: manifest (or index → the platform's manifest) → config → the layers the store
//! lacks. Each missing layer downloads in its own thread of the `rl` parent, hashed as it
//! streams, into a pipe; one stage-1 process in the user's user namespace decompresses and
//! unpacks every pipe at once (a thread per layer) into staging directories, so file owners
//! become subordinate ids, and reports each layer's diff id. Only when the blob digest, size and
//! diff id all match does the parent rename a staging directory into `layers/`; anything else is
//! removed by the same stage-1 process (only it can delete files owned by subordinate ids).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::image::{Descriptor, ImageConfiguration};
use serde::{Deserialize, Serialize};

use super::auth;
use super::digest::{self, Hashing};
use super::manifest::{self, Compression, Fetched, Platform};
use super::reference::Reference;
use super::registries::Config;
use super::registry::Client;
use crate::sandbox::msg::{Job, Msg};
use crate::sandbox::parent::{Spawn, Stage1};
use crate::store::images::{self, ImageRecord};
use crate::store::{lock, unpack, Paths};
use crate::userns::MapPlan;

/// One layer for stage 1 to unpack; its stream arrives on the fd sent with the job.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerJob {
    pub staging: PathBuf,
    pub compression: Compression,
    /// The image it is for, as warnings name it.
    pub image: String,
}

/// The unpack job: layers in the order of the fds sent with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnpackJob {
    pub layers: Vec<LayerJob>,
    pub max_uid: u32,
    pub max_gid: u32,
}

/// How to pull.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub platform: Option<Platform>,
    pub quiet: bool,
}

/// Pulls `r` into the store and returns its record (already stored images are re-tagged).
pub fn pull(paths: &Paths, r: &Reference, plan: &MapPlan, opts: &Options) -> Result<ImageRecord> {
    images::init(paths)?;
    let config = Config::load()?;
    let endpoints = config.endpoints(&r.name())?;
    let last = endpoints.len() - 1;
    for (i, e) in endpoints.iter().enumerate() {
        let (host, repo) = e.location.split_once('/').unwrap_or((e.location.as_str(), ""));
        let api_host = if host == "docker.io" { "registry-1.docker.io" } else { host };
        let creds = auth::lookup(host)?;
        let client = Client::new(host, api_host, repo, creds, e.insecure);
        match pull_from(paths, r, &client, plan, opts) {
            Ok(rec) => return Ok(rec),
            // A mirror that fails is passed over; the last endpoint's error is the answer.
            Err(err) if i < last => {
                if !opts.quiet {
                    eprintln!("warning: mirror `{}` failed ({err:#}); trying the next", e.location);
                }
            }
            Err(err) => return Err(err),
        }
    }
    bail!("image `{r}`: no registry to pull from")
}

fn pull_from(paths: &Paths, r: &Reference, client: &Client, plan: &MapPlan, opts: &Options) -> Result<ImageRecord> {
    let platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let (mut bytes, ctype) = client.manifest(r.tag_or_digest())?;
    let mut manifest_digest = digest::sha256(&bytes);
    let manifest = match manifest::parse(&bytes, &ctype).with_context(|| format!("image `{r}`"))? {
        Fetched::Manifest(m) => m,
        Fetched::Index(index) => {
            let d = manifest::select(&index, &platform).with_context(|| format!("image `{r}`"))?;
            manifest_digest = d.digest().to_string();
            let (b, t) = client.manifest(&manifest_digest)?;
            bytes = b;
            match manifest::parse(&bytes, &t)? {
                Fetched::Manifest(m) => m,
                Fetched::Index(_) => bail!("image `{r}`: the index points at another index"),
            }
        }
    };
    let cfg = manifest.config();
    let config_bytes = client.small_blob(cfg.digest().as_ref(), cfg.size(), manifest::MAX_CONFIG)?;
    let config =
        ImageConfiguration::from_reader(&config_bytes[..]).with_context(|| format!("image `{r}`: parse config"))?;
    let diff_ids = config.rootfs().diff_ids().clone();
    if diff_ids.len() != manifest.layers().len() {
        bail!(
            "image `{r}`: the manifest has {} layers but the config lists {} diff ids",
            manifest.layers().len(),
            diff_ids.len()
        );
    }
    let mut missing = Vec::new();
    for (desc, diff_id) in manifest.layers().iter().zip(&diff_ids) {
        if !paths.layer_dir(diff_id)?.exists() && !missing.iter().any(|(_, d): &(Descriptor, String)| d == diff_id) {
            missing.push((desc.clone(), diff_id.clone()));
        }
    }
    if !opts.quiet {
        eprintln!("pulling {r}: {} layer(s), {} to fetch", diff_ids.len(), missing.len());
    }
    if !missing.is_empty() {
        fetch_layers(paths, client, &r.to_string(), &missing, plan, opts.quiet)?;
    }
    let record = ImageRecord {
        id: digest::sha256(&config_bytes),
        digest: manifest_digest,
        layers: diff_ids,
        size: manifest.layers().iter().map(|l| l.size()).sum(),
        platform: format!("{}/{}", config.os(), config.architecture()),
        pulled_ns: crate::state::now_ns(),
    };
    images::save(paths, &record, &bytes, &config_bytes, &[r.to_string()], true)?;
    Ok(record)
}

/// The highest id mapped inside a namespace with `plan`.
fn max_inside(maps: &[crate::userns::IdMapping]) -> u32 {
    maps.iter().map(|m| m.inside + m.count.saturating_sub(1)).max().unwrap_or(0)
}

fn fetch_layers(
    paths: &Paths,
    client: &Client,
    image: &str,
    missing: &[(Descriptor, String)],
    plan: &MapPlan,
    quiet: bool,
) -> Result<()> {
    let layers = missing
        .iter()
        .map(|(desc, diff_id)| {
            Ok(Incoming {
                diff_id: diff_id.clone(),
                compression: Compression::of_media_type(desc.media_type().as_ref())?,
                what: desc.digest().to_string(),
                image: image.to_string(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let progress = Progress::new(missing, quiet);
    unpack_layers(paths, plan, &layers, |writers| {
        std::thread::scope(|s| {
            let handles: Vec<_> = missing
                .iter()
                .zip(writers)
                .enumerate()
                .map(|(i, ((desc, _), w))| {
                    let progress = &progress;
                    s.spawn(move || {
                        let r = download(client, desc, w, &|n| progress.advance(i, n));
                        progress.finish(i, r.is_ok());
                        r
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a download thread panicked"))))
                .collect()
        })
    })
}

/// A layer on its way into the store: the stream fed to stage 1 must hash to `diff_id` once
/// decompressed.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub diff_id: String,
    pub compression: Compression,
    /// How errors name it: the blob digest, or the archive member.
    pub what: String,
    /// The image (or archive) it is for, as warnings name it.
    pub image: String,
}

/// Unpacks `layers` into the store, all or nothing: `feed` gets one pipe per layer (in order) to
/// write its blob into, and returns each stream's own verdict (digest, size, transport). One
/// stage-1 process unpacks every pipe at once into staging directories; only when every feed
/// and every diff id is good are they all renamed into `layers/`, else stage 1 removes them.
/// Used by `rl pull` (downloads) and `rl load` (archive members).
pub fn unpack_layers(
    paths: &Paths,
    plan: &MapPlan,
    layers: &[Incoming],
    feed: impl FnOnce(Vec<OwnedFd>) -> Vec<Result<()>>,
) -> Result<()> {
    let mut jobs = Vec::new();
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    // A pull killed mid-way leaves staging dirs (files owned by subordinate ids): whichever is
    // not locked by a live pull is removed by this pull's stage 1.
    let stale = stale_staging(paths)?;
    let mut held = Vec::new();
    for layer in layers {
        // Locked before it exists, so another pull never takes it for a dead one's.
        let id = crate::state::new_id()?;
        let staging = paths.staging().join(format!("layer-{}", &id[..16]));
        held.push(lock::exclusive(&lock_path(&staging))?);
        std::fs::create_dir(&staging).with_context(|| format!("create `{}`", staging.display()))?;
        jobs.push(LayerJob { staging, compression: layer.compression, image: layer.image.clone() });
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create a layer pipe")?;
        readers.push(r);
        writers.push(w);
    }
    let staging: Vec<PathBuf> = jobs.iter().map(|j| j.staging.clone()).collect();
    let job = UnpackJob { layers: jobs, max_uid: max_inside(&plan.uid), max_gid: max_inside(&plan.gid) };
    let how = Spawn { fds: readers, ..Spawn::default() };
    let stage = Stage1::spawn(plan, Job::Unpack(job), how, || Ok(()))?;

    let fed = feed(writers);
    let unpacked = match stage.expect_msg()? {
        Msg::Unpacked { results } => results,
        other => return Err(stage.fail(other)),
    };
    // The feed's own failure (digest, size, HTTP) comes first; otherwise the unpacker's.
    let mut failure = None;
    for ((fd, un), layer) in fed.into_iter().zip(&unpacked).zip(layers) {
        let outcome = fd.and_then(|()| un.clone().map_err(|e| anyhow!(e))).and_then(|got| {
            if got != layer.diff_id {
                bail!("layer `{}`: its content is {got}, but the image config says {}", layer.what, layer.diff_id);
            }
            Ok(())
        });
        if let Err(e) = outcome {
            failure.get_or_insert(e);
        }
    }
    // All or nothing: the store gains the image's layers only when every one is good.
    let mut leftovers: Vec<PathBuf> = stale.iter().map(|(d, _)| d.clone()).collect();
    for (layer, dir) in layers.iter().zip(&staging) {
        let kept = failure.is_none() && {
            let dest = paths.layer_dir(&layer.diff_id)?;
            // A concurrent pull may have stored the same layer first: keep theirs.
            std::fs::rename(dir, &dest).is_ok()
        };
        if !kept {
            leftovers.push(dir.clone());
        }
    }
    stage.chan.send(&Msg::RemoveTrees(leftovers))?;
    let done = stage.expect_msg();
    stage.reap();
    for (dir, lock) in stale {
        drop(lock);
        let _ = std::fs::remove_file(lock_path(&dir));
    }
    for dir in &staging {
        let _ = std::fs::remove_file(lock_path(dir));
    }
    drop(held);
    if let Some(e) = failure {
        return Err(e);
    }
    match done? {
        Msg::Done => Ok(()),
        other => Err(anyhow!("the stage-1 process sent an unexpected {other:?}")),
    }
}

fn lock_path(staging: &std::path::Path) -> PathBuf {
    let mut p = staging.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Staging dirs of pulls that died (their lock is free), and of other verbs (`push-`, `rmi-`,
/// `load-`, …) whose process is gone, locked now by us until removed.
fn stale_staging(paths: &Paths) -> Result<Vec<(PathBuf, lock::Lock)>> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(paths.staging()) else { return Ok(out) };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".lock") || !e.path().is_dir() {
            continue;
        }
        if !name.starts_with("layer-") && !images::owner_gone(&name) {
            continue;
        }
        if let Some(l) = lock::try_exclusive(&lock_path(&e.path()))? {
            out.push((e.path(), l));
        }
    }
    Ok(out)
}

/// Streams one blob into `w`, resuming with `Range` after a broken connection, and checks its
/// digest and size at the end.
fn download(client: &Client, desc: &Descriptor, w: OwnedFd, advance: &(dyn Fn(u64) + Sync)) -> Result<()> {
    let digest = desc.digest().to_string();
    digest::hex_of(&digest)?;
    let mut out = File::from(w);
    let mut hashed = Hashing::new(Box::new(client.blob(&digest, 0)?) as Box<dyn Read + Send>);
    let mut resumes = 0;
    // The unpacker stopping early (a bad entry) closes the pipe: the blob is still read to the
    // end, so a digest mismatch is reported as such, and otherwise the unpacker's error.
    let mut unpacker_gone = false;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        match hashed.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if hashed.count() > desc.size() {
                    bail!("layer `{digest}`: more than the {} bytes the manifest declares", desc.size());
                }
                advance(n as u64);
                if !unpacker_gone {
                    match out.write_all(&buf[..n]) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => unpacker_gone = true,
                        Err(e) => return Err(e).with_context(|| format!("layer `{digest}`: pass to the unpacker")),
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if resumes < 3 && hashed.count() < desc.size() => {
                resumes += 1;
                let at = hashed.count();
                *hashed.get_mut() = Box::new(client.blob(&digest, at).with_context(|| format!("resume after: {e}"))?);
            }
            Err(e) if resumes > 0 => {
                let at = hashed.count();
                return Err(e).with_context(|| {
                    format!(
                        "layer `{digest}`: download from registry `{}`: the connection broke {} times, last at byte {at}",
                        client.registry,
                        resumes + 1
                    )
                });
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("layer `{digest}`: download from registry `{}`", client.registry))
            }
        }
    }
    let (got, size) = hashed.finish();
    if size != desc.size() {
        bail!("layer `{digest}`: truncated: got {size} of {} bytes", desc.size());
    }
    if got != digest {
        bail!("layer `{digest}`: digest mismatch: the content is {got}");
    }
    Ok(())
}

/// Download progress: a bar per layer and one for the total (with rates) on a terminal; one
/// line per finished layer otherwise; nothing with `-q`.
struct Progress {
    bars: Option<(indicatif::MultiProgress, Vec<indicatif::ProgressBar>, indicatif::ProgressBar)>,
    names: Vec<String>,
    quiet: bool,
}

impl Progress {
    fn new(layers: &[(Descriptor, String)], quiet: bool) -> Progress {
        let names: Vec<String> =
            layers.iter().map(|(d, _)| d.digest().to_string().chars().take(19).collect()).collect();
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bars = (!quiet && tty).then(|| {
            let multi = indicatif::MultiProgress::new();
            let style = indicatif::ProgressStyle::with_template(
                "{prefix:20} [{bar:30}] {bytes:>10}/{total_bytes:<10} {binary_bytes_per_sec:>12}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            let each = layers
                .iter()
                .zip(&names)
                .map(|((d, _), n)| {
                    let b = multi.add(indicatif::ProgressBar::new(d.size()).with_style(style.clone()));
                    b.set_prefix(n.clone());
                    b
                })
                .collect();
            let total =
                multi.add(indicatif::ProgressBar::new(layers.iter().map(|(d, _)| d.size()).sum()).with_style(style));
            total.set_prefix("total");
            (multi, each, total)
        });
        Progress { bars, names, quiet }
    }

    fn advance(&self, i: usize, n: u64) {
        if let Some((_, each, total)) = &self.bars {
            each[i].inc(n);
            total.inc(n);
        }
    }

    fn finish(&self, i: usize, ok: bool) {
        match &self.bars {
            Some((_, each, _)) => each[i].finish(),
            None if !self.quiet => {
                eprintln!("layer {}: {}", self.names[i], if ok { "downloaded" } else { "failed" })
            }
            None => {}
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some((_, _, total)) = &self.bars {
            total.finish();
        }
    }
}

/// Stage 1's side: unpack every layer from its pipe at once; each result is the layer's diff id
/// or the error text.
pub fn unpack_all(job: &UnpackJob, fds: Vec<OwnedFd>) -> Vec<Result<String, String>> {
    let opts = unpack::Options { max_uid: job.max_uid, max_gid: job.max_gid, apply_owners: true };
    super::per_layer(&job.layers, fds, |layer, fd| unpack_one(layer, fd, &opts))
}

fn unpack_one(layer: &LayerJob, fd: OwnedFd, opts: &unpack::Options) -> Result<String> {
    let input = std::io::BufReader::with_capacity(256 << 10, File::from(fd));
    let decoder: Box<dyn Read + Send> = match layer.compression {
        Compression::None => return unpack_stream(layer, input, opts),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(input).context("start zstd")?),
    };
    // Decompression on its own thread, overlapping with the unpack.
    std::thread::scope(|s| unpack_stream(layer, super::read_ahead::spawn(s, decoder), opts))
}

fn unpack_stream(layer: &LayerJob, stream: impl Read, opts: &unpack::Options) -> Result<String> {
    let mut tar = Hashing::new(stream);
    let report = unpack::unpack(&mut tar, &layer.staging, opts)?;
    let image = &layer.image;
    for w in &report.warnings {
        eprintln!("warning: image `{image}`: {w}");
    }
    for d in &report.skipped_devices {
        eprintln!("warning: image `{image}`: device node `{d}` skipped (a user namespace cannot create devices)");
    }
    if report.remapped_owners > 0 {
        eprintln!(
            "warning: image `{image}`: {} file(s) owned by ids outside your subordinate range now belong to root",
            report.remapped_owners
        );
    }
    // The diff id covers the whole stream, including padding after the end-of-archive marker.
    std::io::copy(&mut tar, &mut std::io::sink()).context("read the end of the layer")?;
    Ok(tar.finish().0)
}
