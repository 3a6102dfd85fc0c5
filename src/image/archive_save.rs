//! `rl save`: stored images into one docker-archive or oci-archive (see [`super::archive`]).
//! Runs in the `rl` parent; stage 1 exports each layer once, however many of the images share it
//! ([`super::layer_export`], uncompressed), into a staging directory of the store.
//!
//! The store keeps layers unpacked, not the tars they came in, so the archive carries rl's own
//! tars of them, and each config's diff ids are rewritten to those tars, as `rl push` does: the
//! saved image's id (its config digest) can differ from the stored one, as with Podman. rl's
//! tars are deterministic, so saving again, or saving what `rl load` brought in, gives the
//! same ids.
//!
//! The archive is written to a temporary file beside FILE and renamed over it when complete, so
//! FILE is never half written; to stdout it goes only after every layer was exported.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};

use super::archive::{self, DockerEntry, Format};
use super::digest;
use super::layer_export::{self, Blob};
use crate::store::images::{self, is_canonical, repo_of, ImageRecord};
use crate::store::Paths;
use crate::userns::MapPlan;

/// One image to save, with the names to record for it (none when it was named by id).
#[derive(Debug, Clone)]
pub struct Selected {
    pub record: ImageRecord,
    pub names: Vec<String>,
}

/// Where the archive goes.
#[derive(Debug, Clone)]
pub enum Output {
    File(PathBuf),
    Stdout,
}

/// An image ready to write: its config with the exported layers' diff ids.
struct Prepared<'a> {
    names: Vec<String>,
    config: Vec<u8>,
    config_digest: String,
    layers: Vec<&'a Blob>,
}

/// Writes `images` as one archive in `format` to `out`.
pub fn save(paths: &Paths, plan: &MapPlan, images: &[Selected], format: Format, out: &Output) -> Result<()> {
    images::init(paths)?;
    let work = images::tempdir_in(&paths.staging(), "save")?;
    let result = save_in(paths, plan, images, format, out, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn save_in(
    paths: &Paths,
    plan: &MapPlan,
    images: &[Selected],
    format: Format,
    out: &Output,
    work: &Path,
) -> Result<()> {
    let mut diff_ids: Vec<&String> = Vec::new();
    for s in images {
        for d in &s.record.layers {
            if !diff_ids.contains(&d) {
                diff_ids.push(d);
            }
        }
    }
    let dirs: Vec<PathBuf> = diff_ids.iter().map(|d| paths.layer_dir(d)).collect::<Result<_>>()?;
    // No layers (an image built `FROM scratch` with only config): no stage 1 to start.
    let blobs = if dirs.is_empty() { Vec::new() } else { layer_export::export_layers(&dirs, plan, work, false)? };
    let by_diff_id: BTreeMap<&String, &Blob> = diff_ids.iter().copied().zip(&blobs).collect();
    let mut prepared = Vec::new();
    for s in images {
        let what = s.names.first().unwrap_or(&s.record.id);
        let mut config: Value = serde_json::from_slice(&images::config(paths, &s.record.id)?)
            .with_context(|| format!("image `{what}`: parse the config"))?;
        let layers: Vec<&Blob> = s.record.layers.iter().filter_map(|d| by_diff_id.get(d).copied()).collect();
        config["rootfs"] =
            json!({"type": "layers", "diff_ids": layers.iter().map(|b| b.diff_id.clone()).collect::<Vec<_>>()});
        let config = serde_json::to_vec(&config).context("encode the image config")?;
        prepared.push(Prepared { names: s.names.clone(), config_digest: digest::sha256(&config), config, layers });
    }
    match out {
        Output::Stdout => {
            let stdout = std::io::stdout().lock();
            write_archive(BufWriter::new(stdout), format, &prepared, &blobs)?
                .flush()
                .context("write the archive to stdout")
        }
        Output::File(path) => write_beside(path, |f| write_archive(BufWriter::new(f), format, &prepared, &blobs)),
    }
}

/// Writes `path` through a temporary file in its directory, renamed over it when complete.
fn write_beside(path: &Path, write: impl FnOnce(&File) -> Result<BufWriter<&File>>) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let base = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let id = crate::state::new_id()?;
    let tmp = dir.join(format!(".{base}.rl-save-{}", &id[..8]));
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("create `{}`", tmp.display()))?;
    let written = (|| {
        let mut w = write(&file)?;
        w.flush().with_context(|| format!("write `{}`", tmp.display()))?;
        drop(w);
        file.sync_all().with_context(|| format!("write `{}`", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("rename `{}` to `{}`", tmp.display(), path.display()))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn write_archive<W: Write>(w: W, format: Format, images: &[Prepared], blobs: &[Blob]) -> Result<W> {
    let mut tar = Tar(tar::Builder::new(w));
    match format {
        Format::Docker => write_docker(&mut tar, images, blobs)?,
        Format::Oci => write_oci(&mut tar, images, blobs)?,
    }
    tar.0.into_inner().context("finish the archive")
}

/// Docker's layout: `<diff hex>/layer.tar`, `<config hex>.json`, `manifest.json`,
/// `repositories`.
fn write_docker<W: Write>(tar: &mut Tar<W>, images: &[Prepared], blobs: &[Blob]) -> Result<()> {
    let layer_name = |b: &Blob| -> Result<String> { Ok(format!("{}/layer.tar", digest::hex_of(&b.diff_id)?)) };
    for b in unique(blobs) {
        tar.dir(digest::hex_of(&b.diff_id)?)?;
        tar.file_from(&layer_name(b)?, &b.path, b.size)?;
    }
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut configs_written = Vec::new();
    for img in images {
        let config_name = format!("{}.json", digest::hex_of(&img.config_digest)?);
        if !configs_written.contains(&config_name) {
            tar.file(&config_name, &img.config)?;
            configs_written.push(config_name.clone());
        }
        let tags: Vec<String> = img.names.iter().filter(|n| !is_canonical(n)).cloned().collect();
        if let Some(top) = img.layers.last() {
            for t in &tags {
                let tag = t.strip_prefix(repo_of(t)).and_then(|t| t.strip_prefix(':')).unwrap_or("latest");
                let top = digest::hex_of(&top.diff_id)?.to_string();
                repositories.entry(repo_of(t).to_string()).or_default().insert(tag.to_string(), top);
            }
        }
        manifest.push(DockerEntry {
            config: config_name,
            repo_tags: (!tags.is_empty()).then_some(tags),
            layers: img.layers.iter().map(|b| layer_name(b)).collect::<Result<_>>()?,
        });
    }
    tar.file(archive::MANIFEST_JSON, &serde_json::to_vec(&manifest).context("encode manifest.json")?)?;
    tar.file("repositories", &serde_json::to_vec(&repositories).context("encode repositories")?)
}

/// The OCI image layout: `oci-layout`, `blobs/sha256/…`, `index.json` with an entry per name.
fn write_oci<W: Write>(tar: &mut Tar<W>, images: &[Prepared], blobs: &[Blob]) -> Result<()> {
    tar.file(archive::OCI_LAYOUT, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    for d in ["blobs", "blobs/sha256"] {
        tar.dir(d)?;
    }
    let mut written: Vec<String> = Vec::new();
    for b in unique(blobs) {
        tar.file_from(&archive::blob_path(&b.digest)?, &b.path, b.size)?;
        written.push(b.digest.clone());
    }
    let mut entries = Vec::new();
    for img in images {
        let layers: Vec<Value> = img
            .layers
            .iter()
            .map(|b| json!({"mediaType": archive::OCI_LAYER, "digest": b.digest, "size": b.size}))
            .collect();
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": archive::OCI_MANIFEST,
            "config": {"mediaType": archive::OCI_CONFIG, "digest": img.config_digest, "size": img.config.len()},
            "layers": layers,
        });
        let manifest = serde_json::to_vec(&manifest).context("encode the manifest")?;
        let manifest_digest = digest::sha256(&manifest);
        for (d, data) in [(&img.config_digest, &img.config), (&manifest_digest, &manifest)] {
            if !written.contains(d) {
                tar.file(&archive::blob_path(d)?, data)?;
                written.push(d.clone());
            }
        }
        let entry = |annotations: Option<Value>| {
            let mut e = json!({"mediaType": archive::OCI_MANIFEST, "digest": manifest_digest, "size": manifest.len()});
            if let Some(a) = annotations {
                e["annotations"] = a;
            }
            e
        };
        let tags: Vec<&String> = img.names.iter().filter(|n| !is_canonical(n)).collect();
        if tags.is_empty() {
            entries.push(entry(None));
        }
        for n in tags {
            entries.push(entry(Some(json!({archive::REF_NAME: n, archive::CONTAINERD_NAME: n}))));
        }
    }
    let index = json!({"schemaVersion": 2, "mediaType": archive::OCI_INDEX, "manifests": entries});
    tar.file(archive::INDEX_JSON, &serde_json::to_vec(&index).context("encode index.json")?)
}

/// Each exported tar once (two layer directories with the same content give one tar).
fn unique(blobs: &[Blob]) -> Vec<&Blob> {
    let mut out: Vec<&Blob> = Vec::new();
    for b in blobs {
        if !out.iter().any(|o| o.digest == b.digest) {
            out.push(b);
        }
    }
    out
}

/// Archive members with fixed metadata (root-owned, mtime 0): the same images give the same
/// archive bytes.
struct Tar<W: Write>(tar::Builder<W>);

impl<W: Write> Tar<W> {
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    fn dir(&mut self, name: &str) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Directory, 0o755, 0);
        self.0.append_data(&mut h, format!("{name}/"), std::io::empty()).with_context(|| format!("write `{name}/`"))
    }

    fn file(&mut self, name: &str, data: &[u8]) -> Result<()> {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        self.0.append_data(&mut h, name, data).with_context(|| format!("write `{name}`"))
    }

    fn file_from(&mut self, name: &str, path: &Path, size: u64) -> Result<()> {
        let f = File::open(path).with_context(|| format!("open `{}`", path.display()))?;
        let mut h = Self::header(tar::EntryType::Regular, 0o644, size);
        // `take`: a file that grew would corrupt the archive; one that shrank fails here.
        self.0.append_data(&mut h, name, f.take(size)).with_context(|| format!("write `{name}`"))
    }
}
