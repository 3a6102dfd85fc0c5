//! Images in the store. Layers are unpacked once, each in its own directory named by its diff
//! id (`layers/<hex>/`), and shared by every image that has them; an image is a record
//! (`images/<config hex>/`: the manifest and config as pulled, and `image.json`), and
//! `tags.json` maps names (`docker.io/library/alpine:latest`) to image ids. Everything appears
//! by `rename` of a finished staging directory, and `tags.json` is rewritten atomically under
//! the images lock: a pull killed at any moment leaves nothing half-visible.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::lock;
use super::Paths;
use crate::image::digest::hex_of;

/// What rl records about an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// `sha256:` of the config: the image id, as Docker shows it.
    pub id: String,
    /// `sha256:` of the manifest it was pulled by.
    pub digest: String,
    /// Layer diff ids, bottom first.
    pub layers: Vec<String>,
    /// Bytes of the compressed layers as pulled.
    pub size: u64,
    /// `os/arch[/variant]`.
    pub platform: String,
    pub pulled_ns: u128,
}

impl Paths {
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }
    pub fn image_dir(&self, id: &str) -> Result<PathBuf> {
        Ok(self.images().join(hex_of(id)?))
    }
    pub fn layers(&self) -> PathBuf {
        self.root.join("layers")
    }
    /// The unpacked layer with this diff id (an overlay lower directory).
    pub fn layer_dir(&self, diff_id: &str) -> Result<PathBuf> {
        Ok(self.layers().join(hex_of(diff_id)?))
    }
    /// Staging directories for pulls in progress.
    pub fn staging(&self) -> PathBuf {
        self.root.join("tmp")
    }
    fn tags_file(&self) -> PathBuf {
        self.images().join("tags.json")
    }
    fn images_lock(&self) -> PathBuf {
        self.root.join("images.lock")
    }
}

/// Creates the store's image directories.
pub fn init(paths: &Paths) -> Result<()> {
    for d in [paths.images(), paths.layers(), paths.staging()] {
        super::layout::private_dir(&d)?;
    }
    Ok(())
}

fn read_tags(paths: &Paths) -> Result<BTreeMap<String, String>> {
    match std::fs::read(paths.tags_file()) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("parse `{}`", paths.tags_file().display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e).with_context(|| format!("read `{}`", paths.tags_file().display())),
    }
}

/// Stores an image record with its manifest and config (staged, then renamed into place) and
/// points `names` at it.
pub fn save(paths: &Paths, record: &ImageRecord, manifest: &[u8], config: &[u8], names: &[String]) -> Result<()> {
    let dir = paths.image_dir(&record.id)?;
    if !dir.join("image.json").exists() {
        let stage = tempdir_in(&paths.staging(), "image")?;
        let write = |name: &str, data: &[u8]| lock::write_replace(&stage.join(name), data, true);
        write("manifest.json", manifest)?;
        write("config.json", config)?;
        write("image.json", &serde_json::to_vec_pretty(record).context("encode image record")?)?;
        if let Err(e) = std::fs::rename(&stage, &dir) {
            let _ = std::fs::remove_dir_all(&stage);
            // Another pull stored the same image first.
            if !dir.join("image.json").exists() {
                return Err(e).with_context(|| format!("store image `{}`", dir.display()));
            }
        }
    }
    let _lock = lock::exclusive(&paths.images_lock())?;
    let mut tags = read_tags(paths)?;
    for n in names {
        tags.insert(n.clone(), record.id.clone());
    }
    lock::write_atomic(&paths.tags_file(), &serde_json::to_vec_pretty(&tags).context("encode tags")?)
}

/// A fresh private directory under `parent`.
pub fn tempdir_in(parent: &Path, prefix: &str) -> Result<PathBuf> {
    super::layout::private_dir(parent)?;
    let id = crate::state::new_id()?;
    let dir = parent.join(format!("{prefix}-{}", &id[..16]));
    std::fs::create_dir(&dir).with_context(|| format!("create `{}`", dir.display()))?;
    Ok(dir)
}

/// Loads an image record by id.
pub fn load(paths: &Paths, id: &str) -> Result<ImageRecord> {
    let p = paths.image_dir(id)?.join("image.json");
    let b = std::fs::read(&p).with_context(|| format!("read `{}`", p.display()))?;
    serde_json::from_slice(&b).with_context(|| format!("parse `{}`", p.display()))
}

/// The raw config JSON of an image.
pub fn config(paths: &Paths, id: &str) -> Result<Vec<u8>> {
    let p = paths.image_dir(id)?.join("config.json");
    std::fs::read(&p).with_context(|| format!("read `{}`", p.display()))
}

/// Finds an image by full name (`docker.io/library/alpine:latest`), by `name@digest`, or by
/// an id or unique id prefix (at least 4 hex digits).
pub fn find(
    paths: &Paths,
    name: &str,
    reference: Option<&crate::image::reference::Reference>,
) -> Result<Option<ImageRecord>> {
    let tags = read_tags(paths)?;
    if let Some(r) = reference {
        if let Some(id) = tags.get(&r.to_string()) {
            return load(paths, id).map(Some);
        }
        if let Some(d) = &r.digest {
            for (_, id) in tags.iter().filter(|(n, _)| n.starts_with(&format!("{}@", r.name()))) {
                let rec = load(paths, id)?;
                if &rec.digest == d {
                    return Ok(Some(rec));
                }
            }
        }
    }
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    if hex.len() >= 4 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        let Ok(dir) = std::fs::read_dir(paths.images()) else { return Ok(None) };
        let matches: Vec<String> = dir
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 64 && n.starts_with(hex))
            .collect();
        match matches.as_slice() {
            [one] => return load(paths, &format!("sha256:{one}")).map(Some),
            [] => {}
            _ => bail!("image `{name}`: the id prefix is ambiguous ({} images)", matches.len()),
        }
    }
    Ok(None)
}

/// Every image with its names, newest first.
pub fn list(paths: &Paths) -> Result<Vec<(ImageRecord, Vec<String>)>> {
    let tags = read_tags(paths)?;
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(paths.images()) else { return Ok(out) };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() != 64 {
            continue;
        }
        let Ok(rec) = load(paths, &format!("sha256:{name}")) else { continue };
        let names = tags.iter().filter(|(_, id)| **id == rec.id).map(|(n, _)| n.clone()).collect();
        out.push((rec, names));
    }
    out.sort_by_key(|(r, _)| std::cmp::Reverse(r.pulled_ns));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn save_find_list() {
        let base = std::env::temp_dir().join(format!("rl-images-{}", std::process::id()));
        let paths = Paths::resolve(Some(base.join("s")), Some(base.join("r"))).unwrap();
        init(&paths).unwrap();
        let id = crate::image::digest::sha256(b"config");
        let rec = ImageRecord {
            id: id.clone(),
            digest: crate::image::digest::sha256(b"manifest"),
            layers: vec![],
            size: 1,
            platform: "linux/amd64".into(),
            pulled_ns: 1,
        };
        let name = "docker.io/library/x:latest".to_string();
        save(&paths, &rec, b"manifest", b"config", std::slice::from_ref(&name)).unwrap();
        save(&paths, &rec, b"manifest", b"config", &[]).unwrap();
        let r = crate::image::reference::Reference::parse("x").unwrap();
        assert_eq!(find(&paths, "x", Some(&r)).unwrap().unwrap(), rec);
        assert_eq!(find(&paths, &id[7..13], None).unwrap().unwrap().id, id);
        assert!(find(&paths, "ffff", None).unwrap().is_none());
        assert_eq!(list(&paths).unwrap(), vec![(rec, vec![name])]);
        assert_eq!(config(&paths, &id).unwrap(), b"config");
        std::fs::remove_dir_all(&base).unwrap();
    }
}
