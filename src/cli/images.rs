//! `rl images [-q] [--format json]`: the images in the store, Docker's columns.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::store::{images, Paths};

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only image ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// `json` for machine-readable output.
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

/// `rl images`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: ImagesArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let list = images::list(&paths)?;
    if args.format.as_deref() == Some("json") {
        let v: Vec<serde_json::Value> = list
            .iter()
            .map(|(r, names)| serde_json::json!({"Id": r.id, "Names": names, "Digest": r.digest, "Size": r.size, "Platform": r.platform}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    if !args.quiet {
        println!("{:<40} {:<20} {:<14} {:>10}", "REPOSITORY", "TAG", "IMAGE ID", "SIZE");
    }
    for (rec, names) in &list {
        let short = rec.id.strip_prefix("sha256:").unwrap_or(&rec.id).get(..12).unwrap_or("").to_string();
        if args.quiet {
            println!("{short}");
            continue;
        }
        let rows: Vec<(String, String)> = if names.is_empty() {
            vec![("<none>".into(), "<none>".into())]
        } else {
            names
                .iter()
                .map(|n| match n.split_once('@') {
                    Some((repo, _)) => (repo.to_string(), "<none>".to_string()),
                    None => match n.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
                        Some((repo, tag)) => (repo.to_string(), tag.to_string()),
                        None => (n.clone(), "<none>".to_string()),
                    },
                })
                .collect()
        };
        for (repo, tag) in rows {
            println!("{repo:<40} {tag:<20} {short:<14} {:>10}", human(rec.size));
        }
    }
    Ok(0)
}
