//! Healthchecks: what to run (`--health-*` flags, or the image's HEALTHCHECK), when, and what the
//! results say. The detached monitor runs each probe as `rl exec` (the container's namespaces
//! and hardening) without blocking its log loop, and keeps the status in `health.json` beside
//! the record — a file of its own, so a probe never rewrites what `rl stop` writes to the state.
//! `rl healthcheck run` runs one probe from the command line.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::Paths;

/// How a container is probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthConfig {
    /// The command, run as `rl exec` would.
    pub test: Vec<String>,
    pub interval_ns: u64,
    pub timeout_ns: u64,
    /// Consecutive failures that make it unhealthy.
    pub retries: u32,
    /// Failures in this first stretch after the start do not count.
    pub start_period_ns: u64,
}

const SECOND: u64 = 1_000_000_000;

/// `30s`, `1m30s`, `500ms`, `2h` (Go's duration syntax, as Docker takes it).
pub fn parse_duration(s: &str) -> Result<u64> {
    let mut total: u64 = 0;
    let mut rest = s.trim();
    if rest.is_empty() {
        bail!("duration `{s}`: empty");
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(rest.len());
        let n: f64 =
            rest[..digits].parse().map_err(|_| anyhow::anyhow!("duration `{s}`: expected e.g. 30s, 1m30s, 500ms"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            u => bail!("duration `{s}`: unknown unit `{u}` (ms, s, m, h)"),
        };
        rest = &rest[unit_len..];
        total = total.saturating_add((n * mult) as u64);
    }
    Ok(total)
}

/// The `--health-*` flags as given.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub cmd: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<u32>,
    pub start_period: Option<String>,
    pub none: bool,
}

/// The image's `Healthcheck` (Docker's config field: `Test`, `Interval`, … in nanoseconds).
fn from_image(v: &Value) -> Option<HealthConfig> {
    let test: Vec<String> = v["Test"].as_array()?.iter().filter_map(|t| t.as_str().map(str::to_string)).collect();
    let test = match test.first().map(String::as_str) {
        Some("CMD") => test[1..].to_vec(),
        Some("CMD-SHELL") => vec!["/bin/sh".into(), "-c".into(), test.get(1)?.clone()],
        _ => return None, // NONE, or inherit
    };
    let ns = |k: &str, d: u64| v[k].as_u64().filter(|&n| n > 0).unwrap_or(d);
    Some(HealthConfig {
        test,
        interval_ns: ns("Interval", 30 * SECOND),
        timeout_ns: ns("Timeout", 30 * SECOND),
        retries: v["Retries"].as_u64().filter(|&n| n > 0).map_or(3, |n| n as u32),
        start_period_ns: ns("StartPeriod", 0),
    })
}

/// What to probe: the flags over the image's HEALTHCHECK; None for no healthcheck.
pub fn resolve(flags: &Flags, image: Option<&Value>) -> Result<Option<HealthConfig>> {
    if flags.none {
        return Ok(None);
    }
    let base = image.and_then(from_image);
    let test = match (&flags.cmd, &base) {
        (Some(c), _) if c.is_empty() || c == "none" => return Ok(None),
        (Some(c), _) => vec!["/bin/sh".into(), "-c".into(), c.clone()],
        (None, Some(b)) => b.test.clone(),
        (None, None) => {
            if flags.interval.is_some() || flags.timeout.is_some() || flags.retries.is_some() {
                bail!(
                    "--health-interval/--health-timeout/--health-retries need --health-cmd (or an image HEALTHCHECK)"
                );
            }
            return Ok(None);
        }
    };
    let dur = |flag: &Option<String>, name: &str, d: u64| -> Result<u64> {
        match flag {
            Some(s) => parse_duration(s).with_context(|| format!("--health-{name}")),
            None => Ok(d),
        }
    };
    let b = base.as_ref();
    let cfg = HealthConfig {
        test,
        interval_ns: dur(&flags.interval, "interval", b.map_or(30 * SECOND, |b| b.interval_ns))?,
        timeout_ns: dur(&flags.timeout, "timeout", b.map_or(30 * SECOND, |b| b.timeout_ns))?,
        retries: flags.retries.or(b.map(|b| b.retries)).unwrap_or(3),
        start_period_ns: dur(&flags.start_period, "start-period", b.map_or(0, |b| b.start_period_ns))?,
    };
    if cfg.interval_ns < 1_000_000 || cfg.timeout_ns < 1_000_000 || cfg.retries == 0 {
        bail!("healthcheck: interval and timeout must be at least 1ms, retries at least 1");
    }
    Ok(Some(cfg))
}

/// One probe's result, as `inspect` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Probe {
    #[serde(rename = "Start")]
    pub start: String,
    #[serde(rename = "End")]
    pub end: String,
    #[serde(rename = "ExitCode")]
    pub exit_code: i32,
    #[serde(rename = "Output")]
    pub output: String,
}

/// The health of a container: `starting`, `healthy` or `unhealthy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "FailingStreak")]
    pub failing_streak: u32,
    #[serde(rename = "Log")]
    pub log: Vec<Probe>,
}

impl Default for Health {
    fn default() -> Self {
        Health { status: "starting".into(), failing_streak: 0, log: Vec::new() }
    }
}

impl Health {
    /// Counts a probe: a pass makes it healthy; `retries` failures in a row past the start
    /// period make it unhealthy. The last five probes are kept.
    pub fn record(&mut self, cfg: &HealthConfig, probe: Probe, in_start_period: bool) {
        if probe.exit_code == 0 {
            self.status = "healthy".into();
            self.failing_streak = 0;
        } else if !in_start_period {
            self.failing_streak += 1;
            if self.failing_streak >= cfg.retries {
                self.status = "unhealthy".into();
            }
        }
        self.log.push(probe);
        let extra = self.log.len().saturating_sub(5);
        self.log.drain(..extra);
    }
}

fn file(dir: &Path) -> std::path::PathBuf {
    dir.join("health.json")
}

/// The recorded health of the container whose record is `dir`.
pub fn load(dir: &Path) -> Option<Health> {
    serde_json::from_slice(&std::fs::read(file(dir)).ok()?).ok()
}

pub fn save(dir: &Path, h: &Health) -> Result<()> {
    crate::store::lock::write_atomic(&file(dir), &serde_json::to_vec_pretty(h).context("encode health")?)
}

/// Starts one probe of container `id` as `rl exec`, its output in `out`.
pub fn spawn_probe(paths: &Paths, id: &str, cfg: &HealthConfig, out: &Path) -> Result<Child> {
    let log = std::fs::File::create(out).with_context(|| format!("create `{}`", out.display()))?;
    Command::new("/proc/self/exe")
        .arg("--root")
        .arg(&paths.root)
        .arg("--runroot")
        .arg(&paths.runroot)
        .arg("exec")
        .arg(id)
        .args(&cfg.test)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("dup the probe log")?)
        .stderr(log)
        .spawn()
        .context("start a health probe")
}

/// The probe's result once its process ended (`None`: killed at the timeout).
pub fn finish(out: &Path, start_ns: u128, status: Option<std::process::ExitStatus>) -> Probe {
    let mut output = std::fs::read(out).unwrap_or_default();
    output.truncate(4096);
    let _ = std::fs::remove_file(out);
    let (exit_code, output) = match status {
        Some(s) => (s.code().unwrap_or(-1), String::from_utf8_lossy(&output).into_owned()),
        None => (-1, "Health check exceeded timeout".into()),
    };
    Probe {
        start: super::log::rfc3339_nanos(start_ns),
        end: super::log::rfc3339_nanos(crate::state::now_ns()),
        exit_code,
        output,
    }
}

/// The monitor's prober: starts a probe when one is due, collects it when it ends or times
/// out, and keeps `health.json` current. Driven from the monitor's poll loop.
pub struct Prober {
    paths: Paths,
    id: String,
    dir: std::path::PathBuf,
    cfg: HealthConfig,
    started: std::time::Instant,
    next: std::time::Instant,
    running: Option<Running>,
    health: Health,
}

struct Running {
    child: Child,
    pidfd: std::os::fd::OwnedFd,
    start_ns: u128,
    deadline: std::time::Instant,
}

impl Prober {
    pub fn new(paths: &Paths, id: &str, cfg: &HealthConfig) -> Prober {
        let dir = paths.container(id);
        let health = Health::default();
        let _ = save(&dir, &health);
        let now = std::time::Instant::now();
        Prober {
            paths: paths.clone(),
            id: id.to_string(),
            dir,
            cfg: cfg.clone(),
            started: now,
            next: now + std::time::Duration::from_nanos(cfg.interval_ns),
            running: None,
            health,
        }
    }

    /// Milliseconds until something is due (the next probe, or the running one's timeout).
    pub fn wait_ms(&self) -> u64 {
        let at = self.running.as_ref().map_or(self.next, |r| r.deadline);
        at.saturating_duration_since(std::time::Instant::now()).as_millis() as u64 + 1
    }

    /// The running probe's pidfd, readable when it ends.
    pub fn pidfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        self.running.as_ref().map(|r| r.pidfd.as_fd())
    }

    /// Collects a finished or overdue probe; starts the next when due.
    pub fn tick(&mut self) {
        let now = std::time::Instant::now();
        let out = self.dir.join("health-probe.out");
        if let Some(r) = &mut self.running {
            let status = match r.child.try_wait() {
                Ok(Some(st)) => Some(Some(st)),
                _ if now >= r.deadline => {
                    let _ = r.child.kill();
                    let _ = r.child.wait();
                    Some(None)
                }
                _ => None,
            };
            if let Some(status) = status {
                let probe = finish(&out, r.start_ns, status);
                let in_start = self.started.elapsed().as_nanos() < u128::from(self.cfg.start_period_ns);
                self.health.record(&self.cfg, probe, in_start);
                let _ = save(&self.dir, &self.health);
                self.running = None;
                self.next = now + std::time::Duration::from_nanos(self.cfg.interval_ns);
            }
        }
        if self.running.is_none() && now >= self.next {
            let start_ns = crate::state::now_ns();
            match spawn_probe(&self.paths, &self.id, &self.cfg, &out) {
                Ok(child) => match crate::sys::pidfd_open(nix::unistd::Pid::from_raw(child.id() as i32)) {
                    Ok(pidfd) => {
                        let deadline = now + std::time::Duration::from_nanos(self.cfg.timeout_ns);
                        self.running = Some(Running { child, pidfd, start_ns, deadline });
                    }
                    Err(_) => self.next = now + std::time::Duration::from_nanos(self.cfg.interval_ns),
                },
                Err(_) => self.next = now + std::time::Duration::from_nanos(self.cfg.interval_ns),
            }
        }
    }
}

impl Drop for Prober {
    fn drop(&mut self) {
        if let Some(r) = &mut self.running {
            let _ = r.child.kill();
            let _ = r.child.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), 30 * SECOND);
        assert_eq!(parse_duration("1m30s").unwrap(), 90 * SECOND);
        assert_eq!(parse_duration("200ms").unwrap(), 200_000_000);
        assert_eq!(parse_duration("1.5s").unwrap(), 1_500_000_000);
        for bad in ["", "10", "5x", "s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_override_the_image() {
        let image = json!({"Test": ["CMD-SHELL", "curl -f localhost"], "Interval": 5_000_000_000u64, "Retries": 2});
        let from_image = resolve(&Flags::default(), Some(&image)).unwrap().unwrap();
        assert_eq!(from_image.test, ["/bin/sh", "-c", "curl -f localhost"]);
        assert_eq!((from_image.interval_ns, from_image.retries, from_image.timeout_ns), (5 * SECOND, 2, 30 * SECOND));
        let flags = Flags { cmd: Some("true".into()), interval: Some("1s".into()), ..Flags::default() };
        let both = resolve(&flags, Some(&image)).unwrap().unwrap();
        assert_eq!((both.test[2].as_str(), both.interval_ns, both.retries), ("true", SECOND, 2));
        assert_eq!(resolve(&Flags { none: true, ..flags.clone() }, Some(&image)).unwrap(), None);
        assert_eq!(resolve(&Flags::default(), Some(&json!({"Test": ["NONE"]}))).unwrap(), None);
        assert!(resolve(&Flags { retries: Some(2), ..Flags::default() }, None).is_err());
    }

    #[test]
    fn streaks_make_it_unhealthy_and_a_pass_heals() {
        let cfg = HealthConfig { test: vec![], interval_ns: 1, timeout_ns: 1, retries: 2, start_period_ns: 0 };
        let probe = |code| Probe { start: String::new(), end: String::new(), exit_code: code, output: String::new() };
        let mut h = Health::default();
        h.record(&cfg, probe(1), true);
        assert_eq!((h.status.as_str(), h.failing_streak), ("starting", 0), "the start period forgives");
        h.record(&cfg, probe(1), false);
        assert_eq!(h.status, "starting");
        h.record(&cfg, probe(1), false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("unhealthy", 2));
        h.record(&cfg, probe(0), false);
        assert_eq!((h.status.as_str(), h.failing_streak), ("healthy", 0));
        for _ in 0..9 {
            h.record(&cfg, probe(0), false);
        }
        assert_eq!(h.log.len(), 5);
    }
}
