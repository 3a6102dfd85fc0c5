//! `rl push`: each layer is first matched to a blob the registry may already hold — one the image
//! was pulled as (the manifest in its record, from the repositories it was pulled from) or one an
//! earlier push put there (`pushed.json`): a `HEAD` finds it in the destination repository, or a
//! cross-repository mount (`POST …/uploads/?mount=&from=`) links it from another repository of
//! the same registry without sending a byte. The remaining layers are exported from the store as
//! OCI tars by a stage-1 process in the user namespace ([`super::layer_export`]), gzipped in the
//! `rl` parent, and uploaded — in one `PUT` when small, in `PATCH` chunks when large (a failed
//! chunk resumes from the offset the registry reports). Then the config (its diff ids those of
//! the blobs actually listed; unchanged, so the image id too, when every layer was reused) and
//! the manifest. Like Podman, freshly exported layers get digests of rl's own tars.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::digest;
use super::layer_export;
use super::reference::Reference;
use super::registries::Config;
use super::registry::Client;
use crate::store::images::{self, ImageRecord, Pushed, PushedLayer};
use crate::store::Paths;
use crate::userns::MapPlan;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Blobs up to this size go up in one `PUT`; larger ones in `PATCH` chunks of this size, so a
/// broken connection costs one chunk and proxies with a request size limit pass them.
/// `RL_PUSH_CHUNK_SIZE` (bytes) overrides it.
const CHUNK_SIZE: u64 = 32 << 20;

fn chunk_size() -> u64 {
    std::env::var("RL_PUSH_CHUNK_SIZE").ok().and_then(|v| v.parse().ok()).filter(|&n| n >= 1024).unwrap_or(CHUNK_SIZE)
}

impl Client {
    /// Whether the repository already has blob `digest`.
    pub fn blob_exists(&self, digest: &str) -> Result<bool> {
        let url = format!("{}/v2/{}/blobs/{digest}", self.base(), self.repository);
        let resp = self.call(&format!("HEAD blob `{digest}`"), &|agent, auth| {
            let mut req = agent.head(&url);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            req.call()
        })?;
        match resp.status().as_u16() {
            200 => Ok(true),
            404 => Ok(false),
            401 | 403 => Err(self.unauthorized(resp.status().as_u16())),
            s => bail!("registry `{}`: HEAD blob `{digest}`: HTTP {s}", self.registry),
        }
    }

    /// Links blob `digest` from repository `from` of the same registry; false when the registry
    /// would not (it then opened an ordinary upload instead, which it purges in time).
    pub fn mount_blob(&self, digest: &str, from: &str) -> Result<bool> {
        let url = format!("{}/v2/{}/blobs/uploads/", self.base(), self.repository);
        let resp = self.call(&format!("mount blob `{digest}` from `{from}`"), &|agent, auth| {
            let mut req = agent.post(&url).query("mount", digest).query("from", from);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            req.send_empty()
        })?;
        // 201: mounted. Anything else — 202 (an upload opened instead), 401/403 (no access to
        // `from`, say a revoked grant), an error from a registry without mounts — means upload.
        Ok(resp.status().as_u16() == 201)
    }

    /// The absolute upload URL in a response's `Location`.
    fn location(&self, resp: &ureq::http::Response<ureq::Body>, digest: &str) -> Result<String> {
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("registry `{}`: upload of `{digest}` without a Location", self.registry))?;
        Ok(if location.starts_with('/') { format!("{}{location}", self.base()) } else { location.to_string() })
    }

    /// Uploads the file at `path` as blob `digest`: one `PUT` up to `chunk` bytes, else `PATCH`
    /// chunks then a closing `PUT`.
    pub fn upload_blob(&self, digest: &str, path: &Path, chunk: u64) -> Result<()> {
        let start = format!("{}/v2/{}/blobs/uploads/", self.base(), self.repository);
        let resp = self.call("POST blob upload", &|agent, auth| {
            let mut req = agent.post(&start);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            req.send_empty()
        })?;
        let status = resp.status().as_u16();
        if status != 202 {
            if status == 401 || status == 403 {
                return Err(self.unauthorized(status));
            }
            bail!("registry `{}`: start the upload of `{digest}`: HTTP {status}", self.registry);
        }
        let mut url = self.location(&resp, digest)?;
        let len = std::fs::metadata(path).with_context(|| format!("stat `{}`", path.display()))?.len();
        if len > chunk {
            url = self.upload_chunks(digest, path, len, chunk, url)?;
        }
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={digest}"));
        let whole = len <= chunk;
        let resp = self.call(&format!("PUT blob `{digest}`"), &|agent, auth| {
            let mut req = agent.put(&url).header("Content-Type", "application/octet-stream");
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            if whole {
                let file = File::open(path).map_err(ureq::Error::Io)?;
                req.header("Content-Length", len).send(file)
            } else {
                req.header("Content-Length", 0).send_empty()
            }
        })?;
        match resp.status().as_u16() {
            201 | 204 => Ok(()),
            s => {
                bail!(
                    "registry `{}`: upload of `{digest}`: HTTP {s}{}",
                    self.registry,
                    super::registry::error_detail(resp)
                )
            }
        }
    }

    /// Sends `path` in `PATCH` chunks to the upload at `url`; returns the URL to close it at.
    fn upload_chunks(&self, digest: &str, path: &Path, len: u64, chunk: u64, mut url: String) -> Result<String> {
        let mut file = File::open(path).with_context(|| format!("open `{}`", path.display()))?;
        let mut buf = Vec::new();
        let mut offset = 0u64;
        while offset < len {
            let n = chunk.min(len - offset);
            buf.resize(n as usize, 0);
            file.seek(SeekFrom::Start(offset)).with_context(|| format!("seek `{}`", path.display()))?;
            file.read_exact(&mut buf).with_context(|| format!("read `{}`", path.display()))?;
            let range = format!("{offset}-{}", offset + n - 1);
            let resp = self.call(&format!("PATCH blob `{digest}` bytes {range}"), &|agent, auth| {
                let mut req = agent
                    .patch(&url)
                    .header("Content-Type", "application/octet-stream")
                    .header("Content-Range", &range)
                    .header("Content-Length", n);
                if let Some(a) = auth {
                    req = req.header("Authorization", a);
                }
                req.send(&buf[..])
            })?;
            match resp.status().as_u16() {
                202 => {
                    url = self.location(&resp, digest)?;
                    offset += n;
                }
                // The registry holds a different amount than we think (a retried chunk that
                // partly arrived): continue from what it reports.
                416 => offset = self.upload_offset(digest, &url)?,
                401 | 403 => return Err(self.unauthorized(resp.status().as_u16())),
                s => {
                    bail!(
                        "registry `{}`: upload of `{digest}` bytes {range}: HTTP {s}{}",
                        self.registry,
                        super::registry::error_detail(resp)
                    )
                }
            }
        }
        Ok(url)
    }

    /// How many bytes the upload at `url` holds (its `Range: 0-LAST`).
    fn upload_offset(&self, digest: &str, url: &str) -> Result<u64> {
        let resp = self.call(&format!("GET upload status of `{digest}`"), &|agent, auth| {
            let mut req = agent.get(url);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            req.call()
        })?;
        let range = resp.headers().get("range").and_then(|v| v.to_str().ok()).unwrap_or("");
        match range.split_once('-').and_then(|(_, last)| last.parse::<u64>().ok()) {
            Some(last) if resp.status().as_u16() == 204 => Ok(last + 1),
            _ => bail!(
                "registry `{}`: upload of `{digest}`: cannot tell how much arrived (HTTP {}, Range `{range}`)",
                self.registry,
                resp.status().as_u16()
            ),
        }
    }

    /// Stores a manifest under `reference` (a tag); returns its digest.
    pub fn put_manifest(&self, reference: &str, media_type: &str, bytes: &[u8]) -> Result<String> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.base(), self.repository);
        let resp = self.call(&format!("PUT manifest `{reference}`"), &|agent, auth| {
            let mut req = agent.put(&url).header("Content-Type", media_type);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            req.send(bytes)
        })?;
        match resp.status().as_u16() {
            200 | 201 | 202 | 204 => Ok(digest::sha256(bytes)),
            401 | 403 => Err(self.unauthorized(resp.status().as_u16())),
            s => {
                bail!(
                    "registry `{}`: PUT manifest `{reference}`: HTTP {s}{}",
                    self.registry,
                    super::registry::error_detail(resp)
                )
            }
        }
    }
}

/// A blob the registry may hold for a layer, and the repository (`host/path`) it is in.
#[derive(Debug, Clone)]
struct Candidate {
    repository: String,
    layer: PushedLayer,
}

/// For each layer of `rec`, the blobs known to hold it: the ones it was pulled as, then the
/// ones earlier pushes uploaded, newest first.
fn candidates(paths: &Paths, rec: &ImageRecord) -> Result<Vec<Vec<Candidate>>> {
    let mut out = vec![Vec::new(); rec.layers.len()];
    for p in images::pushed(paths, &rec.id)?.into_iter().rev() {
        if p.layers.len() == out.len() {
            for (slot, layer) in out.iter_mut().zip(p.layers) {
                slot.push(Candidate { repository: p.repository.clone(), layer });
            }
        }
    }
    let pulled = images::pulled_from(paths, &rec.id)?.unwrap_or_default();
    // A record's manifest is the one the image was pulled by; an image made locally has none
    // that names blobs on a registry (or none at all).
    let manifest: Value =
        images::manifest(paths, &rec.id).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    if layers.len() == out.len() {
        for ((slot, l), diff_id) in out.iter_mut().zip(&layers).zip(&rec.layers) {
            let (Some(digest), Some(size), Some(media_type)) =
                (l["digest"].as_str(), l["size"].as_u64(), l["mediaType"].as_str())
            else {
                continue;
            };
            for repo in &pulled {
                let layer = PushedLayer {
                    digest: digest.to_string(),
                    size,
                    media_type: media_type.to_string(),
                    diff_id: diff_id.clone(),
                };
                slot.insert(0, Candidate { repository: repo.clone(), layer });
            }
        }
    }
    Ok(out)
}

/// Pushes the stored image `rec` to `dest`; returns the manifest digest.
pub fn push(paths: &Paths, rec: &ImageRecord, dest: &Reference, plan: &MapPlan, quiet: bool) -> Result<String> {
    images::init(paths)?;
    let work = images::tempdir_in(&paths.staging(), "push")?;
    let result = push_with(paths, rec, dest, plan, quiet, &work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn push_with(
    paths: &Paths,
    rec: &ImageRecord,
    dest: &Reference,
    plan: &MapPlan,
    quiet: bool,
    work: &Path,
) -> Result<String> {
    let say = |line: String| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    let host = dest.registry.as_str();
    let creds = super::auth::lookup(host)?;
    let insecure = Config::load()?.endpoints(&dest.name())?.last().is_some_and(|e| e.insecure);
    let client = Client::new(host, dest.api_host(), &dest.repository, creds, insecure).for_push();
    let dest_repo = dest.name();

    // Layers the registry has already, or can link from another of its repositories.
    let mut chosen: Vec<Option<PushedLayer>> = vec![None; rec.layers.len()];
    for (slot, cands) in chosen.iter_mut().zip(candidates(paths, rec)?) {
        for c in cands.iter().filter(|c| c.layer.digest.starts_with("sha256:")) {
            let Some((reg, from)) = c.repository.split_once('/') else { continue };
            if reg != host {
                continue;
            }
            let short = &c.layer.digest[..19.min(c.layer.digest.len())];
            if c.repository == dest_repo {
                if client.blob_exists(&c.layer.digest)? {
                    say(format!("blob {short} already in `{}`", dest.name()));
                    *slot = Some(c.layer.clone());
                    break;
                }
            } else if client.mount_blob(&c.layer.digest, from)? {
                say(format!("blob {short} mounted from `{}`", c.repository));
                *slot = Some(c.layer.clone());
                break;
            }
        }
    }

    // The rest: export, compress and upload.
    let missing: Vec<usize> = (0..chosen.len()).filter(|&i| chosen[i].is_none()).collect();
    let dirs: Vec<PathBuf> = missing.iter().map(|&i| paths.layer_dir(&rec.layers[i])).collect::<Result<_>>()?;
    let blobs = if dirs.is_empty() { Vec::new() } else { layer_export::export_layers(&dirs, plan, work, true)? };
    // A manifest lists one family of media types: Docker's when a reused blob carries one.
    let docker = chosen.iter().flatten().any(|l| l.media_type.starts_with("application/vnd.docker."));
    let chunk = chunk_size();
    for (&i, b) in missing.iter().zip(&blobs) {
        let short = &b.digest[..19];
        if client.blob_exists(&b.digest)? {
            say(format!("blob {short} already in `{}`", dest.name()));
        } else {
            say(format!("pushing blob {short} ({} bytes)", b.size));
            client.upload_blob(&b.digest, &b.path, chunk)?;
        }
        let media_type = if docker { DOCKER_LAYER_GZIP } else { OCI_LAYER_GZIP };
        chosen[i] = Some(PushedLayer {
            digest: b.digest.clone(),
            size: b.size,
            media_type: media_type.into(),
            diff_id: b.diff_id.clone(),
        });
    }
    let layers: Vec<PushedLayer> =
        chosen.into_iter().map(|l| l.ok_or_else(|| anyhow!("a layer was not pushed"))).collect::<Result<_>>()?;

    // The config: byte for byte the stored one when the diff ids stay, so the id stays too.
    let stored = images::config(paths, &rec.id)?;
    let diff_ids: Vec<&str> = layers.iter().map(|l| l.diff_id.as_str()).collect();
    let config_bytes = if diff_ids == rec.layers.iter().map(String::as_str).collect::<Vec<_>>() {
        stored
    } else {
        let mut config: Value = serde_json::from_slice(&stored).context("parse the image config")?;
        config["rootfs"] = json!({"type": "layers", "diff_ids": diff_ids});
        serde_json::to_vec(&config).context("encode the image config")?
    };
    let config_digest = digest::sha256(&config_bytes);
    if !client.blob_exists(&config_digest)? {
        let config_path = work.join("config.json");
        std::fs::write(&config_path, &config_bytes).with_context(|| format!("write `{}`", config_path.display()))?;
        client.upload_blob(&config_digest, &config_path, chunk)?;
    }
    let (manifest_type, config_type) =
        if docker { (DOCKER_MANIFEST, DOCKER_CONFIG) } else { (OCI_MANIFEST, OCI_CONFIG) };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": config_type, "digest": config_digest, "size": config_bytes.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": l.media_type, "digest": l.digest, "size": l.size})).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&manifest).context("encode the manifest")?;
    let tag = dest.tag.as_deref().unwrap_or("latest");
    let digest = client.put_manifest(tag, manifest_type, &bytes)?;
    images::record_push(paths, &rec.id, Pushed { repository: dest_repo, layers })?;
    Ok(digest)
}
