//! What `rl stats` shows of a running container, read from its cgroup leaf (CPU time, memory,
//! pids, block I/O) and from its network namespace (/proc/PID/net/dev of its PID 1). The parsers
//! are pure and unit-tested on the kernel's formats.

use std::path::Path;

/// One reading of a container's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sample {
    /// CPU time used, microseconds (cpu.stat usage_usec).
    pub cpu_usec: u64,
    /// Memory in use, bytes: memory.current less the inactive file cache, as Docker counts it.
    pub mem_usage: u64,
    /// memory.max, or the host's memory when unlimited.
    pub mem_limit: u64,
    pub pids: u64,
    pub blk_read: u64,
    pub blk_write: u64,
    pub net_rx: u64,
    pub net_tx: u64,
}

/// The number after `key` in a flat keyed file (`key value` lines).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut w = l.split_whitespace();
        (w.next() == Some(key)).then(|| w.next()?.parse().ok()).flatten()
    })
}

/// Bytes read and written over all devices of an `io.stat` (`MAJ:MIN rbytes=N wbytes=N …`).
pub fn io_bytes(text: &str) -> (u64, u64) {
    let (mut r, mut w) = (0, 0);
    for field in text.split_whitespace() {
        if let Some(v) = field.strip_prefix("rbytes=") {
            r += v.parse::<u64>().unwrap_or(0);
        } else if let Some(v) = field.strip_prefix("wbytes=") {
            w += v.parse::<u64>().unwrap_or(0);
        }
    }
    (r, w)
}

/// Bytes received and sent over all interfaces but loopback of a /proc/net/dev.
pub fn net_bytes(text: &str) -> (u64, u64) {
    let (mut rx, mut tx) = (0, 0);
    for line in text.lines().skip(2) {
        let Some((name, counters)) = line.split_once(':') else { continue };
        if name.trim() == "lo" {
            continue;
        }
        let c: Vec<u64> = counters.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
        if c.len() >= 9 {
            rx += c[0];
            tx += c[8];
        }
    }
    (rx, tx)
}

/// `MemTotal` of /proc/meminfo, bytes.
fn host_memory() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    keyed(&text.replace(':', " "), "MemTotal").map_or(0, |kb| kb * 1024)
}

/// Reads the counters of the leaf `dir` and of the container whose PID 1 is `pid`.
pub fn read(dir: &Path, pid: i32) -> Sample {
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    let current: u64 = read("memory.current").trim().parse().unwrap_or(0);
    let inactive = keyed(&read("memory.stat"), "inactive_file").unwrap_or(0);
    let mem_limit = read("memory.max").trim().parse().unwrap_or_else(|_| host_memory());
    let (blk_read, blk_write) = io_bytes(&read("io.stat"));
    let net = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
    let (net_rx, net_tx) = net_bytes(&net);
    Sample {
        cpu_usec: keyed(&read("cpu.stat"), "usage_usec").unwrap_or(0),
        mem_usage: current.saturating_sub(inactive),
        mem_limit,
        pids: read("pids.current").trim().parse().unwrap_or(0),
        blk_read,
        blk_write,
        net_rx,
        net_tx,
    }
}

/// Docker's `CPU %`: CPU time used over wall time elapsed, where 100 % is one CPU.
pub fn cpu_percent(cpu_usec: u64, wall_usec: u64) -> f64 {
    if wall_usec == 0 {
        return 0.0;
    }
    cpu_usec as f64 * 100.0 / wall_usec as f64
}

/// A byte count as Docker's stats print it (decimal units, three significant digits: `1.5MB`,
/// `12kB`, `0B`).
pub fn decimal_size(bytes: u64) -> String {
    scaled(bytes, 1000.0, &["B", "kB", "MB", "GB", "TB", "PB"], 3)
}

/// A byte count in binary units as Docker's MEM USAGE column prints it (`1.5MiB`, four
/// significant digits).
pub fn binary_size(bytes: u64) -> String {
    scaled(bytes, 1024.0, &["B", "KiB", "MiB", "GiB", "TiB", "PiB"], 4)
}

/// `bytes` in the largest of `units` (each `base` times the one before) that keeps it at least 1,
/// with `digits` significant digits and no trailing zeros — Go's `%.Ng` as Docker's units
/// package prints sizes.
pub fn scaled(bytes: u64, base: f64, units: &[&str], digits: usize) -> String {
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= base && i < units.len() - 1 {
        v /= base;
        i += 1;
    }
    let int_digits = if v < 1.0 { 1 } else { v.log10().floor() as usize + 1 };
    let mut s = format!("{v:.*}", digits.saturating_sub(int_digits));
    if s.contains('.') {
        s = s.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    format!("{s}{}", units[i])
}
