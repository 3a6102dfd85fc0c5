//! `rl image …`: the image verbs as one group, as Docker and Podman have it — `ls` (= `rl
//! images`), `rm` (= `rl rmi`), `tag`, `history`, `pull`, `push`, `save`, `load`, and here
//! `inspect` (Docker's JSON) and `prune`. Also how every image verb reads its IMAGE argument: a name, parsed and
//! normalized like `rl pull`'s, else an id or id prefix.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::rmi::{Event, Remover};
use super::{history, images, load, pull, push, rmi, save, system, tag};
use crate::hint;
use crate::image::reference::{Reference, Rule};
use crate::store::images::{self as store, is_canonical, repo_of, ImageRecord};
use crate::store::Paths;

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// List images.
    #[command(visible_alias = "list")]
    Ls(images::ImagesArgs),
    /// Remove images (untag names, delete images no name or container needs).
    #[command(visible_alias = "remove")]
    Rm(rmi::RmiArgs),
    /// Show images' details as JSON.
    Inspect(InspectArgs),
    /// Remove dangling images (with -a: every image no container uses).
    Prune(PruneArgs),
    /// Give an image another name.
    Tag(tag::TagArgs),
    /// Show how an image was built, newest layer first.
    History(history::HistoryArgs),
    /// Pull an image from a registry.
    Pull(pull::PullArgs),
    /// Push an image to a registry.
    Push(push::PushArgs),
    /// Write images to an archive (docker-archive or oci-archive).
    Save(save::SaveArgs),
    /// Load images from an archive (docker-archive or oci-archive).
    Load(load::LoadArgs),
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image names or ids.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove every image no container uses, not only dangling ones.
    #[arg(short, long)]
    pub all: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub force: bool,
}

/// `rl image …`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: ImageArgs) -> Result<i32> {
    match args.command {
        ImageCommand::Ls(a) => images::run(root, runroot, a),
        ImageCommand::Rm(a) => rmi::run(root, runroot, a),
        ImageCommand::Inspect(a) => inspect(&Paths::resolve(root, runroot)?, &a),
        ImageCommand::Prune(a) => prune(&Paths::resolve(root, runroot)?, &a),
        ImageCommand::Tag(a) => tag::run(root, runroot, a),
        ImageCommand::History(a) => history::run(root, runroot, a),
        ImageCommand::Pull(a) => pull::run(root, runroot, a),
        ImageCommand::Push(a) => push::run(root, runroot, a),
        ImageCommand::Save(a) => save::run(root, runroot, a),
        ImageCommand::Load(a) => load::run(root, runroot, a),
    }
}

/// An IMAGE argument as a reference, or `None` when it is an image id (`sha256:…` or 64 hex
/// digits, which are not names). An id prefix parses as a name too; the lookup tries both.
pub fn reference_of(arg: &str) -> Result<Option<Reference>> {
    match Reference::parse(arg) {
        Ok(r) => Ok(Some(r)),
        Err(e) if e.rule == Rule::LooksLikeId => Ok(None),
        Err(e) => Err(anyhow!("{e}")),
    }
}

/// The error for an IMAGE argument that names nothing in the store.
pub fn no_such(arg: &str) -> anyhow::Error {
    anyhow!("image `{arg}`: no such image in the store")
}

/// The image an IMAGE argument names, read without the lock (for verbs that only read).
pub fn lookup(paths: &Paths, arg: &str) -> Result<ImageRecord> {
    if reference_of(arg)?.is_some() {
        // A short name may be stored under any of the search registries.
        if let Some((_, rec)) = super::pull::find_stored(paths, &super::pull::candidates(arg)?)? {
            return Ok(rec);
        }
    }
    store::find(paths, arg, None)?.ok_or_else(|| no_such(arg))
}

/// One image as `docker image inspect` shows it.
pub fn inspect_json(paths: &Paths, rec: &ImageRecord, names: &[String]) -> Result<Value> {
    let what = || format!("image `{}`", names.first().unwrap_or(&rec.id));
    let raw: Value = serde_json::from_slice(&store::config(paths, &rec.id).with_context(what)?)
        .with_context(|| format!("{}: parse config", what()))?;
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let repo_tags: Vec<&String> = names.iter().filter(|n| !is_canonical(n)).collect();
    // A repository the image was pulled from holds it by the manifest digest it was pulled by;
    // a name given by `rl tag` has no digest until pushed.
    let pulled = store::pulled_from(paths, &rec.id)?;
    let repo_digests: BTreeSet<String> = names
        .iter()
        .filter_map(|n| match n.split_once('@') {
            Some((_, d)) => Some(format!("{}@{d}", repo_of(n))),
            None if pulled.as_ref().map_or(true, |p| p.contains(repo_of(n))) => {
                Some(format!("{}@{}", repo_of(n), rec.digest))
            }
            None => None,
        })
        .collect();
    let mut config = raw.get("config").and_then(Value::as_object).cloned().unwrap_or_default();
    for (k, v) in [
        ("User", json!("")),
        ("Env", Value::Null),
        ("Cmd", Value::Null),
        ("Entrypoint", Value::Null),
        ("WorkingDir", json!("")),
        ("Labels", Value::Null),
        ("Volumes", Value::Null),
        ("OnBuild", Value::Null),
    ] {
        config.entry(k).or_insert(v);
    }
    let mut out = Map::new();
    out.insert("Id".into(), json!(rec.id));
    out.insert("RepoTags".into(), json!(repo_tags));
    out.insert("RepoDigests".into(), json!(repo_digests));
    out.insert("Parent".into(), json!(""));
    out.insert("Comment".into(), json!(text(&raw, "comment")));
    out.insert("Created".into(), raw.get("created").cloned().unwrap_or(Value::Null));
    out.insert("Author".into(), json!(text(&raw, "author")));
    out.insert("Config".into(), Value::Object(config));
    out.insert("Architecture".into(), json!(text(&raw, "architecture")));
    if !text(&raw, "variant").is_empty() {
        out.insert("Variant".into(), json!(text(&raw, "variant")));
    }
    out.insert("Os".into(), json!(text(&raw, "os")));
    out.insert("Size".into(), json!(rec.size));
    out.insert("RootFS".into(), json!({"Type": "layers", "Layers": rec.layers}));
    Ok(Value::Object(out))
}

/// `rl image inspect`: the images found, then one error per argument that names none.
fn inspect(paths: &Paths, args: &InspectArgs) -> Result<i32> {
    let tags = store::tags(paths)?;
    let mut found = Vec::new();
    let mut errors = Vec::new();
    for arg in &args.images {
        let one = lookup(paths, arg).and_then(|rec| inspect_json(paths, &rec, &store::names_of(&tags, &rec.id)));
        match one {
            Ok(v) => found.push(v),
            Err(e) => errors.push(e),
        }
    }
    println!("{}", serde_json::to_string_pretty(&found)?);
    Ok(errors.iter().fold(0, |_, e| hint::report(e)))
}

/// Docker's prompt before a prune; false unless the answer is yes.
fn confirm(all: bool) -> Result<bool> {
    let what = match all {
        true => "all images without at least one container associated to them",
        false => "all dangling images",
    };
    eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
    std::io::stderr().flush().context("write the prompt")?;
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("read the answer")?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// `rl image prune [-a] [-f]`: removes images without names (with `-a`, every image) that no
/// container uses, and says what it removed and how many bytes of layers that freed.
fn prune(paths: &Paths, args: &PruneArgs) -> Result<i32> {
    if !args.force && !confirm(args.all)? {
        return Ok(0);
    }
    let mut remover = Remover::new(paths)?;
    let mut events = Vec::new();
    let mut failed = None;
    for (rec, names) in remover.list()? {
        if (!names.is_empty() && !args.all) || !remover.users(&rec.id).is_empty() {
            continue;
        }
        match remover.delete(&rec) {
            Ok(e) => events.extend(e),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    if !events.is_empty() {
        println!("Deleted Images:");
        for e in &events {
            match e {
                Event::Untagged(n) => println!("untagged: {n}"),
                Event::Deleted(d) => println!("deleted: {d}"),
            }
        }
        println!();
    }
    let reclaimed = remover.finish()?;
    println!("Total reclaimed space: {}", system::human_size(reclaimed));
    failed.map_or(Ok(0), Err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_not_references() {
        let id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert!(reference_of(id).unwrap().is_none());
        assert!(reference_of(&format!("sha256:{id}")).unwrap().is_none());
        assert_eq!(reference_of("0123ab").unwrap().unwrap().to_string(), "docker.io/library/0123ab:latest");
        assert!(reference_of("Not_Valid").unwrap_err().to_string().contains("Not_Valid"));
    }
}
