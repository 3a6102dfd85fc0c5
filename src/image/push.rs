//! `rl push`: the image's layers are exported from the store as OCI tars by a stage-1 process in
//! the user namespace (files owned by subordinate ids are only readable there, and owners come
//! out as the container's ids), gzipped and hashed in the `rl` parent into staging files, then
//! uploaded: a `HEAD` skips blobs the registry has, the rest go up monolithically (`POST` for an
//! upload URL, `PUT ?digest=`), then the config (its diff ids rewritten to the exported tars) and
//! an OCI manifest. As with Podman, a pushed image's layer digests are those of rl's own tars.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::digest;
use super::layer_export;
use super::reference::Reference;
use super::registry::Client;
use crate::store::images::{self, ImageRecord};
use crate::store::Paths;
use crate::userns::MapPlan;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

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
            401 | 403 => bail!(self.unauthorized(resp.status().as_u16())),
            s => bail!("registry `{}`: HEAD blob `{digest}`: HTTP {s}", self.registry),
        }
    }

    /// Uploads the file at `path` as blob `digest` (monolithic upload).
    pub fn upload_blob(&self, digest: &str, path: &Path) -> Result<()> {
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
                bail!(self.unauthorized(status));
            }
            bail!("registry `{}`: start the upload of `{digest}`: HTTP {status}", self.registry);
        }
        let location = resp
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| anyhow!("registry `{}`: upload of `{digest}` without a Location", self.registry))?
            .to_string();
        let mut url = if location.starts_with('/') { format!("{}{location}", self.base()) } else { location };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={digest}"));
        let resp = self.call(&format!("PUT blob `{digest}`"), &|agent, auth| {
            let file = File::open(path).map_err(ureq::Error::Io)?;
            let len = file.metadata().map_err(ureq::Error::Io)?.len();
            let mut req =
                agent.put(&url).header("Content-Type", "application/octet-stream").header("Content-Length", len);
            if let Some(a) = auth {
                req = req.header("Authorization", a);
            }
            req.send(file)
        })?;
        match resp.status().as_u16() {
            201 | 204 => Ok(()),
            s => bail!("registry `{}`: upload of `{digest}`: HTTP {s}", self.registry),
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
            401 | 403 => bail!(self.unauthorized(resp.status().as_u16())),
            s => {
                let body = resp.into_body().with_config().limit(4096).read_to_string().unwrap_or_default();
                bail!("registry `{}`: PUT manifest `{reference}`: HTTP {s} {}", self.registry, body.trim())
            }
        }
    }
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
    let dirs: Vec<PathBuf> = rec.layers.iter().map(|d| paths.layer_dir(d)).collect::<Result<_>>()?;
    let blobs = layer_export::export_layers(&dirs, plan, work, true)?;
    let mut config: Value =
        serde_json::from_slice(&images::config(paths, &rec.id)?).context("parse the image config")?;
    config["rootfs"] =
        json!({"type": "layers", "diff_ids": blobs.iter().map(|b| b.diff_id.clone()).collect::<Vec<_>>()});
    let config_bytes = serde_json::to_vec(&config).context("encode the image config")?;
    let config_digest = digest::sha256(&config_bytes);
    let config_path = work.join("config.json");
    std::fs::write(&config_path, &config_bytes).with_context(|| format!("write `{}`", config_path.display()))?;

    let host = dest.registry.as_str();
    let creds = super::auth::lookup(host)?;
    let client = Client::new(host, dest.api_host(), &dest.repository, creds, false).for_push();
    for b in &blobs {
        if client.blob_exists(&b.digest)? {
            if !quiet {
                eprintln!("blob {} already in `{}`", &b.digest[..19], dest.name());
            }
            continue;
        }
        if !quiet {
            eprintln!("pushing blob {} ({} bytes)", &b.digest[..19], b.size);
        }
        client.upload_blob(&b.digest, &b.path)?;
    }
    if !client.blob_exists(&config_digest)? {
        client.upload_blob(&config_digest, &config_path)?;
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_bytes.len()},
        "layers": blobs.iter().map(|b| json!({"mediaType": OCI_LAYER_GZIP, "digest": b.digest, "size": b.size})).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&manifest).context("encode the manifest")?;
    let tag = dest.tag.as_deref().unwrap_or("latest");
    client.put_manifest(tag, OCI_MANIFEST, &bytes)
}
