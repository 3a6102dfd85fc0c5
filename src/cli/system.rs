//! `rl system df`: what the store holds, as `docker system df` shows it — images (their layer
//! directories) and containers (their writable layers): how many, how many in use, their size
//! on disk and how much removing the unused ones would free. Sizes are the files' apparent
//! sizes; directories only subordinate ids may read are left out.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};

use crate::store::images::{self, disk_usage};
use crate::store::Paths;

#[derive(Debug, Args)]
pub struct SystemArgs {
    #[command(subcommand)]
    pub command: SystemCommand,
}

#[derive(Debug, Subcommand)]
pub enum SystemCommand {
    /// Show the store's disk usage.
    Df(DfArgs),
}

#[derive(Debug, Args)]
pub struct DfArgs {
    /// `json` for machine-readable output.
    #[arg(long)]
    pub format: Option<String>,
}

/// Docker's `HumanSize`: four significant digits, decimal units (`4.2MB`, `512B`).
pub fn human_size(bytes: u64) -> String {
    crate::cgroup::stats::scaled(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"], 4)
}

/// One row of the table.
struct Usage {
    kind: &'static str,
    total: usize,
    active: usize,
    size: u64,
    reclaimable: u64,
}

impl Usage {
    fn reclaimable_text(&self) -> String {
        match self.size {
            0 => human_size(self.reclaimable),
            size => format!("{} ({}%)", human_size(self.reclaimable), self.reclaimable * 100 / size),
        }
    }
}

/// `rl system …`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: SystemArgs) -> Result<i32> {
    match args.command {
        SystemCommand::Df(a) => df(&Paths::resolve(root, runroot)?, &a),
    }
}

fn df(paths: &Paths, args: &DfArgs) -> Result<i32> {
    let containers = crate::state::list(paths);
    let list = images::list(paths)?;
    let used_ids: BTreeSet<&str> = containers.iter().filter_map(|(c, _)| c.image.as_deref()).collect();
    // Layers stay while an image a container uses has them, or a container's rootfs lists them.
    let mut kept: BTreeSet<PathBuf> = containers.iter().flat_map(|(c, _)| c.dirs.lower.iter().cloned()).collect();
    for (rec, _) in list.iter().filter(|(r, _)| used_ids.contains(r.id.as_str())) {
        for d in &rec.layers {
            kept.insert(paths.layer_dir(d)?);
        }
    }
    let mut layers = Usage { kind: "Images", total: list.len(), active: 0, size: 0, reclaimable: 0 };
    layers.active = list.iter().filter(|(r, _)| used_ids.contains(r.id.as_str())).count();
    if let Ok(rd) = std::fs::read_dir(paths.layers()) {
        for e in rd.flatten() {
            let bytes = disk_usage(&e.path());
            layers.size += bytes;
            if !kept.contains(&e.path()) {
                layers.reclaimable += bytes;
            }
        }
    }
    let mut ctrs = Usage { kind: "Containers", total: containers.len(), active: 0, size: 0, reclaimable: 0 };
    for (c, state) in &containers {
        let bytes = disk_usage(&c.dirs.upper);
        ctrs.size += bytes;
        if super::rmi::running(state) {
            ctrs.active += 1;
        } else {
            ctrs.reclaimable += bytes;
        }
    }
    let rows = [layers, ctrs];
    if args.format.as_deref() == Some("json") {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"Type": r.kind, "TotalCount": r.total, "Active": r.active, "Size": r.size,
                                   "Reclaimable": r.reclaimable})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    println!("{:<15} {:<9} {:<9} {:<9} RECLAIMABLE", "TYPE", "TOTAL", "ACTIVE", "SIZE");
    for r in &rows {
        let size = human_size(r.size);
        println!("{:<15} {:<9} {:<9} {:<9} {}", r.kind, r.total, r.active, size, r.reclaimable_text());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        let cases = [
            (0, "0B"),
            (999, "999B"),
            (1000, "1kB"),
            (1234, "1.234kB"),
            (4_200_000, "4.2MB"),
            (12_345_678, "12.35MB"),
            (999_999_999_999, "1000GB"),
        ];
        for (bytes, want) in cases {
            assert_eq!(human_size(bytes), want, "{bytes}");
        }
    }
}
