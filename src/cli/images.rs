//! `rl images [-a] [-q] [--no-trunc] [--format json|TEMPLATE]`: the images in the store, in
//! Docker's columns, one row per name.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use serde_json::{json, Value};

use super::format::Template;
use crate::store::{images, Paths};

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Show all images (rl keeps no intermediate images, so this is every image anyway).
    #[arg(short, long)]
    pub all: bool,
    /// Only image ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Full image ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// `json`, or a Go template: `{{.Repository}}:{{.Tag}}`, `table {{.ID}}\t{{.Size}}`.
    /// Fields: ID, Repository, Tag, Digest, CreatedAt, CreatedSince, Size, VirtualSize, Platform.
    #[arg(long)]
    pub format: Option<String>,
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes}B")
    } else {
        format!("{v:.3}{}", UNITS[u])
    }
}

/// Repository and tag of a stored name (`<none>` where it has none).
fn split_name(n: &str) -> (String, String) {
    match n.split_once('@') {
        Some((repo, _)) => (repo.to_string(), "<none>".to_string()),
        None => match n.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((repo, tag)) => (repo.to_string(), tag.to_string()),
            None => (n.to_string(), "<none>".to_string()),
        },
    }
}

/// The rows Docker's `images` shows: one per name, or one `<none>` row for a nameless image.
fn rows(paths: &Paths, list: &[(images::ImageRecord, Vec<String>)], no_trunc: bool) -> Vec<Value> {
    let mut out = Vec::new();
    for (rec, names) in list {
        let id = if no_trunc {
            rec.id.clone()
        } else {
            rec.id.strip_prefix("sha256:").unwrap_or(&rec.id).get(..12).unwrap_or("").to_string()
        };
        let created: Option<String> = images::config(paths, &rec.id)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .and_then(|c| c["created"].as_str().map(str::to_string));
        let names = if names.is_empty() { vec!["<none>:<none>".to_string()] } else { names.clone() };
        for n in names.iter().filter(|n| !images::is_canonical(n) || names.len() == 1) {
            let (repo, tag) = if n == "<none>:<none>" { ("<none>".into(), "<none>".into()) } else { split_name(n) };
            out.push(json!({
                "ID": id, "Repository": repo, "Tag": tag, "Digest": rec.digest,
                "CreatedAt": created.clone().unwrap_or_default(),
                "CreatedSince": super::history::created_since(created.as_deref()),
                "Size": human(rec.size), "VirtualSize": human(rec.size), "Platform": rec.platform,
            }));
        }
    }
    out
}

fn header(field: &str) -> String {
    match field {
        "ID" => "IMAGE ID".into(),
        "CreatedSince" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        "VirtualSize" => "VIRTUAL SIZE".into(),
        other => other.to_uppercase(),
    }
}

/// `rl images`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: ImagesArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let list = images::list(&paths)?;
    if args.format.as_deref() == Some("json") {
        let v: Vec<Value> = list
            .iter()
            .map(|(r, names)| json!({"Id": r.id, "Names": names, "Digest": r.digest, "Size": r.size, "Platform": r.platform}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    if args.quiet {
        let mut seen = std::collections::BTreeSet::new();
        for row in rows(&paths, &list, args.no_trunc) {
            let id = row["ID"].as_str().unwrap_or_default().to_string();
            if seen.insert(id.clone()) {
                println!("{id}");
            }
        }
        return Ok(0);
    }
    let spec =
        args.format.as_deref().unwrap_or("table {{.Repository}}\\t{{.Tag}}\\t{{.ID}}\\t{{.CreatedSince}}\\t{{.Size}}");
    let template = Template::parse(spec)?;
    let text = template.render_all(&rows(&paths, &list, args.no_trunc), header)?;
    if !text.is_empty() {
        println!("{text}");
    }
    Ok(0)
}
