//! `rl stats`: CPU, memory, pids, network and block I/O of running containers, read from their
//! cgroups ([`crate::cgroup::stats`]). Streams a table every interval (redrawn in place on a
//! terminal) until interrupted, or prints one reading with `--no-stream`; `--format json` or a
//! Go template as `docker stats` takes them.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::Args;
use serde_json::{json, Value};

use super::format::{align, Template};
use crate::cgroup::stats::{binary_size, cpu_percent, decimal_size, Sample};
use crate::config::ContainerConfig;
use crate::state::{self, State};
use crate::store::Paths;

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Show every container, not only running ones.
    #[arg(short, long)]
    pub all: bool,
    /// Print one reading and exit (CPU % is then the average since the start).
    #[arg(long)]
    pub no_stream: bool,
    /// Do not truncate ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Seconds between readings.
    #[arg(short, long, default_value_t = 1, value_name = "SECONDS")]
    pub interval: u64,
    /// `table` (default), `json`, or a Go template (fields: ID, Name, Container, CPUPerc, MemUsage,
    /// MemPerc, NetIO, BlockIO, PIDs).
    #[arg(long)]
    pub format: Option<String>,
    /// Containers (default: all running ones).
    pub containers: Vec<String>,
}

/// One container's previous reading, for the CPU % of the next.
struct Seen {
    cfg: ContainerConfig,
    query: String,
    last: Option<(Sample, u128)>,
}

const DASH: &str = "--";

/// One row: Docker's columns as its `--format json` names them, plus raw byte counts.
fn row(seen: &mut Seen, st: Option<&State>, no_trunc: bool) -> Value {
    let cfg = &seen.cfg;
    let id: String = if no_trunc { cfg.id.clone() } else { cfg.id.chars().take(12).collect() };
    let mut v = json!({
        "ID": id, "Name": cfg.name, "Container": seen.query,
        "CPUPerc": DASH, "MemUsage": DASH, "MemPerc": DASH, "NetIO": DASH, "BlockIO": DASH, "PIDs": DASH,
    });
    let st = st.map(crate::lifecycle::effective);
    let (Some(st), Some(leaf)) = (st.as_ref(), st.as_ref().and_then(crate::lifecycle::leaf)) else {
        seen.last = None;
        return v;
    };
    let now = state::now_ns();
    let s = crate::cgroup::stats::read(&leaf.dir, st.pid.unwrap_or(0));
    let (cpu, wall) = match seen.last {
        Some((prev, at)) => (s.cpu_usec.saturating_sub(prev.cpu_usec), (now.saturating_sub(at) / 1000) as u64),
        None => (s.cpu_usec, (now.saturating_sub(st.started_ns.unwrap_or(now)) / 1000) as u64),
    };
    seen.last = Some((s, now));
    let mem_perc = if s.mem_limit > 0 { s.mem_usage as f64 * 100.0 / s.mem_limit as f64 } else { 0.0 };
    v["CPUPerc"] = json!(format!("{:.2}%", cpu_percent(cpu, wall)));
    v["MemUsage"] = json!(format!("{} / {}", binary_size(s.mem_usage), binary_size(s.mem_limit)));
    v["MemPerc"] = json!(format!("{mem_perc:.2}%"));
    v["NetIO"] = json!(format!("{} / {}", decimal_size(s.net_rx), decimal_size(s.net_tx)));
    v["BlockIO"] = json!(format!("{} / {}", decimal_size(s.blk_read), decimal_size(s.blk_write)));
    v["PIDs"] = json!(s.pids.to_string());
    v["MemUsageBytes"] = json!(s.mem_usage);
    v["MemLimitBytes"] = json!(s.mem_limit);
    v["CPUTimeUsec"] = json!(s.cpu_usec);
    v
}

pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: StatsArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let template = match args.format.as_deref() {
        None | Some("table") => None,
        Some("json") => Some(Template::parse("{{json .}}")?),
        Some(t) => Some(Template::parse(t)?),
    };
    let mut seen: Vec<Seen> = Vec::new();
    for q in &args.containers {
        let (cfg, st) = state::find(&paths, q)?;
        // A named container must be measurable: say why not, with the fix.
        crate::lifecycle::running_leaf(&cfg, st.as_ref())?;
        seen.push(Seen { cfg, query: q.clone(), last: None });
    }
    if args.containers.is_empty() {
        for (cfg, st) in state::list(&paths) {
            if args.all || st.as_ref().map(crate::lifecycle::effective).is_some_and(|s| s.running()) {
                seen.push(Seen { query: cfg.name.clone(), cfg, last: None });
            }
        }
    }
    if args.interval == 0 {
        bail!("stats: --interval must be at least 1 second");
    }
    let clear = !args.no_stream && std::io::stdout().is_terminal();
    loop {
        let rows: Vec<Value> = seen
            .iter_mut()
            .map(|s| {
                let st = state::load(&paths, &s.cfg.id).ok();
                row(s, st.as_ref(), args.no_trunc)
            })
            .collect();
        let mut text = match &template {
            Some(t) => t.render_all(&rows, |f| f.to_uppercase())?,
            None => table(&rows),
        };
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        let mut out = std::io::stdout().lock();
        if clear {
            write!(out, "\x1b[2J\x1b[H")?;
        }
        write!(out, "{text}")?;
        out.flush()?;
        if args.no_stream {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_secs(args.interval));
    }
}

/// Docker's table.
fn table(rows: &[Value]) -> String {
    let mut text = String::from("CONTAINER ID\tNAME\tCPU %\tMEM USAGE / LIMIT\tMEM %\tNET I/O\tBLOCK I/O\tPIDS\n");
    for r in rows {
        let f = |k: &str| r[k].as_str().unwrap_or_default().to_string();
        let cols = ["ID", "Name", "CPUPerc", "MemUsage", "MemPerc", "NetIO", "BlockIO", "PIDs"].map(f);
        text.push_str(&cols.join("\t"));
        text.push('\n');
    }
    align(&text)
}
