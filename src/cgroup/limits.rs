//! The resource limits of a container as the flags give them (`--memory`, `--cpus`, …), kept in
//! its config, and the cgroup v2 file writes they become. Pure: parsed and planned in the `rl`
//! process, written by [`super::Leaf::apply`]; unit-tested without a cgroup.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The period `--cpus` quotas are expressed in (cpu.max's default), in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;
/// Docker's and Podman's smallest memory limit: less and a container cannot even start.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// Limits asked for; `None` leaves the kernel's default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// `--memory`: bytes (memory.max).
    pub memory: Option<u64>,
    /// `--memory-swap`: memory plus swap in bytes, -1 for unlimited swap (memory.swap.max is the
    /// difference). Unset with `--memory`: as much swap as memory, as Docker does.
    pub memory_swap: Option<i64>,
    /// `--memory-reservation`: bytes (memory.low).
    pub memory_reservation: Option<u64>,
    /// `--cpus`, in billionths of a CPU (Docker's NanoCpus; cpu.max).
    pub nano_cpus: Option<u64>,
    /// `--cpu-shares` as given (cgroup v1's unit, 2..262144; cpu.weight after conversion).
    pub cpu_shares: Option<u64>,
    /// `--cpu-weight`: cpu.weight itself (1..10000).
    pub cpu_weight: Option<u64>,
    /// `--cpuset-cpus`: a CPU list such as `0-2,4` (cpuset.cpus).
    pub cpuset_cpus: Option<String>,
    /// `--pids-limit`: at most this many tasks; 0 or -1 is unlimited (pids.max).
    pub pids_limit: Option<i64>,
    /// `--blkio-weight`: 10..1000 (io.weight's default after conversion).
    pub blkio_weight: Option<u64>,
}

/// One write into a container's cgroup directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub file: &'static str,
    pub value: String,
    /// The file may be missing (memory.swap.max without swap accounting) when nothing asked for
    /// it explicitly.
    pub optional: bool,
}

impl Resources {
    /// Whether any limit is asked for.
    pub fn any(&self) -> bool {
        *self != Resources::default()
    }

    /// The controllers these limits need, each with the flag that needs it.
    pub fn controllers(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        let mut add = |set: bool, ctl, flag| {
            if set {
                out.push((ctl, flag));
            }
        };
        add(self.memory.is_some(), "memory", "--memory");
        add(self.memory_swap.is_some(), "memory", "--memory-swap");
        add(self.memory_reservation.is_some(), "memory", "--memory-reservation");
        add(self.nano_cpus.is_some(), "cpu", "--cpus");
        add(self.cpu_shares.is_some(), "cpu", "--cpu-shares");
        add(self.cpu_weight.is_some(), "cpu", "--cpu-weight");
        add(self.cpuset_cpus.is_some(), "cpuset", "--cpuset-cpus");
        add(self.pids_limit.is_some(), "pids", "--pids-limit");
        add(self.blkio_weight.is_some(), "io", "--blkio-weight");
        out
    }

    /// Only the limits the controllers `have` can enforce (`--ignore-limits` drops the rest).
    pub fn enforceable(&self, have: &[String]) -> Resources {
        let has = |c: &str| have.iter().any(|h| h == c);
        let mut r = self.clone();
        if !has("memory") {
            (r.memory, r.memory_swap, r.memory_reservation) = (None, None, None);
        }
        if !has("cpu") {
            (r.nano_cpus, r.cpu_shares, r.cpu_weight) = (None, None, None);
        }
        if !has("cpuset") {
            r.cpuset_cpus = None;
        }
        if !has("pids") {
            r.pids_limit = None;
        }
        if !has("io") {
            r.blkio_weight = None;
        }
        r
    }

    /// Takes every limit `other` sets (`rl update`): the rest stay as they are.
    pub fn merge(&mut self, other: &Resources) {
        macro_rules! take {
            ($($f:ident),*) => { $(if other.$f.is_some() { self.$f = other.$f.clone(); })* };
        }
        take!(memory, memory_swap, memory_reservation, nano_cpus, cpu_shares, cpu_weight, cpuset_cpus, pids_limit);
        take!(blkio_weight);
        if other.cpu_shares.is_some() {
            self.cpu_weight = None;
        }
        if other.cpu_weight.is_some() {
            self.cpu_shares = None;
        }
    }

    /// Checks the combination (each value was checked when parsed).
    pub fn validate(&self) -> Result<()> {
        if let (Some(m), Some(s)) = (self.memory, self.memory_swap) {
            if s >= 0 && (s as u64) < m {
                bail!("--memory-swap {s}: must be at least --memory ({m} bytes), or -1 for unlimited swap");
            }
        }
        if self.memory.is_none() && self.memory_swap.is_some_and(|s| s >= 0) {
            bail!("--memory-swap: needs --memory too (it is memory plus swap)");
        }
        if let (Some(m), Some(r)) = (self.memory, self.memory_reservation) {
            if r > m {
                bail!("--memory-reservation {r}: must not exceed --memory ({m} bytes)");
            }
        }
        if self.cpu_shares.is_some() && self.cpu_weight.is_some() {
            bail!("--cpu-shares and --cpu-weight: give one of them");
        }
        Ok(())
    }

    /// The cgroup v2 files to write, in order.
    pub fn writes(&self) -> Vec<Write> {
        let mut out = Vec::new();
        let mut put = |file, value: String, optional| out.push(Write { file, value, optional });
        if let Some(m) = self.memory {
            put("memory.max", m.to_string(), false);
            let swap = match self.memory_swap {
                Some(s) if s < 0 => "max".to_string(),
                Some(s) => (s as u64 - m).to_string(),
                None => m.to_string(),
            };
            put("memory.swap.max", swap, self.memory_swap.is_none());
        } else if self.memory_swap.is_some_and(|s| s < 0) {
            put("memory.swap.max", "max".into(), false);
        }
        if let Some(r) = self.memory_reservation {
            put("memory.low", r.to_string(), false);
        }
        if let Some(n) = self.nano_cpus {
            let quota = (n * CPU_PERIOD_US / 1_000_000_000).max(1000);
            put("cpu.max", format!("{quota} {CPU_PERIOD_US}"), false);
        }
        if let Some(w) = self.cpu_weight.or(self.cpu_shares.map(shares_to_weight)) {
            put("cpu.weight", w.to_string(), false);
        }
        if let Some(c) = &self.cpuset_cpus {
            put("cpuset.cpus", c.clone(), false);
        }
        if let Some(p) = self.pids_limit {
            put("pids.max", if p <= 0 { "max".into() } else { p.to_string() }, false);
        }
        if let Some(w) = self.blkio_weight {
            put("io.weight", format!("default {}", blkio_to_io_weight(w)), false);
        }
        out
    }
}

/// cgroup v1 cpu.shares (2..262144, default 1024) to v2 cpu.weight (1..10000, default 100): the
/// quadratic fit on a log scale runc (1.3.2) and crun (1.23) moved to, which keeps the defaults
/// and both ends where they belong (2 → 1, 1024 → 100, 262144 → 10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    let l = (shares.clamp(2, 262_144) as f64).log2();
    let exp = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    (10f64.powf(exp).ceil() as u64).clamp(1, 10_000)
}

/// blkio.weight (10..1000) to io.weight (1..10000), linearly as crun does.
pub fn blkio_to_io_weight(w: u64) -> u64 {
    1 + (w.clamp(10, 1000) - 10) * 9999 / 990
}

/// A size as Docker reads it: a number with an optional binary unit `b`, `k`, `m`, `g`, `t`
/// (with or without a trailing `b`, any case).
pub fn parse_bytes(flag: &str, s: &str) -> Result<u64> {
    let t = s.trim().to_ascii_lowercase();
    let digits = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let mult: u64 = match unit.strip_suffix('b').unwrap_or(unit) {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => bail!("{flag} `{s}`: unknown unit (use b, k, m, g or t)"),
    };
    let n: f64 = num.parse().map_err(|_| anyhow::anyhow!("{flag} `{s}`: not a size (e.g. 512m, 2g)"))?;
    let bytes = n * mult as f64;
    if !(bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64) {
        bail!("{flag} `{s}`: out of range");
    }
    Ok(bytes as u64)
}

/// `--memory`: at least [`MIN_MEMORY`].
pub fn parse_memory(flag: &str, s: &str) -> Result<u64> {
    let m = parse_bytes(flag, s)?;
    if m < MIN_MEMORY {
        bail!("{flag} `{s}`: the smallest memory limit is 6m");
    }
    Ok(m)
}

/// `--memory-swap`: a size, -1 for unlimited, or 0 for unset (as Docker reads it).
pub fn parse_swap(s: &str) -> Result<Option<i64>> {
    if s.trim() == "-1" {
        return Ok(Some(-1));
    }
    let b = parse_bytes("--memory-swap", s)?;
    Ok(Some(i64::try_from(b).context("--memory-swap: out of range")?).filter(|&b| b != 0))
}

/// The CPUs online on this host (/sys/devices/system/cpu/online), whatever rl's own cgroup
/// allows it.
fn host_cpus() -> usize {
    let online = std::fs::read_to_string("/sys/devices/system/cpu/online").unwrap_or_default();
    let n: usize = online
        .trim()
        .split(',')
        .filter_map(|r| match r.split_once('-') {
            Some((a, b)) => Some(b.parse::<usize>().ok()? + 1 - a.parse::<usize>().ok()?),
            None => r.parse::<usize>().ok().map(|_| 1),
        })
        .sum();
    if n > 0 {
        n
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// `--cpus`: a positive decimal number of CPUs, at most the CPUs this host has.
pub fn parse_cpus(s: &str) -> Result<u64> {
    let n: f64 = s.trim().parse().map_err(|_| anyhow::anyhow!("--cpus `{s}`: not a number (e.g. 0.5, 2)"))?;
    let max = host_cpus() as f64;
    if !(n > 0.0 && n.is_finite()) {
        bail!("--cpus `{s}`: must be more than 0");
    }
    if n > max {
        bail!("--cpus `{s}`: this host has only {max} CPUs");
    }
    let nano = (n * 1e9).round() as u64;
    if nano * CPU_PERIOD_US / 1_000_000_000 < 1000 {
        bail!("--cpus `{s}`: the smallest is 0.01");
    }
    Ok(nano)
}

/// An integer flag within `lo..=hi`.
pub fn parse_in(flag: &str, s: &str, lo: i64, hi: i64) -> Result<i64> {
    let n: i64 = s.trim().parse().map_err(|_| anyhow::anyhow!("{flag} `{s}`: not a number"))?;
    if n < lo || n > hi {
        bail!("{flag} `{s}`: must be between {lo} and {hi}");
    }
    Ok(n)
}

/// `--cpuset-cpus`: `N`, `N-M`, comma-separated.
pub fn parse_cpuset(s: &str) -> Result<String> {
    let ok = !s.is_empty()
        && s.split(',').all(|part| {
            let mut ends = part.splitn(2, '-');
            let a = ends.next().and_then(|a| a.parse::<u32>().ok());
            match (a, ends.next()) {
                (Some(_), None) => true,
                (Some(a), Some(b)) => b.parse::<u32>().is_ok_and(|b| b >= a),
                _ => false,
            }
        });
    if !ok {
        bail!("--cpuset-cpus `{s}`: not a CPU list (e.g. 0-2,4)");
    }
    Ok(s.to_string())
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
