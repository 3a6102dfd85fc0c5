//! `rl ps [-a] [-q] [--no-trunc] [--filter KEY=VALUE] [--format json|TEMPLATE]`: containers in
//! Docker's columns. A record whose watcher died reads as exited ([`crate::lifecycle::effective`]).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::{json, Value};

use super::format::Template;
use crate::config::ContainerConfig;
use crate::state::{State, Status};
use crate::store::Paths;

#[derive(Debug, Args)]
pub struct PsArgs {
    /// Show all containers (default: running ones).
    #[arg(short, long)]
    pub all: bool,
    /// Only container ids.
    #[arg(short, long)]
    pub quiet: bool,
    /// Full ids and commands.
    #[arg(long)]
    pub no_trunc: bool,
    /// KEY=VALUE: id, name, status (created|running|exited), ancestor (image).
    #[arg(short, long, value_name = "KEY=VALUE")]
    pub filter: Vec<String>,
    /// `json`, or a Go template (fields: ID, Image, Command, CreatedAt, RunningFor, Status, State,
    /// Names, Ports, ExitCode).
    #[arg(long)]
    pub format: Option<String>,
}

/// Docker's "Up 5 seconds" / "Exited (0) 3 minutes ago" / "Created".
pub fn status_text(st: &State) -> String {
    let now = crate::state::now_ns();
    let ago = |t: Option<u128>| human(now.saturating_sub(t.unwrap_or(now)));
    match st.status {
        Status::Created => "Created".into(),
        Status::Running if crate::lifecycle::paused(st) => format!("Up {} (Paused)", ago(st.started_ns)),
        Status::Running => format!("Up {}", ago(st.started_ns)),
        Status::Exited => format!("Exited ({}) {} ago", st.exit_code.unwrap_or(-1), ago(st.finished_ns)),
    }
}

fn human(ns: u128) -> String {
    let s = (ns / 1_000_000_000) as u64;
    match s {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        2..=59 => format!("{s} seconds"),
        60..=119 => "About a minute".into(),
        120..=3599 => format!("{} minutes", s / 60),
        3600..=7199 => "About an hour".into(),
        7200..=172_799 => format!("{} hours", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

fn state_name(s: Status) -> &'static str {
    match s {
        Status::Created => "created",
        Status::Running => "running",
        Status::Exited => "exited",
    }
}

/// One row of the listing.
pub fn row(paths: &Paths, cfg: &ContainerConfig, st: &State, no_trunc: bool) -> Value {
    let id = if no_trunc { cfg.id.clone() } else { cfg.id.chars().take(12).collect() };
    let mut command = cfg.process.args.join(" ");
    if !no_trunc && command.chars().count() > 20 {
        command = command.chars().take(19).chain(['…']).collect();
    }
    json!({
        "ID": id,
        "Image": cfg.rootfs_source,
        "Command": format!("\"{command}\""),
        "CreatedAt": crate::monitor::log::rfc3339_nanos(cfg.created_ns),
        "RunningFor": format!("{} ago", human(crate::state::now_ns().saturating_sub(cfg.created_ns))),
        "Status": match (st.status, cfg.health.is_some()) {
            (Status::Running, true) => {
                let h = crate::monitor::health::load(&paths.container(&cfg.id)).unwrap_or_default();
                let shown = if h.status == "starting" { "health: starting".to_string() } else { h.status };
                format!("{} ({shown})", status_text(st))
            }
            _ => status_text(st),
        },
        "State": if crate::lifecycle::paused(st) { "paused" } else { state_name(st.status) },
        "Names": cfg.name,
        "Ports": ports_text(st),
        "ExitCode": st.exit_code,
    })
}

/// Docker's PORTS column: `0.0.0.0:8080->80/tcp, …`, for a running container.
pub fn ports_text(st: &State) -> String {
    match (&st.network, st.status) {
        (Some(net), Status::Running) => net.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(", "),
        _ => String::new(),
    }
}

fn matches(cfg: &ContainerConfig, st: &State, filters: &[(String, String)]) -> bool {
    filters.iter().all(|(k, v)| match k.as_str() {
        "id" => cfg.id.starts_with(v.as_str()),
        "name" => cfg.name.contains(v.as_str()),
        "status" => state_name(st.status) == v,
        "ancestor" => {
            cfg.rootfs_source.contains(v.as_str()) || cfg.image.as_deref().is_some_and(|i| i.contains(v.as_str()))
        }
        _ => false,
    })
}

fn header(field: &str) -> String {
    match field {
        "ID" => "CONTAINER ID".into(),
        "RunningFor" => "CREATED".into(),
        "CreatedAt" => "CREATED AT".into(),
        "Names" => "NAMES".into(),
        "ExitCode" => "EXIT CODE".into(),
        other => other.to_uppercase(),
    }
}

/// `rl ps`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: PsArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let mut filters = Vec::new();
    for f in &args.filter {
        match f.split_once('=') {
            Some((k, v)) if ["id", "name", "status", "ancestor"].contains(&k) => {
                filters.push((k.to_string(), v.to_string()))
            }
            _ => bail!("filter `{f}`: expected id=, name=, status= or ancestor="),
        }
    }
    let mut list: Vec<(ContainerConfig, State)> = crate::state::list(&paths)
        .into_iter()
        .filter_map(|(c, s)| s.map(|s| (c, crate::lifecycle::effective(&s))))
        .filter(|(_, s)| args.all || s.status == Status::Running || !filters.is_empty())
        .filter(|(c, s)| matches(c, s, &filters))
        .collect();
    list.sort_by_key(|c| std::cmp::Reverse(c.0.created_ns));
    if args.quiet {
        for (c, _) in &list {
            println!("{}", if args.no_trunc { c.id.clone() } else { c.id.chars().take(12).collect() });
        }
        return Ok(0);
    }
    let rows: Vec<Value> = list.iter().map(|(c, s)| row(&paths, c, s, args.no_trunc)).collect();
    if args.format.as_deref() == Some("json") {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    let spec = args.format.as_deref().unwrap_or(
        "table {{.ID}}\\t{{.Image}}\\t{{.Command}}\\t{{.RunningFor}}\\t{{.Status}}\\t{{.Ports}}\\t{{.Names}}",
    );
    let text = Template::parse(spec)?.render_all(&rows, header)?;
    if !text.is_empty() {
        println!("{text}");
    }
    Ok(0)
}
