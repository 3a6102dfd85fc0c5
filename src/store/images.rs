//! Images in the store. Layers are unpacked once, each in its own directory named by its diff
//! id (`layers/<hex>/`), and shared by every image that has them; an image is a record
//! (`images/<config hex>/`: the manifest and config as pulled, and `image.json`), and
//! `tags.json` maps names (`docker.io/library/alpine:latest`) to image ids. Everything appears
//! by `rename` of a finished staging directory, and `tags.json` is rewritten atomically under
//! the images lock: a pull killed at any moment leaves nothing half-visible. Removal (`rmi`,
//! `prune`) is the same in reverse: under the lock, names go first, then the record and each
//! unused layer are renamed into one trash directory in staging, which a stage-1 process
//! deletes inside the user namespace (layers hold files of subordinate ids).

use std::collections::{BTreeMap, BTreeSet};
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
/// points `names` at it. All under the images lock: `rmi` and `prune` take records and layers
/// away under it, so a layer this pull found in the store may have gone since — that fails
/// here instead of leaving an image without its layer.
/// `pulled`: the names are repositories of a registry that holds the image by `record.digest`
/// (a pull); an image loaded from an archive has no such repository.
pub fn save(
    paths: &Paths,
    record: &ImageRecord,
    manifest: &[u8],
    config: &[u8],
    names: &[String],
    pulled: bool,
) -> Result<()> {
    let what = names.first().unwrap_or(&record.id);
    let _lock = lock::exclusive(&paths.images_lock())?;
    for d in &record.layers {
        if !paths.layer_dir(d)?.is_dir() {
            bail!("image `{what}`: layer `{d}` was removed from the store meanwhile (rmi or prune); pull again");
        }
    }
    let dir = paths.image_dir(&record.id)?;
    if !dir.join("image.json").exists() {
        let stage = tempdir_in(&paths.staging(), "image")?;
        let write = |name: &str, data: &[u8]| lock::write_replace(&stage.join(name), data, true);
        let staged = (|| {
            write("manifest.json", manifest)?;
            write("config.json", config)?;
            write("image.json", &serde_json::to_vec_pretty(record).context("encode image record")?)?;
            std::fs::rename(&stage, &dir).with_context(|| format!("store image `{what}` in `{}`", dir.display()))
        })();
        if staged.is_err() {
            let _ = std::fs::remove_dir_all(&stage);
        }
        staged?;
    }
    let known = pulled_from(paths, &record.id)?;
    let mut repos = known.clone().unwrap_or_default();
    let added = pulled && names.iter().any(|n| repos.insert(repo_of(n).to_string()));
    if added || known.is_none() {
        let json = serde_json::to_vec_pretty(&repos).context("encode repositories")?;
        lock::write_atomic(&dir.join(PULLED_FROM), &json)?;
    }
    let mut tags = read_tags(paths)?;
    for n in names {
        tags.insert(n.clone(), record.id.clone());
    }
    write_tags(paths, &tags)
}

/// The record file listing the repositories an image was pulled from: they hold it by its
/// manifest digest (`RepoDigests`), which names given by `rl tag` do not.
const PULLED_FROM: &str = "repositories.json";

/// The repositories image `id` was pulled from; `None` for a record older than that list.
pub fn pulled_from(paths: &Paths, id: &str) -> Result<Option<BTreeSet<String>>> {
    let p = paths.image_dir(id)?.join(PULLED_FROM);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("parse `{}`", p.display())).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read `{}`", p.display())),
    }
}

/// Whether a stored name pins a digest (`repo@sha256:…`, `repo:tag@sha256:…`).
pub fn is_canonical(name: &str) -> bool {
    name.contains('@')
}

/// The repository of a stored name: `host:5000/a/b` for `host:5000/a/b:tag` or `…@sha256:…`.
pub fn repo_of(name: &str) -> &str {
    let name = name.split_once('@').map_or(name, |(n, _)| n);
    match name.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => name,
    }
}

fn write_tags(paths: &Paths, tags: &BTreeMap<String, String>) -> Result<()> {
    lock::write_atomic(&paths.tags_file(), &serde_json::to_vec_pretty(tags).context("encode tags")?)
}

/// A fresh private directory under `parent`, named after this process
/// (`PREFIX-PID.START-RANDOM`, START its start time) so that a later pull can tell one whose
/// process died ([`owner_gone`]) and remove it.
pub fn tempdir_in(parent: &Path, prefix: &str) -> Result<PathBuf> {
    super::layout::private_dir(parent)?;
    let id = crate::state::new_id()?;
    let pid = std::process::id();
    let start = crate::state::start_time(pid as i32).unwrap_or(0);
    let dir = parent.join(format!("{prefix}-{pid}.{start}-{}", &id[..12]));
    std::fs::create_dir(&dir).with_context(|| format!("create `{}`", dir.display()))?;
    Ok(dir)
}

/// Whether the process that made staging dir `name` with [`tempdir_in`] has gone (exited, or
/// its pid now belongs to a younger process). False for names of another shape.
pub fn owner_gone(name: &str) -> bool {
    let Some(owner) = name.split('-').nth(1) else { return false };
    let Some((pid, start)) = owner.split_once('.') else { return false };
    let (Ok(pid), Ok(start)) = (pid.parse::<i32>(), start.parse::<u64>()) else { return false };
    crate::state::start_time(pid) != Some(start)
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

/// The raw manifest JSON an image was pulled by (or made with).
pub fn manifest(paths: &Paths, id: &str) -> Result<Vec<u8>> {
    let p = paths.image_dir(id)?.join("manifest.json");
    std::fs::read(&p).with_context(|| format!("read `{}`", p.display()))
}

/// Holds off `rmi` and `prune` (they take the images lock exclusively) while a container made
/// from stored layers gets its record: once the record exists they see the layers in use.
/// Errors if a layer went away before the lock was taken.
pub fn hold_layers(paths: &Paths, layers: &[PathBuf]) -> Result<lock::Lock> {
    let held = lock::shared(&paths.images_lock())?;
    if let Some(gone) = layers.iter().find(|l| !l.is_dir()) {
        bail!("layer `{}` was removed from the store meanwhile (rmi or prune); run again", gone.display());
    }
    Ok(held)
}

/// A blob a registry holds for one of an image's layers: a later push to another repository of
/// that registry can mount it instead of uploading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedLayer {
    pub digest: String,
    pub size: u64,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:` of the blob's uncompressed tar (what the pushed config lists).
    #[serde(rename = "diffId")]
    pub diff_id: String,
}

/// One push of an image: the repository (`host/path`) and the layer blobs now there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pushed {
    pub repository: String,
    pub layers: Vec<PushedLayer>,
}

const PUSHED: &str = "pushed.json";

/// Where image `id` was pushed, newest last.
pub fn pushed(paths: &Paths, id: &str) -> Result<Vec<Pushed>> {
    let p = paths.image_dir(id)?.join(PUSHED);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).with_context(|| format!("parse `{}`", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("read `{}`", p.display())),
    }
}

/// Records a push of image `id` (replacing an older record for the same repository). Under the
/// images lock, so two pushes never lose each other's record and `rmi` never races it.
pub fn record_push(paths: &Paths, id: &str, push: Pushed) -> Result<()> {
    let _lock = lock::exclusive(&paths.images_lock())?;
    let dir = paths.image_dir(id)?;
    if !dir.join("image.json").exists() {
        return Ok(()); // removed meanwhile: nothing to remember it by
    }
    let mut all = pushed(paths, id)?;
    all.retain(|p| p.repository != push.repository);
    all.push(push);
    lock::write_atomic(&dir.join(PUSHED), &serde_json::to_vec_pretty(&all).context("encode pushes")?)
}

/// An image an argument named, and the stored name it matched exactly (`None` when it matched
/// by id, id prefix or digest): `rmi` untags a name but deletes by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub record: ImageRecord,
    pub name: Option<String>,
}

/// Finds an image by full name (`docker.io/library/alpine:latest`), by `name@digest`, or by
/// an id or unique id prefix (at least 4 hex digits).
pub fn find(
    paths: &Paths,
    name: &str,
    reference: Option<&crate::image::reference::Reference>,
) -> Result<Option<ImageRecord>> {
    Ok(find_in(paths, &read_tags(paths)?, name, reference)?.map(|f| f.record))
}

/// [`find`] against tags already read (under the lock, for changes).
pub fn find_in(
    paths: &Paths,
    tags: &BTreeMap<String, String>,
    name: &str,
    reference: Option<&crate::image::reference::Reference>,
) -> Result<Option<Found>> {
    if let Some(r) = reference {
        let full = r.to_string();
        if let Some(id) = tags.get(&full) {
            return Ok(Some(Found { record: load(paths, id)?, name: Some(full) }));
        }
        // A repository an image was pulled from holds it by its manifest digest too, whatever
        // name it was pulled by (Docker records a digest reference beside the tag).
        if let Some(d) = &r.digest {
            let repo = r.name();
            for (_, id) in tags.iter().filter(|(n, _)| repo_of(n) == repo) {
                let rec = load(paths, id)?;
                if &rec.digest == d && pulled_from(paths, id)?.map_or(true, |p| p.contains(&repo)) {
                    return Ok(Some(Found { record: rec, name: None }));
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
            [one] => return Ok(Some(Found { record: load(paths, &format!("sha256:{one}"))?, name: None })),
            [] => {}
            _ => bail!("image `{name}`: the id prefix is ambiguous ({} images)", matches.len()),
        }
    }
    Ok(None)
}

/// Every image with its names, newest first.
pub fn list(paths: &Paths) -> Result<Vec<(ImageRecord, Vec<String>)>> {
    list_with(paths, &read_tags(paths)?)
}

fn list_with(paths: &Paths, tags: &BTreeMap<String, String>) -> Result<Vec<(ImageRecord, Vec<String>)>> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir(paths.images()) else { return Ok(out) };
    for e in dir.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.len() != 64 {
            continue;
        }
        let Ok(rec) = load(paths, &format!("sha256:{name}")) else { continue };
        let names = names_of(tags, &rec.id);
        out.push((rec, names));
    }
    out.sort_by_key(|(r, _)| std::cmp::Reverse(r.pulled_ns));
    Ok(out)
}

/// The names pointing at image `id`, sorted.
pub fn names_of(tags: &BTreeMap<String, String>, id: &str) -> Vec<String> {
    tags.iter().filter(|(_, i)| *i == id).map(|(n, _)| n.clone()).collect()
}

/// The names of every image: `docker.io/library/alpine:latest` → image id.
pub fn tags(paths: &Paths) -> Result<BTreeMap<String, String>> {
    read_tags(paths)
}

/// The store held under the images lock, with the tags as read under it: `tag`, `rmi` and
/// `prune` decide and change through this, so no pull or other removal interleaves.
pub struct Locked<'a> {
    paths: &'a Paths,
    _lock: lock::Lock,
    pub tags: BTreeMap<String, String>,
    trash: Option<PathBuf>,
    trashed_layers: usize,
}

/// What [`Locked::remove`] took out of the store.
#[derive(Debug, Default)]
pub struct Removed {
    /// Diff ids of the layers moved to the trash (no other image or container uses them).
    pub layers: Vec<String>,
    /// Bytes those layers held.
    pub bytes: u64,
    /// Layers that could not be moved out: they stay in the store, unused.
    pub kept: Vec<String>,
}

/// Removed records and layers, out of the store and waiting for deletion. Layers hold files of
/// subordinate ids, which only root of the user namespace can delete: one directory, so one
/// stage-1 process removes it all.
#[derive(Debug)]
pub struct Trash {
    pub dir: PathBuf,
    /// Whether any layer is in it (without, the user can delete it directly).
    pub has_layers: bool,
}

/// Takes the images lock (creating the store's image directories first).
pub fn lock(paths: &Paths) -> Result<Locked<'_>> {
    init(paths)?;
    let guard = lock::exclusive(&paths.images_lock())?;
    let tags = read_tags(paths)?;
    Ok(Locked { paths, _lock: guard, tags, trash: None, trashed_layers: 0 })
}

impl Locked<'_> {
    /// Writes the tags back atomically.
    pub fn save_tags(&self) -> Result<()> {
        write_tags(self.paths, &self.tags)
    }

    /// [`find_in`] under the lock.
    pub fn find(&self, name: &str, reference: Option<&crate::image::reference::Reference>) -> Result<Option<Found>> {
        find_in(self.paths, &self.tags, name, reference)
    }

    /// Every image with its names, newest first.
    pub fn list(&self) -> Result<Vec<(ImageRecord, Vec<String>)>> {
        list_with(self.paths, &self.tags)
    }

    /// Takes image `rec` out of the store: its names and record first (the image vanishes at
    /// once), then each of its layers no other image uses and no container lists as a lower
    /// directory (`in_use`), each by one `rename` into the trash, so the store never shows
    /// half a layer.
    pub fn remove(&mut self, rec: &ImageRecord, in_use: &BTreeSet<PathBuf>) -> Result<Removed> {
        let what = &rec.id;
        let before = self.tags.len();
        self.tags.retain(|_, id| id != what);
        if self.tags.len() != before {
            self.save_tags()?;
        }
        let trash = self.trash_dir()?;
        let dir = self.paths.image_dir(what)?;
        let hex = hex_of(what)?;
        std::fs::rename(&dir, trash.join(format!("image-{hex}")))
            .with_context(|| format!("remove image `{what}`: move `{}` out of the store", dir.display()))?;
        let mut used: BTreeSet<String> = BTreeSet::new();
        for (other, _) in self.list()? {
            used.extend(other.layers);
        }
        let mut out = Removed::default();
        for d in &rec.layers {
            let layer = self.paths.layer_dir(d)?;
            if used.contains(d) || in_use.contains(&layer) || out.layers.contains(d) || out.kept.contains(d) {
                continue;
            }
            let dest = trash.join(hex_of(d)?);
            match std::fs::rename(&layer, &dest) {
                Ok(()) => {
                    out.bytes += disk_usage(&dest);
                    out.layers.push(d.clone());
                    self.trashed_layers += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => out.kept.push(d.clone()),
            }
        }
        Ok(out)
    }

    fn trash_dir(&mut self) -> Result<PathBuf> {
        if let Some(t) = &self.trash {
            return Ok(t.clone());
        }
        let t = tempdir_in(&self.paths.staging(), "rmi")?;
        self.trash = Some(t.clone());
        Ok(t)
    }

    /// Releases the lock; returns the trash to delete, if anything was removed.
    pub fn unlock(self) -> Option<Trash> {
        let has_layers = self.trashed_layers > 0;
        self.trash.map(|dir| Trash { dir, has_layers })
    }
}

/// Bytes of the files under `path` (apparent sizes, hard links once, symlinks not followed);
/// what cannot be read (directories of other subordinate ids) is left out.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::HashSet::new();
    let mut total = 0;
    let mut stack = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&p) else { continue };
        if meta.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if meta.nlink() < 2 || seen.insert((meta.dev(), meta.ino())) {
            total += meta.len();
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_of_names() {
        let d = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
        for (name, repo) in [
            ("docker.io/library/alpine:latest", "docker.io/library/alpine"),
            ("127.0.0.1:5056/test/busybox:latest", "127.0.0.1:5056/test/busybox"),
            (&format!("host:5000/a/b@{d}"), "host:5000/a/b"),
            (&format!("host:5000/a/b:1@{d}"), "host:5000/a/b"),
            ("host:5000/a/b", "host:5000/a/b"),
        ] {
            assert_eq!(repo_of(name), repo, "{name}");
        }
        assert!(is_canonical(&format!("r/a@{d}")) && !is_canonical("r/a:1"));
    }

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
        save(&paths, &rec, b"manifest", b"config", std::slice::from_ref(&name), true).unwrap();
        save(&paths, &rec, b"manifest", b"config", &[], true).unwrap();
        let r = crate::image::reference::Reference::parse("x").unwrap();
        assert_eq!(find(&paths, "x", Some(&r)).unwrap().unwrap(), rec);
        let by_digest = r.with_digest(&rec.digest);
        assert_eq!(find(&paths, "x@…", Some(&by_digest)).unwrap().unwrap(), rec);
        let elsewhere = crate::image::reference::Reference::parse("y").unwrap().with_digest(&rec.digest);
        assert!(find(&paths, "y@…", Some(&elsewhere)).unwrap().is_none());
        assert_eq!(find(&paths, &id[7..13], None).unwrap().unwrap().id, id);
        assert!(find(&paths, "ffff", None).unwrap().is_none());
        assert_eq!(list(&paths).unwrap(), vec![(rec, vec![name])]);
        assert_eq!(config(&paths, &id).unwrap(), b"config");
        assert_eq!(pulled_from(&paths, &id).unwrap(), Some(BTreeSet::from(["docker.io/library/x".to_string()])));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn staging_dirs_name_their_process() {
        let tmp = std::env::temp_dir().join(format!("rl-owner-{}", std::process::id()));
        let dir = tempdir_in(&tmp, "push").unwrap();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!owner_gone(&name), "this process is alive: {name}");
        // A pid above the kernel's maximum never exists; a live pid with another start time is
        // a recycled one.
        assert!(owner_gone("push-4194304.5-abc"), "no such pid");
        let me = std::process::id();
        assert!(owner_gone(&format!("push-{me}.1-abc")), "a recycled pid");
        for odd in ["layer-0123456789abcdef", "push", "push-x.y-z", "push-12-z"] {
            assert!(!owner_gone(odd), "{odd}");
        }
        std::fs::remove_dir_all(&tmp).unwrap();
    }

    #[test]
    fn remove_moves_the_record_and_unshared_layers_to_the_trash() {
        use crate::image::digest::sha256;
        let base = std::env::temp_dir().join(format!("rl-images-rm-{}", std::process::id()));
        let paths = Paths::resolve(Some(base.join("s")), Some(base.join("r"))).unwrap();
        init(&paths).unwrap();
        let (shared, own, pinned) = (sha256(b"shared"), sha256(b"own"), sha256(b"pinned"));
        let rec = |cfg: &[u8], layers: &[&String]| ImageRecord {
            id: sha256(cfg),
            digest: sha256(b"m"),
            layers: layers.iter().map(|l| l.to_string()).collect(),
            size: 1,
            platform: "linux/amd64".into(),
            pulled_ns: 1,
        };
        let a = rec(b"a", &[&shared, &own, &pinned, &own]);
        let b = rec(b"b", &[&shared]);
        let missing = rec(b"c", &[&sha256(b"nowhere")]);
        assert!(save(&paths, &missing, b"m", b"c", &[], true)
            .unwrap_err()
            .to_string()
            .contains("removed from the store"));
        for l in [&shared, &own, &pinned] {
            std::fs::create_dir_all(paths.layer_dir(l).unwrap().join("etc")).unwrap();
            std::fs::write(paths.layer_dir(l).unwrap().join("etc/f"), b"12345").unwrap();
        }
        save(&paths, &a, b"m", b"a", &["r/a:1".into(), "r/a:2".into()], true).unwrap();
        save(&paths, &b, b"m", b"b", &["r/b:1".into()], true).unwrap();
        let mut store = lock(&paths).unwrap();
        let in_use = BTreeSet::from([paths.layer_dir(&pinned).unwrap()]);
        let removed = store.remove(&a, &in_use).unwrap();
        assert_eq!(removed.layers, vec![own.clone()]);
        assert_eq!(removed.bytes, 5);
        assert!(store.tags.values().all(|id| *id == b.id));
        let trash = store.unlock().unwrap();
        assert!(trash.has_layers && trash.dir.join(hex_of(&own).unwrap()).join("etc/f").exists());
        assert!(!paths.layer_dir(&own).unwrap().exists() && paths.layer_dir(&shared).unwrap().exists());
        assert!(paths.layer_dir(&pinned).unwrap().exists(), "a container's layer stays");
        assert_eq!(list(&paths).unwrap(), vec![(b, vec!["r/b:1".to_string()])]);
        assert!(find(&paths, &a.id, None).unwrap().is_none());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
