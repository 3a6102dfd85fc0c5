//! `-u USER[:GROUP]` and `--group-add`, resolved the way Docker does against the container's own
//! /etc/passwd and /etc/group (read by the container init after `pivot_root`, so they are the
//! image's files, never the host's).

use anyhow::{bail, Result};

/// Who the payload runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// The user's home, for `HOME` when the environment has none.
    pub home: String,
}

struct Passwd<'a> {
    name: &'a str,
    uid: u32,
    gid: u32,
    home: &'a str,
}

fn passwd_entries(text: &str) -> impl Iterator<Item = Passwd<'_>> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        Some(Passwd { name: f[0], uid: f[2].parse().ok()?, gid: f[3].parse().ok()?, home: f[5] })
    })
}

fn group_entries(text: &str) -> impl Iterator<Item = (&str, u32, Vec<&str>)> {
    text.lines().filter_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 4 {
            return None;
        }
        let members = f[3].split(',').filter(|m| !m.is_empty()).collect();
        Some((f[0], f[2].parse().ok()?, members))
    })
}

fn group_id(spec: &str, group: &str) -> Result<u32> {
    if let Ok(n) = spec.parse() {
        return Ok(n);
    }
    match group_entries(group).find(|(name, _, _)| *name == spec) {
        Some((_, gid, _)) => Ok(gid),
        None => bail!("group `{spec}`: no matching entry in the container's /etc/group"),
    }
}

/// Resolves `spec` (`""` = root) with the container's passwd and group texts.
pub fn resolve(spec: &str, group_add: &[String], passwd: &str, group: &str) -> Result<Resolved> {
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entry = match user.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd).find(|p| p.uid == uid),
        Err(_) => match passwd_entries(passwd).find(|p| p.name == user) {
            Some(p) => Some(p),
            None => bail!("user `{user}`: no matching entry in the container's /etc/passwd"),
        },
    };
    let uid = match &entry {
        Some(p) => p.uid,
        None => user.parse().unwrap_or(0),
    };
    let gid = match grp {
        Some(g) if !g.is_empty() => group_id(g, group)?,
        _ => entry.as_ref().map_or(0, |p| p.gid),
    };
    let mut groups = Vec::new();
    if let Some(p) = &entry {
        for (_, g, members) in group_entries(group) {
            if members.contains(&p.name) && !groups.contains(&g) {
                groups.push(g);
            }
        }
    }
    for g in group_add {
        let g = group_id(g, group)?;
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    let home = entry.as_ref().map_or("/", |p| p.home);
    Ok(Resolved { uid, gid, groups, home: if home.is_empty() { "/".into() } else { home.into() } })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nbroken\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:user\nuser:x:1000:\naudio:x:29:user,other\n";

    #[test]
    fn table() {
        let r =
            |uid, gid, groups: &[u32], home: &str| Resolved { uid, gid, groups: groups.to_vec(), home: home.into() };
        let cases: Vec<(&str, Vec<String>, Resolved)> = vec![
            ("", vec![], r(0, 0, &[], "/root")),
            ("user", vec![], r(1000, 1000, &[10, 29], "/home/user")),
            ("1000", vec![], r(1000, 1000, &[10, 29], "/home/user")),
            ("1000:29", vec![], r(1000, 29, &[10, 29], "/home/user")),
            ("user:wheel", vec!["audio".into(), "7".into()], r(1000, 10, &[10, 29, 7], "/home/user")),
            ("4242", vec![], r(4242, 0, &[], "/")),
            ("4242:4343", vec![], r(4242, 4343, &[], "/")),
        ];
        for (spec, add, want) in cases {
            assert_eq!(resolve(spec, &add, PASSWD, GROUP).unwrap(), want, "{spec}");
        }
        for bad in ["nobody-here", "user:nogroup"] {
            let e = resolve(bad, &[], PASSWD, GROUP).unwrap_err().to_string();
            assert!(e.contains("no matching entry"), "{e}");
        }
    }
}
