//! `rl load`: the images of a docker-archive or oci-archive (see [`super::archive`]) into the
//! store. Runs in the `rl` parent; the layers the store lacks stream from the archive through
//! pipes into one stage-1 process in the user namespace, which unpacks them safely
//! ([`super::pull::unpack_layers`], as a pull does).
//!
//! The archive (a file, or stdin; plain, or gzip or zstd compressed) is read as a plain tar file
//! — stdin and compressed archives are first copied, decompressed, into a staging directory of
//! the store — then indexed, and everything is checked before the store changes: every
//! manifest, config and OCI blob against its digest and size, every docker-archive config named
//! by its digest, every layer's diff id against its config (layers the store already has are
//! hashed, not unpacked again). Layers go in all or nothing, then the image records and names:
//! a bad archive leaves the store as it was.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use oci_spec::image::{Descriptor, ImageConfiguration};
use serde_json::json;

use super::archive::{self, hinted, Members, Span, SpanReader, DAMAGED, WHAT_LOADS};
use super::digest::{self, Hashing};
use super::manifest::{self, Compression, Fetched, Platform};
use super::pull::{unpack_layers, Incoming};
use super::reference::Reference;
use crate::store::images::{self, ImageRecord};
use crate::store::Paths;
use crate::userns::MapPlan;

/// Where the archive comes from.
#[derive(Debug, Clone)]
pub enum Input {
    File(PathBuf),
    Stdin,
}

impl Input {
    fn label(&self) -> String {
        match self {
            Input::File(p) => p.display().to_string(),
            Input::Stdin => "stdin".to_string(),
        }
    }
}

/// An image now in the store, and the names it got.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub id: String,
    pub names: Vec<String>,
}

/// One layer blob of the archive.
#[derive(Debug, Clone)]
struct Source {
    diff_id: String,
    span: Span,
    member: String,
    /// The digest the OCI manifest (or a Docker ≥ 25 member name) promises.
    digest: Option<String>,
    compression: Compression,
}

/// An image of the archive, checked except for its layers' contents.
struct Pending {
    names: Vec<String>,
    config: Vec<u8>,
    /// The OCI manifest as archived; `None` for a docker-archive (one is made for the record).
    manifest: Option<Vec<u8>>,
    /// Indexes into the sources, bottom first.
    layers: Vec<usize>,
    platform: String,
}

/// Loads every image of the archive at `input`.
pub fn load(paths: &Paths, plan: &MapPlan, input: &Input) -> Result<Vec<Loaded>> {
    images::init(paths)?;
    let work = images::tempdir_in(&paths.staging(), "load")?;
    let result = load_in(paths, plan, input, &work).with_context(|| format!("archive `{}`", input.label()));
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn load_in(paths: &Paths, plan: &MapPlan, input: &Input, work: &Path) -> Result<Vec<Loaded>> {
    let label = format!("archive {}", input.label());
    let file = open_tar(input, work)?;
    let members = Members::index(&file)?;
    let mut sources = Vec::new();
    let pending = match archive::detect(&members)? {
        archive::Format::Docker => docker_images(&file, &members, &mut sources)?,
        archive::Format::Oci => oci_images(&file, &members, &mut sources)?,
    };
    let mut missing = Vec::new();
    let mut present = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        if paths.layer_dir(&s.diff_id)?.is_dir() {
            present.push(i);
        } else {
            missing.push(i);
        }
    }
    let mut blob_digests: Vec<Option<String>> = vec![None; sources.len()];
    let (file_ref, sources_ref) = (&file, &sources);
    let checked: Vec<Result<String>> = std::thread::scope(|s| {
        let handles: Vec<_> =
            present.iter().map(|&i| s.spawn(move || verify_present(file_ref, &sources_ref[i]))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a layer thread panicked")))).collect()
    });
    for (&i, c) in present.iter().zip(checked) {
        blob_digests[i] = Some(c?);
    }
    if !missing.is_empty() {
        let incoming: Vec<Incoming> = missing
            .iter()
            .map(|&i| Incoming {
                diff_id: sources[i].diff_id.clone(),
                compression: sources[i].compression,
                what: sources[i].member.clone(),
                image: label.clone(),
            })
            .collect();
        let mut fed: Vec<Option<String>> = vec![None; missing.len()];
        unpack_layers(paths, plan, &incoming, |writers| feed(&file, &sources, &missing, writers, &mut fed))?;
        for (&i, d) in missing.iter().zip(fed) {
            blob_digests[i] = d;
        }
    }
    let mut loaded = Vec::new();
    for p in pending {
        let layers: Vec<(&Source, String)> =
            p.layers.iter().map(|&i| (&sources[i], blob_digests[i].clone().unwrap_or_default())).collect();
        let manifest = match p.manifest {
            Some(m) => m,
            None => docker_manifest(&p.config, &layers)?,
        };
        let record = ImageRecord {
            id: digest::sha256(&p.config),
            digest: digest::sha256(&manifest),
            layers: layers.iter().map(|(s, _)| s.diff_id.clone()).collect(),
            size: layers.iter().map(|(s, _)| s.span.size).sum(),
            platform: p.platform,
            pulled_ns: crate::state::now_ns(),
        };
        images::save(paths, &record, &manifest, &p.config, &p.names, false)?;
        loaded.push(Loaded { id: record.id, names: p.names });
    }
    Ok(loaded)
}

/// The archive as a plain tar file: the input itself when it is a regular uncompressed file,
/// else a decompressed copy in `work`.
fn open_tar(input: &Input, work: &Path) -> Result<File> {
    let mut source: Box<dyn Read> = match input {
        Input::File(p) => {
            let f = File::open(p).with_context(|| format!("open `{}`", p.display()))?;
            let regular = f.metadata().map(|m| m.is_file()).unwrap_or(false);
            let mut head = [0u8; 512];
            let n = if regular { read_head(&f, &mut head)? } else { 0 };
            if regular && archive::sniff(&head[..n]) == Compression::None {
                if !archive::is_tar(&head[..n]) {
                    return Err(hinted("not a tar archive", WHAT_LOADS));
                }
                return Ok(f);
            }
            Box::new(f)
        }
        Input::Stdin => Box::new(std::io::stdin().lock()),
    };
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match source.read(&mut head[n..]).context("read the archive")? {
            0 => break,
            k => n += k,
        }
    }
    let whole = std::io::Cursor::new(head[..n].to_vec()).chain(source);
    let mut plain: Box<dyn Read> = match archive::sniff(&head[..n]) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(whole))),
        Compression::Zstd => Box::new(zstd::Decoder::new(whole).context("start zstd")?),
        Compression::None => Box::new(whole),
    };
    let path = work.join("archive.tar");
    let mut out = File::options()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("create `{}`", path.display()))?;
    std::io::copy(&mut plain, &mut out).context("read the archive")?;
    out.flush().with_context(|| format!("write `{}`", path.display()))?;
    let mut head = [0u8; 512];
    let n = read_head(&out, &mut head)?;
    if !archive::is_tar(&head[..n]) {
        return Err(hinted("not a tar archive", WHAT_LOADS));
    }
    Ok(out)
}

fn read_head(f: &File, buf: &mut [u8]) -> Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut n = 0;
    while n < buf.len() {
        match f.read_at(&mut buf[n..], n as u64).context("read the archive")? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The source for a layer member, shared when images (or one image) list it again.
fn source_of(
    file: &File,
    members: &Members,
    sources: &mut Vec<Source>,
    member: &str,
    diff_id: &str,
    digest: Option<String>,
) -> Result<usize> {
    if let Some(i) = sources.iter().position(|s| s.diff_id == diff_id) {
        return Ok(i);
    }
    digest::hex_of(diff_id)?;
    let span = members.find(member)?;
    let mut head = [0u8; 4];
    let n = read_span_head(file, span, &mut head)?;
    let compression = archive::sniff(&head[..n]);
    sources.push(Source { diff_id: diff_id.to_string(), span, member: member.to_string(), digest, compression });
    Ok(sources.len() - 1)
}

fn read_span_head(file: &File, span: Span, buf: &mut [u8]) -> Result<usize> {
    let mut r = SpanReader::new(file, span);
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]).context("read the archive")? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Parses a config and returns its diff ids and platform.
fn parse_config(bytes: &[u8], what: &str) -> Result<(Vec<String>, String)> {
    let config = ImageConfiguration::from_reader(bytes).with_context(|| format!("{what}: parse the config"))?;
    let platform = format!("{}/{}", config.os(), config.architecture());
    Ok((config.rootfs().diff_ids().clone(), platform))
}

fn parse_names(names: &[String]) -> Result<Vec<String>> {
    names
        .iter()
        .map(|n| Reference::parse(n).map(|r| r.to_string()).map_err(|e| anyhow!("image name `{n}`: {e}")))
        .collect()
}

fn docker_images(file: &File, members: &Members, sources: &mut Vec<Source>) -> Result<Vec<Pending>> {
    let entries =
        archive::parse_docker_manifest(&members.read(file, archive::MANIFEST_JSON, manifest::MAX_MANIFEST)?)?;
    let mut out: Vec<Pending> = Vec::new();
    for e in entries {
        let config = members.read(file, &e.config, manifest::MAX_CONFIG)?;
        if let Some(d) = archive::digest_in_name(&archive::member_name(&e.config)?) {
            digest::verify(&config, &d, None)
                .map_err(|err| hinted(format!("config `{}`: {err}", e.config), DAMAGED))?;
        }
        let (diff_ids, platform) = parse_config(&config, &format!("config `{}`", e.config))?;
        if diff_ids.len() != e.layers.len() {
            return Err(hinted(
                format!(
                    "manifest.json lists {} layers, but config `{}` {} diff ids",
                    e.layers.len(),
                    e.config,
                    diff_ids.len()
                ),
                DAMAGED,
            ));
        }
        let mut layers = Vec::new();
        for (member, diff_id) in e.layers.iter().zip(&diff_ids) {
            let promised = archive::digest_in_name(&archive::member_name(member)?);
            layers.push(source_of(file, members, sources, member, diff_id, promised)?);
        }
        let names = parse_names(e.repo_tags.as_deref().unwrap_or_default())?;
        merge(&mut out, Pending { names, config, manifest: None, layers, platform });
    }
    Ok(out)
}

/// Adds `p`, or only its names when the same image is already there.
fn merge(out: &mut Vec<Pending>, p: Pending) {
    match out.iter_mut().find(|o| o.config == p.config && o.manifest == p.manifest) {
        Some(o) => {
            for n in p.names {
                if !o.names.contains(&n) {
                    o.names.push(n);
                }
            }
        }
        None => out.push(p),
    }
}

/// A blob of an OCI layout, checked against its descriptor's digest and size.
fn oci_blob(file: &File, members: &Members, desc: &Descriptor, max: u64) -> Result<Vec<u8>> {
    let d = desc.digest().to_string();
    let bytes = members.read(file, &archive::blob_path(&d)?, max)?;
    digest::verify(&bytes, &d, Some(desc.size())).map_err(|e| hinted(format!("blob `{d}`: {e}"), DAMAGED))?;
    Ok(bytes)
}

fn oci_images(file: &File, members: &Members, sources: &mut Vec<Source>) -> Result<Vec<Pending>> {
    let index = match manifest::parse(&members.read(file, archive::INDEX_JSON, manifest::MAX_MANIFEST)?, "")
        .context("index.json")?
    {
        Fetched::Index(i) => i,
        Fetched::Manifest(_) => bail!("index.json: a manifest, not an index"),
    };
    if index.manifests().is_empty() {
        bail!("index.json lists no image");
    }
    let mut out: Vec<Pending> = Vec::new();
    for entry in index.manifests() {
        let mut bytes = oci_blob(file, members, entry, manifest::MAX_MANIFEST)?;
        let mut m = manifest::parse(&bytes, entry.media_type().as_ref())?;
        // A multi-platform image: its index, then the host's manifest (one level, as in a pull).
        if let Fetched::Index(inner) = m {
            let chosen = manifest::select(&inner, &Platform::host())?;
            bytes = oci_blob(file, members, &chosen, manifest::MAX_MANIFEST)?;
            m = manifest::parse(&bytes, chosen.media_type().as_ref())?;
        }
        let Fetched::Manifest(m) = m else { bail!("image `{}`: the index points at another index", entry.digest()) };
        let config = oci_blob(file, members, m.config(), manifest::MAX_CONFIG)?;
        let (diff_ids, platform) = parse_config(&config, &format!("config `{}`", m.config().digest()))?;
        if diff_ids.len() != m.layers().len() {
            return Err(hinted(
                format!(
                    "manifest `{}` lists {} layers, but its config {} diff ids",
                    entry.digest(),
                    m.layers().len(),
                    diff_ids.len()
                ),
                DAMAGED,
            ));
        }
        let mut layers = Vec::new();
        for (desc, diff_id) in m.layers().iter().zip(&diff_ids) {
            let d = desc.digest().to_string();
            let member = archive::blob_path(&d)?;
            let span = members.find(&member)?;
            if span.size != desc.size() {
                return Err(hinted(
                    format!("blob `{d}`: {} bytes in the archive, but the manifest says {}", span.size, desc.size()),
                    DAMAGED,
                ));
            }
            layers.push(source_of(file, members, sources, &member, diff_id, Some(d))?);
        }
        let names = parse_names(&archive::oci_name(entry.annotations().as_ref()).into_iter().collect::<Vec<_>>())?;
        merge(&mut out, Pending { names, config, manifest: Some(bytes), layers, platform });
    }
    Ok(out)
}

/// Checks a layer the store has: its blob digest (when promised) and its diff id. Returns the
/// blob digest.
fn verify_present(file: &File, s: &Source) -> Result<String> {
    let mut blob = Hashing::new(SpanReader::new(file, s.span));
    std::io::copy(&mut blob, &mut std::io::sink()).with_context(|| format!("read member `{}`", s.member))?;
    let (got, _) = blob.finish();
    check_digest(s, &got)?;
    let input = BufReader::with_capacity(256 << 10, SpanReader::new(file, s.span));
    let stream: Box<dyn Read> = match s.compression {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::Decoder::with_buffer(input).context("start zstd")?),
    };
    let mut tar = Hashing::new(stream);
    std::io::copy(&mut tar, &mut std::io::sink()).with_context(|| format!("layer `{}`: decompress", s.member))?;
    let (diff_id, _) = tar.finish();
    if diff_id != s.diff_id {
        return Err(hinted(
            format!("layer `{}`: its content is {diff_id}, but the image config says {}", s.member, s.diff_id),
            DAMAGED,
        ));
    }
    Ok(got)
}

fn check_digest(s: &Source, got: &str) -> Result<()> {
    match &s.digest {
        Some(want) if want != got => {
            Err(hinted(format!("layer `{}`: digest mismatch: the content is {got}, not {want}", s.member), DAMAGED))
        }
        _ => Ok(()),
    }
}

/// Streams the missing layers' members into stage 1's pipes, one thread each, hashing as they
/// go; `fed` gets each blob's digest.
fn feed(
    file: &File,
    sources: &[Source],
    missing: &[usize],
    writers: Vec<OwnedFd>,
    fed: &mut [Option<String>],
) -> Vec<Result<()>> {
    let results: Vec<Result<String>> = std::thread::scope(|s| {
        let handles: Vec<_> =
            missing.iter().zip(writers).map(|(&i, w)| s.spawn(move || feed_one(file, &sources[i], w))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a layer thread panicked")))).collect()
    });
    results
        .into_iter()
        .zip(fed.iter_mut())
        .map(|(r, slot)| {
            r.map(|d| {
                *slot = Some(d);
            })
        })
        .collect()
}

fn feed_one(file: &File, s: &Source, w: OwnedFd) -> Result<String> {
    let mut out = File::from(w);
    let mut blob = Hashing::new(SpanReader::new(file, s.span));
    // The unpacker stopping early (a bad entry) closes the pipe: the member is still read to the
    // end, so a digest mismatch is reported as such, and otherwise the unpacker's error.
    let mut unpacker_gone = false;
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = blob.read(&mut buf).with_context(|| format!("read member `{}`", s.member))?;
        if n == 0 {
            break;
        }
        if !unpacker_gone {
            match out.write_all(&buf[..n]) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => unpacker_gone = true,
                Err(e) => return Err(e).with_context(|| format!("layer `{}`: pass to the unpacker", s.member)),
            }
        }
    }
    drop(out);
    let (got, _) = blob.finish();
    check_digest(s, &got)?;
    Ok(got)
}

/// An OCI manifest for an image loaded from a docker-archive (which has none): the record keeps
/// one, with the blobs as archived.
fn docker_manifest(config: &[u8], layers: &[(&Source, String)]) -> Result<Vec<u8>> {
    let media = |c: Compression| match c {
        Compression::None => archive::OCI_LAYER.to_string(),
        Compression::Gzip => format!("{}+gzip", archive::OCI_LAYER),
        Compression::Zstd => format!("{}+zstd", archive::OCI_LAYER),
    };
    let layers: Vec<_> = layers
        .iter()
        .map(|(s, d)| json!({"mediaType": media(s.compression), "digest": d, "size": s.span.size}))
        .collect();
    let m = json!({
        "schemaVersion": 2,
        "mediaType": archive::OCI_MANIFEST,
        "config": {"mediaType": archive::OCI_CONFIG, "digest": digest::sha256(config), "size": config.len()},
        "layers": layers,
    });
    serde_json::to_vec(&m).context("encode the manifest")
}

/// What `rl load` prints, as Docker does: a line per name, or the id of a nameless image.
pub fn report_lines(loaded: &[Loaded]) -> Vec<String> {
    let mut lines = Vec::new();
    for l in loaded {
        if l.names.is_empty() {
            lines.push(format!("Loaded image ID: {}", l.id));
        }
        lines.extend(l.names.iter().map(|n| format!("Loaded image: {n}")));
    }
    lines
}
