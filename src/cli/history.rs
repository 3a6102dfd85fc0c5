//! `rl history [--no-trunc] [-q] [--format json] IMAGE` (also `rl image history`): how an image
//! was built — the `history` of its config, newest first, in Docker's columns. Docker knows each
//! entry's size from its layer store; rl walks the entry's unpacked layer directory instead
//! (entries not marked `empty_layer` take the image's layers in order; `-` when there are more
//! such entries than layers).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::{json, Value};

use super::image::lookup;
use super::system::human_size;
use crate::store::images::{self, disk_usage};
use crate::store::Paths;

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Show whole commands and ids.
    #[arg(long)]
    pub no_trunc: bool,
    /// Only the image ids (`<missing>` for entries that are no image of their own).
    #[arg(short, long)]
    pub quiet: bool,
    /// `json` for machine-readable output.
    #[arg(long)]
    pub format: Option<String>,
    /// The image: a name or an id (prefix).
    pub image: String,
}

/// One history entry, as shown.
struct Row {
    created: Option<String>,
    created_by: String,
    comment: String,
    empty: bool,
    /// Unpacked bytes of the entry's layer: `Some(0)` for an empty layer, `None` if unknown.
    size: Option<u64>,
}

/// Seconds since the epoch of an RFC 3339 time (for other modules).
pub(crate) fn unix_seconds_of(s: &str) -> Option<i64> {
    unix_seconds(s)
}

/// Docker's CREATED column for an RFC 3339 `created`: `3 days ago`, or `N/A`.
pub(crate) fn created_since(created: Option<&str>) -> String {
    let now = (crate::state::now_ns() / 1_000_000_000) as i64;
    match created.and_then(unix_seconds) {
        Some(t) => format!("{} ago", human_duration(now - t)),
        None => "N/A".into(),
    }
}

/// Docker's `HumanDuration` of `secs`, which its CREATED column follows with ` ago`.
fn human_duration(secs: i64) -> String {
    let hours = (secs as f64 / 3600.0).round() as i64;
    match secs {
        s if s < 1 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s / 60 == 1 => "About a minute".into(),
        s if s / 60 < 60 => format!("{} minutes", s / 60),
        _ if hours == 1 => "About an hour".into(),
        _ if hours < 48 => format!("{hours} hours"),
        _ if hours < 24 * 7 * 2 => format!("{} days", hours / 24),
        _ if hours < 24 * 30 * 2 => format!("{} weeks", hours / 24 / 7),
        _ if hours < 24 * 365 * 2 => format!("{} months", hours / 24 / 30),
        s => format!("{} years", s / 3600 / 24 / 365),
    }
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// Seconds since the epoch of an RFC 3339 time (`2024-01-01T00:00:00Z`,
/// `2024-01-01T02:00:00.5+02:00`), as image configs write `created`.
fn unix_seconds(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let num = |at: usize, len: usize| -> Option<i64> {
        let part = s.get(at..at + len)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok()).flatten()
    };
    let seps = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
    if b.len() < 20 || seps.iter().any(|&(i, c)| b[i] != c) || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d, h, mi, se) = (num(0, 4)?, num(5, 2)?, num(8, 2)?, num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let off = num(s.len() - 5, 2)? * 3600 + num(s.len() - 2, 2)? * 60;
            if *sign == b'-' {
                -off
            } else {
                off
            }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset)
}

/// Docker's `Ellipsis`: at most `max` characters, the last one `…` when cut.
fn ellipsis(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    s.chars().take(max - 1).chain(['…']).collect()
}

/// The history entries, oldest first; without history in the config, one row per layer.
fn rows(paths: &Paths, layers: &[String], config: &Value) -> Result<Vec<Row>> {
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let size = |d: &String| -> Result<u64> { Ok(disk_usage(&paths.layer_dir(d)?)) };
    let history = config.get("history").and_then(Value::as_array).cloned().unwrap_or_default();
    if history.is_empty() {
        return layers
            .iter()
            .map(|d| {
                let s = size(d)?;
                Ok(Row {
                    created: None,
                    created_by: String::new(),
                    comment: String::new(),
                    empty: false,
                    size: Some(s),
                })
            })
            .collect();
    }
    let mut layers = layers.iter();
    let mut out = Vec::new();
    for h in &history {
        let empty = h.get("empty_layer").and_then(Value::as_bool).unwrap_or(false);
        let size = match empty {
            true => Some(0),
            false => layers.next().map(size).transpose()?,
        };
        let created = Some(text(h, "created")).filter(|c| !c.is_empty());
        out.push(Row { created, created_by: text(h, "created_by"), comment: text(h, "comment"), empty, size });
    }
    Ok(out)
}

/// `rl history`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: HistoryArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let rec = lookup(&paths, &args.image)?;
    let what = format!("image `{}`", args.image);
    let config: Value = serde_json::from_slice(&images::config(&paths, &rec.id).with_context(|| what.clone())?)
        .with_context(|| format!("{what}: parse config"))?;
    let mut rows = rows(&paths, &rec.layers, &config)?;
    rows.reverse();
    let short = rec.id.strip_prefix("sha256:").unwrap_or(&rec.id).get(..12).unwrap_or("").to_string();
    let id_of = |i: usize| match (i, args.no_trunc) {
        (0, true) => rec.id.clone(),
        (0, false) => short.clone(),
        _ => "<missing>".to_string(),
    };
    if args.format.as_deref() == Some("json") {
        let v: Vec<Value> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                json!({"Id": id_of(i), "Created": r.created, "CreatedBy": r.created_by, "Size": r.size,
                       "Comment": r.comment, "EmptyLayer": r.empty})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(0);
    }
    if args.quiet {
        (0..rows.len()).for_each(|i| println!("{}", id_of(i)));
        return Ok(0);
    }
    let now = crate::state::now_ns() / 1_000_000_000;
    let shown: Vec<[String; 5]> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let created = match r.created.as_deref().and_then(unix_seconds) {
                Some(t) => format!("{} ago", human_duration(now as i64 - t)),
                None => "N/A".to_string(),
            };
            let by = r.created_by.replace(['\t', '\n'], " ");
            let by = if args.no_trunc { by } else { ellipsis(&by, 45) };
            let size = r.size.map_or("-".to_string(), human_size);
            [id_of(i), created, by, size, r.comment.replace('\n', " ")]
        })
        .collect();
    let header = ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"].map(String::from);
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&shown) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&shown) {
        let mut line = String::new();
        for (w, cell) in widths.iter().zip(row) {
            line.push_str(cell);
            line.push_str(&" ".repeat(w - cell.chars().count() + 3));
        }
        line.push_str(&row[4]);
        println!("{}", line.trim_end());
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times() {
        let cases = [
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2024-01-01T00:00:00Z", Some(1_704_067_200)),
            ("2024-01-01T02:00:00.123456789+02:00", Some(1_704_067_200)),
            ("2023-12-31T19:30:00-04:30", Some(1_704_067_200)),
            ("2000-02-29T12:00:00Z", Some(951_825_600)),
            ("2024-13-01T00:00:00Z", None),
            ("2024-01-01 00:00:00", None),
            ("yesterday", None),
            ("", None),
        ];
        for (s, want) in cases {
            assert_eq!(unix_seconds(s), want, "{s}");
        }
    }

    #[test]
    fn durations_read_like_docker() {
        let cases = [
            (0, "Less than a second"),
            (1, "1 second"),
            (59, "59 seconds"),
            (60, "About a minute"),
            (3599, "59 minutes"),
            (3600, "About an hour"),
            (47 * 3600, "47 hours"),
            (3 * 86_400, "3 days"),
            (20 * 86_400, "2 weeks"),
            (90 * 86_400, "3 months"),
            (800 * 86_400, "2 years"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn long_commands_are_cut_with_an_ellipsis() {
        assert_eq!(ellipsis("short", 45), "short");
        let cut = ellipsis(&"x".repeat(50), 45);
        assert_eq!(cut.chars().count(), 45);
        assert!(cut.ends_with('…'));
    }
}
