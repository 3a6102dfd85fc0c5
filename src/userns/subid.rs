//! `/etc/subuid` and `/etc/subgid`: `name-or-uid:start:count` lines giving a user the host ids
//! they may map into their user namespaces (subuid(5)).

use std::path::Path;

use anyhow::{Context, Result};

/// One subordinate range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubRange {
    pub start: u32,
    pub count: u32,
}

/// The ranges of the user called `name` (or numbered `id`) in the text of a subid file, in file
/// order. Malformed lines are skipped as shadow-utils does.
pub fn parse(text: &str, name: &str, id: u32) -> Vec<SubRange> {
    let id = id.to_string();
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                return None;
            }
            let mut f = line.split(':');
            let (owner, start, count) = (f.next()?, f.next()?, f.next()?);
            if f.next().is_some() || (owner != name && owner != id) {
                return None;
            }
            let range = SubRange { start: start.parse().ok()?, count: count.parse().ok()? };
            (range.count > 0).then_some(range)
        })
        .collect()
}

/// Reads `file` (a missing file means no ranges).
pub fn lookup(file: &Path, name: &str, id: u32) -> Result<Vec<SubRange>> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(parse(&text, name, id)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e).with_context(|| format!("read `{}`", file.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let text = "# comment\nalice:100000:65536\nbob:165536:65536\n1001:231072:1000\nalice:300000:10\nbad:line\ncarol:x:5\ndave:1:0\n";
        type Case<'a> = (&'a str, u32, &'a [(u32, u32)]);
        let cases: &[Case] = &[
            ("alice", 1000, &[(100000, 65536), (300000, 10)]),
            ("bob", 1002, &[(165536, 65536)]),
            ("erin", 1001, &[(231072, 1000)]),
            ("carol", 1003, &[]),
            ("dave", 1004, &[]),
            ("nobody", 9, &[]),
        ];
        for (name, id, want) in cases {
            let got: Vec<_> = parse(text, name, *id).iter().map(|r| (r.start, r.count)).collect();
            assert_eq!(&got, want, "{name}");
        }
    }
}
