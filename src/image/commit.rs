//! New images from a filesystem: `rl commit` (a stopped container's upper dir becomes one more
//! layer on top of its image) and `rl import` (a tar becomes a one-layer image). Runs in the `rl`
//! parent.
//!
//! Both spool the layer's uncompressed tar into a staging directory of the store while hashing
//! it (its diff id), then, unless the store has that layer already, stream it through
//! [`super::pull::unpack_layers`] — the same all-or-nothing, in-namespace unpack a pull uses, so
//! the layer's files are owned by the user's subordinate ids like every other layer's. For a
//! commit, stage 1 writes the tar from the upper dir inside the container's own user namespace
//! ([`crate::sandbox::copy`]), so owners come out as the container's ids, and overlay whiteouts
//! and opaque directories come out as OCI `.wh.` entries ([`crate::store::export`]).
//!
//! The config is the base image's (none for an import) with the `--change` instructions applied,
//! the new diff id and a history entry; the manifest lists the base image's blobs and the new
//! layer as an uncompressed tar (digest = diff id). A push exports and compresses it anew.
//! Unlike `docker commit`, the container's own command and environment do not replace the
//! image's: `-c 'CMD …'` says what the new image runs.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};

use super::digest::{self, HashingWriter};
use super::manifest::{Compression, Platform};
use super::pull::{unpack_layers, Incoming};
use crate::sandbox::copy::{FsJob, Target};
use crate::store::images::{self, ImageRecord};
use crate::store::Paths;
use crate::userns::MapPlan;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// What the user adds to the new image.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `-m`: the history entry's comment.
    pub message: Option<String>,
    /// `-a`: the image's author.
    pub author: Option<String>,
    /// `-c`: Dockerfile instructions applied to the config.
    pub changes: Vec<String>,
    /// The names to give it.
    pub names: Vec<String>,
}

/// A layer tar spooled into the staging area.
struct Spooled {
    path: std::path::PathBuf,
    diff_id: String,
    size: u64,
}

/// Copies `input` into `path`, hashing it.
fn spool(mut input: impl Read, path: &Path) -> Result<Spooled> {
    let file = File::create(path).with_context(|| format!("create `{}`", path.display()))?;
    let mut w = HashingWriter::new(BufWriter::with_capacity(256 << 10, file));
    std::io::copy(&mut input, &mut w).context("read the layer")?;
    let (mut inner, diff_id, size) = w.finish();
    inner.flush().with_context(|| format!("write `{}`", path.display()))?;
    Ok(Spooled { path: path.to_path_buf(), diff_id, size })
}

/// Puts the spooled layer into the store unless it is there already.
fn store_layer(paths: &Paths, plan: &MapPlan, layer: &Spooled, what: &str) -> Result<()> {
    if paths.layer_dir(&layer.diff_id)?.is_dir() {
        return Ok(());
    }
    let incoming = Incoming {
        diff_id: layer.diff_id.clone(),
        compression: Compression::None,
        what: what.to_string(),
        image: what.to_string(),
    };
    unpack_layers(paths, plan, &[incoming], |writers| {
        writers
            .into_iter()
            .map(|w| {
                let mut from = File::open(&layer.path).with_context(|| format!("open `{}`", layer.path.display()))?;
                let mut to = File::from(w);
                match std::io::copy(&mut from, &mut to) {
                    Ok(_) => Ok(()),
                    // The unpacker stopped early: its own error says why.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
                    Err(e) => Err(e).context("pass the layer to the unpacker"),
                }
            })
            .collect()
    })
}

/// `rl commit`: a new image from stopped container `cfg`; returns its id.
pub fn commit(paths: &Paths, plan: &MapPlan, target: &Target, opts: &Options) -> Result<String> {
    let cfg = &target.cfg;
    let Some(image) = &cfg.image else {
        return Err(crate::hint::with_fix(
            format!("container `{}`: made from a root filesystem directory, not an image", cfg.name),
            format!("make an image of its whole filesystem: `rl export {} | rl import - NAME`", cfg.name),
        ));
    };
    let base = images::load(paths, image)
        .map_err(|e| anyhow!("container `{}`: its image `{image}` is no longer in the store: {e:#}", cfg.name))?;
    let mut config: Value = serde_json::from_slice(&images::config(paths, &base.id)?)
        .with_context(|| format!("image `{image}`: parse the config"))?;
    let manifest: Value =
        images::manifest(paths, &base.id).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    apply_changes(&mut config, &opts.changes)?;
    images::init(paths)?;
    let work = images::tempdir_in(&paths.staging(), "commit")?;
    let result = (|| {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create a layer pipe")?;
        let job = FsJob::Upper { upper: cfg.dirs.upper.clone() };
        let layer = target
            .run_job(job, w, || spool(File::from(r), &work.join("layer.tar")))
            .with_context(|| format!("container `{}`: export its changes", cfg.name))?;
        let what = format!("container {}", cfg.name);
        store_layer(paths, plan, &layer, &what)?;
        let mut layers = manifest["layers"].as_array().cloned().unwrap_or_default();
        if layers.len() != base.layers.len() {
            // A record without the blobs it was pulled as: name the layers by their tars.
            layers = base.layers.iter().map(|d| json!({"mediaType": OCI_LAYER, "digest": d, "size": 0})).collect();
        }
        let created_by = cfg.process.args.join(" ");
        add_layer(&mut config, &layer.diff_id, &created_by, opts);
        layers.push(json!({"mediaType": OCI_LAYER, "digest": layer.diff_id, "size": layer.size}));
        let mut diff_ids = base.layers.clone();
        diff_ids.push(layer.diff_id.clone());
        save(paths, &config, layers, diff_ids, base.size + layer.size, &base.platform, &opts.names)
    })();
    let _ = crate::sandbox::remove_tree(&work);
    result
}

/// Where `rl import` reads from.
pub enum Source {
    File(std::path::PathBuf),
    Stdin,
}

/// `rl import`: a one-layer image from a tar (plain, gzip or zstd); returns its id.
pub fn import(paths: &Paths, plan: &MapPlan, source: &Source, opts: &Options) -> Result<String> {
    let label = match source {
        Source::File(p) => p.display().to_string(),
        Source::Stdin => "stdin".to_string(),
    };
    let mut config = json!({"config": {}});
    apply_changes(&mut config, &opts.changes)?;
    images::init(paths)?;
    let work = images::tempdir_in(&paths.staging(), "import")?;
    let result = (|| {
        let input: Box<dyn Read> = match source {
            Source::File(p) => Box::new(File::open(p).with_context(|| format!("open `{}`", p.display()))?),
            Source::Stdin => Box::new(std::io::stdin().lock()),
        };
        let layer = spool(decompressed(input)?, &work.join("layer.tar"))?;
        let mut head = [0u8; 512];
        let n = File::open(&layer.path).and_then(|mut f| f.read(&mut head)).context("read the layer")?;
        if !super::archive::is_tar(&head[..n]) {
            bail!("not a tar archive (plain, gzip or zstd)");
        }
        store_layer(paths, plan, &layer, &label)?;
        let host = Platform::host();
        let obj = config.as_object_mut().context("the new config is not an object")?;
        obj.insert("architecture".into(), json!(host.arch));
        obj.insert("os".into(), json!(host.os));
        if let Some(v) = &host.variant {
            obj.insert("variant".into(), json!(v));
        }
        add_layer(&mut config, &layer.diff_id, &format!("rl import {label}"), opts);
        let layers = vec![json!({"mediaType": OCI_LAYER, "digest": layer.diff_id, "size": layer.size})];
        save(paths, &config, layers, vec![layer.diff_id.clone()], layer.size, &host.to_string(), &opts.names)
    })()
    .with_context(|| format!("import `{label}`"));
    let _ = crate::sandbox::remove_tree(&work);
    result
}

/// The stream with gzip or zstd taken off, recognised by its first bytes.
fn decompressed(mut input: Box<dyn Read>) -> Result<Box<dyn Read>> {
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match input.read(&mut head[n..]).context("read the archive")? {
            0 => break,
            k => n += k,
        }
    }
    let whole = std::io::Cursor::new(head[..n].to_vec()).chain(input);
    Ok(match super::archive::sniff(&head[..n]) {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(whole))),
        Compression::Zstd => Box::new(zstd::Decoder::new(whole).context("start zstd")?),
        Compression::None => Box::new(whole),
    })
}

/// Records the new layer in `config`: its diff id, a history entry, the time and author.
fn add_layer(config: &mut Value, diff_id: &str, created_by: &str, opts: &Options) {
    let now = rfc3339(crate::state::now_ns());
    if !config["rootfs"].is_object() {
        config["rootfs"] = json!({"type": "layers", "diff_ids": []});
    }
    match config["rootfs"]["diff_ids"].as_array_mut() {
        Some(ids) => ids.push(json!(diff_id)),
        None => config["rootfs"]["diff_ids"] = json!([diff_id]),
    }
    let mut entry = json!({"created": now, "created_by": created_by});
    if let Some(m) = &opts.message {
        entry["comment"] = json!(m);
    }
    if let Some(a) = &opts.author {
        entry["author"] = json!(a);
        config["author"] = json!(a);
    }
    match config["history"].as_array_mut() {
        Some(h) => h.push(entry),
        None => config["history"] = json!([entry]),
    }
    config["created"] = json!(now);
}

/// Writes the image record (manifest, config) and its names; returns the id.
fn save(
    paths: &Paths,
    config: &Value,
    layers: Vec<Value>,
    diff_ids: Vec<String>,
    size: u64,
    platform: &str,
    names: &[String],
) -> Result<String> {
    let config = serde_json::to_vec(config).context("encode the image config")?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": digest::sha256(&config), "size": config.len()},
        "layers": layers,
    });
    let manifest = serde_json::to_vec(&manifest).context("encode the manifest")?;
    let record = ImageRecord {
        id: digest::sha256(&config),
        digest: digest::sha256(&manifest),
        layers: diff_ids,
        size,
        platform: platform.to_string(),
        pulled_ns: crate::state::now_ns(),
    };
    images::save(paths, &record, &manifest, &config, names, false)?;
    Ok(record.id)
}

/// Applies Dockerfile instructions (`CMD`, `ENTRYPOINT`, `ENV`, `WORKDIR`, `USER`, `EXPOSE`,
/// `LABEL`, `STOPSIGNAL`, `VOLUME`) to an image config's `config` object, as `docker commit -c`
/// and `docker import -c` do.
pub fn apply_changes(config: &mut Value, changes: &[String]) -> Result<()> {
    if !config["config"].is_object() {
        config["config"] = json!({});
    }
    let c = config["config"].as_object_mut().context("the image config has no `config` object")?;
    for change in changes {
        apply_one(c, change).with_context(|| format!("change `{change}`"))?;
    }
    Ok(())
}

fn apply_one(c: &mut Map<String, Value>, change: &str) -> Result<()> {
    let change = change.trim();
    let (word, rest) = change.split_once(char::is_whitespace).unwrap_or((change, ""));
    let rest = rest.trim();
    let word = word.to_ascii_uppercase();
    if rest.is_empty() && !matches!(word.as_str(), "CMD" | "ENTRYPOINT") {
        bail!("{word} needs an argument");
    }
    match word.as_str() {
        "CMD" => {
            c.insert("Cmd".into(), json!(command(rest)?));
        }
        "ENTRYPOINT" => {
            c.insert("Entrypoint".into(), json!(command(rest)?));
        }
        "ENV" => {
            for (k, v) in pairs(rest)? {
                let env = c.entry("Env").or_insert_with(|| json!([]));
                let list = env.as_array_mut().context("Env is not a list")?;
                list.retain(|e| e.as_str().and_then(|e| e.split_once('=')).map(|(ek, _)| ek) != Some(&k));
                list.push(json!(format!("{k}={v}")));
            }
        }
        "LABEL" => {
            for (k, v) in pairs(rest)? {
                let labels = c.entry("Labels").or_insert_with(|| json!({}));
                if labels.is_null() {
                    *labels = json!({});
                }
                labels.as_object_mut().context("Labels is not an object")?.insert(k, json!(v));
            }
        }
        "WORKDIR" => {
            c.insert("WorkingDir".into(), json!(unquote(rest)));
        }
        "USER" => {
            c.insert("User".into(), json!(unquote(rest)));
        }
        "STOPSIGNAL" => {
            c.insert("StopSignal".into(), json!(unquote(rest)));
        }
        "EXPOSE" => {
            for port in rest.split_whitespace() {
                let (num, proto) = port.split_once('/').unwrap_or((port, "tcp"));
                if num.parse::<u16>().is_err() || !matches!(proto, "tcp" | "udp" | "sctp") {
                    bail!("port `{port}`: expected NUMBER[/tcp|udp|sctp]");
                }
                let ports = c.entry("ExposedPorts").or_insert_with(|| json!({}));
                if ports.is_null() {
                    *ports = json!({});
                }
                ports
                    .as_object_mut()
                    .context("ExposedPorts is not an object")?
                    .insert(format!("{num}/{proto}"), json!({}));
            }
        }
        "VOLUME" => {
            let list: Vec<String> = match serde_json::from_str(rest) {
                Ok(list) => list,
                Err(_) => rest.split_whitespace().map(String::from).collect(),
            };
            for v in list {
                let vols = c.entry("Volumes").or_insert_with(|| json!({}));
                if vols.is_null() {
                    *vols = json!({});
                }
                vols.as_object_mut().context("Volumes is not an object")?.insert(v, json!({}));
            }
        }
        other => bail!(
            "unknown instruction `{other}` (expected CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME \
             or WORKDIR)"
        ),
    }
    Ok(())
}

/// `["a","b"]` (exec form) or a shell command (`/bin/sh -c …`).
fn command(rest: &str) -> Result<Vec<String>> {
    if rest.is_empty() {
        return Ok(Vec::new());
    }
    if rest.starts_with('[') {
        return serde_json::from_str(rest).map_err(|e| anyhow!("not a JSON list of strings: {e}"));
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), rest.into()])
}

/// `K=V K2="v 2"`, or the old form `K V…` (one pair, the rest of the line).
fn pairs(rest: &str) -> Result<Vec<(String, String)>> {
    let first = rest.split_whitespace().next().unwrap_or("");
    if !first.contains('=') {
        let (k, v) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        return Ok(vec![(k.to_string(), unquote(v.trim()))]);
    }
    let mut out = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(c) = chars.next_if(|&c| c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        if chars.next() != Some('=') || key.is_empty() {
            bail!("expected KEY=VALUE pairs");
        }
        let mut value = String::new();
        let mut quote = None;
        while let Some(&c) = chars.peek() {
            match (quote, c) {
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (None, c) if c.is_whitespace() => break,
                (_, '\\') => {
                    chars.next();
                    if let Some(n) = chars.peek() {
                        value.push(*n);
                    }
                }
                (_, c) => value.push(c),
            }
            chars.next();
        }
        if quote.is_some() {
            bail!("unterminated quote in the value of `{key}`");
        }
        out.push((unquote(&key), value));
    }
}

fn unquote(s: &str) -> String {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            return inner.to_string();
        }
    }
    s.to_string()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time in nanoseconds (Howard Hinnant's `civil_from_days`).
fn rfc3339(ns: u128) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_apply_like_docker() {
        let mut config = json!({"config": {"Env": ["PATH=/bin", "A=1"], "Cmd": ["sh"]}});
        let changes: Vec<String> = [
            "CMD [\"echo\", \"hi\"]",
            "entrypoint /bin/app --x",
            "ENV A=2 B=\"two words\"",
            "ENV C three words",
            "WORKDIR /data",
            "USER 1000:1000",
            "EXPOSE 80 53/udp",
            "LABEL version=1.0 \"desc\"=x",
            "STOPSIGNAL SIGINT",
            "VOLUME [\"/v\"]",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        apply_changes(&mut config, &changes).unwrap();
        let c = &config["config"];
        assert_eq!(c["Cmd"], json!(["echo", "hi"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/bin/app --x"]));
        assert_eq!(c["Env"], json!(["PATH=/bin", "A=2", "B=two words", "C=three words"]));
        assert_eq!(c["WorkingDir"], json!("/data"));
        assert_eq!(c["User"], json!("1000:1000"));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["Labels"], json!({"version": "1.0", "desc": "x"}));
        assert_eq!(c["StopSignal"], json!("SIGINT"));
        assert_eq!(c["Volumes"], json!({"/v": {}}));
    }

    #[test]
    fn bad_changes_name_the_change() {
        for (change, needle) in [
            ("RUN echo", "unknown instruction `RUN`"),
            ("EXPOSE http", "port `http`"),
            ("CMD [\"a\",", "JSON list"),
            ("ENV A=\"x", "unterminated quote"),
            ("WORKDIR", "needs an argument"),
        ] {
            let mut config = json!({});
            let e = format!("{:#}", apply_changes(&mut config, &[change.to_string()]).unwrap_err());
            assert!(e.contains(needle) && e.contains(change), "{change}: {e}");
        }
    }

    #[test]
    fn times_and_layers() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000 * 1_000_000_000), "2023-11-14T22:13:20Z");
        let mut config = json!({"rootfs": {"type": "layers", "diff_ids": ["sha256:a"]}, "history": []});
        let opts = Options { message: Some("m".into()), author: Some("me".into()), ..Default::default() };
        add_layer(&mut config, "sha256:b", "sh -c x", &opts);
        assert_eq!(config["rootfs"]["diff_ids"], json!(["sha256:a", "sha256:b"]));
        assert_eq!(config["history"][0]["comment"], json!("m"));
        assert_eq!(config["history"][0]["created_by"], json!("sh -c x"));
        assert_eq!(config["author"], json!("me"));
    }
}
