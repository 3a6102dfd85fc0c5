//! Container logs: what the detached monitor writes and `rl logs` reads. One line per chunk of
//! output in the k8s-file format Podman uses (`2024-05-01T10:00:00.123456789Z stdout F text`; `P`
//! marks a partial line continued by the next record), in `<container>/ctr.log`, rotated to
//! `ctr.log.1` … when `max-size` is reached so at most `max-file` files exist: a log flood
//! cannot fill the disk past `max-size × max-file`.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// `--log-opt max-size=…,max-file=…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogConfig {
    /// Bytes per file before it rotates (None: never).
    pub max_size: Option<u64>,
    /// Files kept, the current one included (at least 1).
    pub max_file: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { max_size: None, max_file: 1 }
    }
}

impl LogConfig {
    /// Applies one `--log-opt KEY=VALUE`.
    pub fn apply(&mut self, opt: &str) -> Result<()> {
        let Some((k, v)) = opt.split_once('=') else { bail!("log option `{opt}`: expected KEY=VALUE") };
        match k {
            "max-size" => self.max_size = Some(parse_size(v).with_context(|| format!("log option `{opt}`"))?),
            "max-file" => match v.parse::<u32>() {
                Ok(n) if n >= 1 => self.max_file = n,
                _ => bail!("log option `{opt}`: max-file must be a number of at least 1"),
            },
            _ => bail!("log option `{opt}`: unknown (rl knows max-size and max-file)"),
        }
        Ok(())
    }
}

/// `10m`, `1g`, `512k`, `4096` (bytes; k/m/g are powers of 1024, as Docker reads them).
pub fn parse_size(s: &str) -> Result<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let digits = lower.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &lower[digits.len()..];
    let n: u64 = digits.parse().map_err(|_| anyhow::anyhow!("`{s}` is not a size (e.g. 10m)"))?;
    let mult = match unit {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        _ => bail!("`{s}`: unknown unit `{unit}` (b, k, m, g)"),
    };
    match n.checked_mul(mult) {
        Some(v) if v >= 1024 => Ok(v),
        Some(_) => bail!("`{s}`: a log file must hold at least 1k"),
        None => bail!("`{s}` is too large"),
    }
}

/// The log file of the container whose record is `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join("ctr.log")
}

fn rotated(dir: &Path, n: u32) -> PathBuf {
    dir.join(format!("ctr.log.{n}"))
}

/// Which stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// The monitor's side: appends records, rotating by size.
pub struct Writer {
    dir: PathBuf,
    config: LogConfig,
    file: File,
    size: u64,
    /// Per stream, whether its last record ended mid-line.
    partial: [bool; 2],
}

impl Writer {
    pub fn open(dir: &Path, config: LogConfig) -> Result<Writer> {
        let p = path(dir);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&p)
            .with_context(|| format!("open log `{}`", p.display()))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        Ok(Writer { dir: dir.to_path_buf(), config, file, size, partial: [false; 2] })
    }

    /// Logs `data` as read from `stream` at `now_ns`: one record per line, the rest partial.
    pub fn write(&mut self, stream: Stream, data: &[u8], now_ns: u128) -> Result<()> {
        let stamp = rfc3339_nanos(now_ns);
        // Records are gathered into one write until the file would pass its size.
        let mut out = Vec::with_capacity(data.len() + 64);
        for piece in data.split_inclusive(|&b| b == b'\n') {
            let (text, full) = match piece.strip_suffix(b"\n") {
                Some(t) => (t, true),
                None => (piece, false),
            };
            let mut rec = Vec::with_capacity(text.len() + stamp.len() + 10);
            rec.extend_from_slice(stamp.as_bytes());
            rec.push(b' ');
            rec.extend_from_slice(stream.name().as_bytes());
            rec.extend_from_slice(if full { b" F " } else { b" P " });
            // A record longer than the whole budget is cut: the limit holds whatever one line is.
            let room = self.config.max_size.map_or(usize::MAX, |m| m as usize).saturating_sub(rec.len() + 1);
            rec.extend_from_slice(&text[..text.len().min(room)]);
            rec.push(b'\n');
            self.partial[stream as usize] = !full;
            if let Some(max) = self.config.max_size {
                if self.size + (out.len() + rec.len()) as u64 > max {
                    self.flush_out(&mut out)?;
                    if self.size > 0 {
                        self.rotate()?;
                    }
                }
            }
            out.extend_from_slice(&rec);
        }
        self.flush_out(&mut out)
    }

    fn flush_out(&mut self, out: &mut Vec<u8>) -> Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        self.file.write_all(out).context("write the container log")?;
        self.size += out.len() as u64;
        out.clear();
        Ok(())
    }

    fn rotate(&mut self) -> Result<()> {
        let keep = self.config.max_file;
        if keep <= 1 {
            // One file: start it over.
            self.file.set_len(0).context("truncate the container log")?;
        } else {
            let _ = std::fs::remove_file(rotated(&self.dir, keep - 1));
            for n in (1..keep - 1).rev() {
                let _ = std::fs::rename(rotated(&self.dir, n), rotated(&self.dir, n + 1));
            }
            std::fs::rename(path(&self.dir), rotated(&self.dir, 1)).context("rotate the container log")?;
            *self = Writer { partial: self.partial, ..Writer::open(&self.dir, self.config)? };
        }
        self.size = 0;
        Ok(())
    }
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub time: String,
    pub time_ns: Option<i128>,
    pub stream: Stream,
    /// The text with its newline unless the record was partial.
    pub text: Vec<u8>,
}

/// Parses one line of a log file.
pub fn parse(line: &[u8]) -> Option<Record> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut it = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(it.next()?).ok()?.to_string();
    let stream = match it.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let full = match it.next()? {
        b"F" => true,
        b"P" => false,
        _ => return None,
    };
    let mut text = it.next().unwrap_or_default().to_vec();
    if full {
        text.push(b'\n');
    }
    let time_ns = unix_nanos(&time);
    Some(Record { time, time_ns, stream, text })
}

/// Every log file of `dir`, oldest first.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = (1..1000).map(|n| rotated(dir, n)).take_while(|p| p.exists()).collect();
    out.reverse();
    out.push(path(dir));
    out
}

/// Reads every record of `file` from byte `offset`; returns them and the offset after the last
/// complete line.
pub fn read_from(file: &Path, offset: u64) -> Result<(Vec<Record>, u64)> {
    let f = match File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e).with_context(|| format!("open `{}`", file.display())),
    };
    let mut r = BufReader::new(f);
    std::io::Seek::seek(&mut r, std::io::SeekFrom::Start(offset)).context("seek the log")?;
    let mut pos = offset;
    let mut out = Vec::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = r.read_until(b'\n', &mut line).with_context(|| format!("read `{}`", file.display()))?;
        if n == 0 || line.last() != Some(&b'\n') {
            break; // the end, or a record still being written
        }
        pos += n as u64;
        if let Some(rec) = parse(&line) {
            out.push(rec);
        }
    }
    Ok((out, pos))
}

/// `2024-05-01T10:00:00.123456789Z` for nanoseconds since the epoch.
pub fn rfc3339_nanos(ns: u128) -> String {
    let secs = (ns / 1_000_000_000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        (ns % 1_000_000_000) as u32
    )
}

/// Howard Hinnant's `civil_from_days`: the date `days` after 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Nanoseconds since the epoch of an RFC 3339 UTC time with optional fraction.
pub fn unix_nanos(s: &str) -> Option<i128> {
    let secs = crate::cli::history::unix_seconds_of(s)?;
    let frac = s.split_once('.').map(|(_, f)| f.trim_end_matches(|c: char| !c.is_ascii_digit())).unwrap_or("");
    let digits: String = frac.chars().take_while(|c| c.is_ascii_digit()).take(9).collect();
    let nanos = if digits.is_empty() { 0 } else { digits.parse::<i128>().ok()? * 10i128.pow(9 - digits.len() as u32) };
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("rl-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn times_format_and_parse_back() {
        let ns = 1_714_557_600_123_456_789u128; // 2024-05-01T10:00:00.123456789Z
        assert_eq!(rfc3339_nanos(ns), "2024-05-01T10:00:00.123456789Z");
        assert_eq!(unix_nanos("2024-05-01T10:00:00.123456789Z"), Some(ns as i128));
        assert_eq!(rfc3339_nanos(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339_nanos(951_782_400_000_000_000), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn lines_partials_and_streams_round_trip() {
        let d = tmp("rt");
        let mut w = Writer::open(&d, LogConfig::default()).unwrap();
        w.write(Stream::Stdout, b"one\ntwo\npart", 1).unwrap();
        w.write(Stream::Stderr, b"err line\n", 2).unwrap();
        w.write(Stream::Stdout, b"ial\n", 3).unwrap();
        let (recs, end) = read_from(&path(&d), 0).unwrap();
        let text: Vec<(Stream, &[u8])> = recs.iter().map(|r| (r.stream, &r.text[..])).collect();
        assert_eq!(
            text,
            [
                (Stream::Stdout, &b"one\n"[..]),
                (Stream::Stdout, b"two\n"),
                (Stream::Stdout, b"part"),
                (Stream::Stderr, b"err line\n"),
                (Stream::Stdout, b"ial\n"),
            ]
        );
        assert_eq!(end, std::fs::metadata(path(&d)).unwrap().len());
        assert_eq!(read_from(&path(&d), end).unwrap().0, vec![]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn rotation_bounds_the_disk_use() {
        let d = tmp("rot");
        let cfg = LogConfig { max_size: Some(4096), max_file: 3 };
        let mut w = Writer::open(&d, cfg).unwrap();
        // Many lines per write, as a pipe delivers them.
        for chunk in (0..2000).collect::<Vec<u32>>().chunks(300) {
            let text: String = chunk.iter().map(|i| format!("line {i:05} of a flood\n")).collect();
            w.write(Stream::Stdout, text.as_bytes(), 5).unwrap();
        }
        let files = files(&d);
        assert_eq!(files.len(), 3, "{files:?}");
        let total: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();
        assert!(total <= 3 * 4096, "{total}");
        // The newest lines survive, in order across the files.
        let all: Vec<Record> = files.iter().flat_map(|f| read_from(f, 0).unwrap().0).collect();
        assert_eq!(all.last().unwrap().text, b"line 01999 of a flood\n");
        // No line is lost or cut inside what is kept: consecutive numbers, oldest to newest.
        let nums: Vec<u32> = all.iter().map(|r| String::from_utf8_lossy(&r.text)[5..10].parse().unwrap()).collect();
        assert!(nums.windows(2).all(|p| p[1] == p[0] + 1), "{nums:?}");
        for f in &files {
            assert!(std::fs::read(f).unwrap().ends_with(b"\n"), "whole records only");
        }
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn options_and_sizes() {
        let mut c = LogConfig::default();
        c.apply("max-size=10m").unwrap();
        c.apply("max-file=3").unwrap();
        assert_eq!(c, LogConfig { max_size: Some(10 << 20), max_file: 3 });
        for bad in ["max-size=10x", "max-file=0", "color=red", "max-size", "max-size=12"] {
            assert!(LogConfig::default().apply(bad).is_err(), "{bad}");
        }
    }
}
