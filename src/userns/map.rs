//! Planning and writing a child's uid/gid maps.
//!
//! With subordinate ranges: container 0 → the user, 1..N → the ranges, written by the setuid
//! helpers `newuidmap`/`newgidmap` (only they may map ids the user does not own). With
//! `--userns keep-id` the user's own ids stay the same inside, as in Podman. Without ranges: the
//! kernel lets the namespace's owner write one mapping of its own id itself, after denying
//! `setgroups` for the gid map (user_namespaces(7)).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, Context, Result};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::subid::SubRange;
use crate::hint::{hinted, Problem};

/// One line of a uid_map or gid_map: `count` ids from `inside` stand for host ids from `outside`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMapping {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// How the user's own ids appear inside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum UsernsMode {
    /// The user is root inside (Podman's default for rootless).
    #[default]
    Root,
    /// The user keeps their uid/gid inside (`--userns keep-id`).
    KeepId,
}

/// Both maps, and whether they need the setuid helpers.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MapPlan {
    pub uid: Vec<IdMapping>,
    pub gid: Vec<IdMapping>,
    /// False: a single-id map the parent writes itself (no subordinate ranges).
    pub helpers: bool,
}

impl MapPlan {
    /// Plans the maps for a user `id` with subordinate `ranges` (same shape for uids and gids).
    fn one(mode: UsernsMode, id: u32, ranges: &[SubRange]) -> Vec<IdMapping> {
        let own = match mode {
            UsernsMode::Root => 0,
            UsernsMode::KeepId => id,
        };
        let mut maps = vec![IdMapping { inside: own, outside: id, count: 1 }];
        // Fill the inside ids 0.. from the ranges, skipping the one the user's own id took.
        let mut next_inside = 0u32;
        for r in ranges {
            let mut outside = r.start;
            let mut left = r.count;
            while left > 0 {
                if next_inside == own {
                    next_inside += 1;
                    continue;
                }
                // A run stops just before the user's own inside id.
                let room = if next_inside < own { own - next_inside } else { u32::MAX - next_inside };
                let n = left.min(room);
                if n == 0 {
                    break;
                }
                maps.push(IdMapping { inside: next_inside, outside, count: n });
                next_inside += n;
                outside += n;
                left -= n;
            }
        }
        maps.sort_by_key(|m| m.inside);
        maps
    }

    /// The plan for a user (`uid`, `gid`) with the given subordinate ranges. Both kinds of range
    /// are needed for the helpers; with either missing, a single-id map.
    pub fn new(mode: UsernsMode, uid: u32, gid: u32, subuids: &[SubRange], subgids: &[SubRange]) -> MapPlan {
        if subuids.is_empty() || subgids.is_empty() {
            let own = |id| match mode {
                UsernsMode::Root => 0,
                UsernsMode::KeepId => id,
            };
            return MapPlan {
                uid: vec![IdMapping { inside: own(uid), outside: uid, count: 1 }],
                gid: vec![IdMapping { inside: own(gid), outside: gid, count: 1 }],
                helpers: false,
            };
        }
        MapPlan { uid: Self::one(mode, uid, subuids), gid: Self::one(mode, gid, subgids), helpers: true }
    }

    /// Whether `id` has a mapping in the gid map (devpts `gid=5` needs the tty group).
    pub fn gid_mapped(&self, id: u32) -> bool {
        self.gid.iter().any(|m| id >= m.inside && id - m.inside < m.count)
    }

    /// Whether `id` has a mapping in the uid map.
    pub fn uid_mapped(&self, id: u32) -> bool {
        self.uid.iter().any(|m| id >= m.inside && id - m.inside < m.count)
    }

    /// Writes both maps for the process `pid`, which must have unshared its user namespace, and
    /// runs `meanwhile` while the helpers work (they are setuid execs: the slowest step of
    /// starting a container, worth overlapping with the caller's own preparations).
    pub fn apply(&self, pid: Pid, meanwhile: impl FnOnce() -> Result<()>) -> Result<()> {
        if !self.helpers {
            let proc = PathBuf::from(format!("/proc/{pid}"));
            let write = |file: &str, text: String| {
                fs::write(proc.join(file), text).with_context(|| format!("write `/proc/{pid}/{file}`"))
            };
            write("setgroups", "deny".into())?;
            write("uid_map", format_map(&self.uid))?;
            write("gid_map", format_map(&self.gid))?;
            return meanwhile();
        }
        let newuidmap = find_helper("newuidmap")?;
        let newgidmap = find_helper("newgidmap")?;
        // Both helpers run at once.
        let uid = spawn_helper(&newuidmap, pid, &self.uid)?;
        let gid = spawn_helper(&newgidmap, pid, &self.gid)?;
        let ours = meanwhile();
        let r1 = finish_helper(&newuidmap, uid);
        let r2 = finish_helper(&newgidmap, gid);
        ours.and(r1).and(r2)
    }
}

fn format_map(maps: &[IdMapping]) -> String {
    maps.iter().map(|m| format!("{} {} {}\n", m.inside, m.outside, m.count)).collect()
}

fn find_helper(name: &str) -> Result<PathBuf> {
    which::which(name).map_err(|_| {
        hinted(Problem::NewuidmapMissing, format!("find `{name}`: not found in PATH (needed to map subordinate ids)"))
    })
}

fn spawn_helper(path: &Path, pid: Pid, maps: &[IdMapping]) -> Result<std::process::Child> {
    let mut cmd = Command::new(path);
    cmd.arg(pid.to_string());
    for m in maps {
        cmd.args([m.inside.to_string(), m.outside.to_string(), m.count.to_string()]);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    cmd.spawn().with_context(|| format!("run `{}`", path.display()))
}

fn finish_helper(path: &Path, child: std::process::Child) -> Result<()> {
    let out = child.wait_with_output().with_context(|| format!("wait for `{}`", path.display()))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).trim().replace('\n', "; ");
    let msg = format!("run `{}`: {} ({})", path.display(), stderr, out.status);
    if !privileged_helper(path) {
        return Err(hinted(
            Problem::NewuidmapNotSetuid,
            format!("{msg}; `{}` is neither setuid root nor has file capabilities", path.display()),
        ));
    }
    Err(anyhow!(msg))
}

/// Whether the helper can do its job: setuid root, or carries `security.capability`.
fn privileged_helper(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    let setuid_root = meta.uid() == 0 && meta.permissions().mode() & 0o4000 != 0;
    setuid_root || crate::helper::has_file_caps(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(inside: u32, outside: u32, count: u32) -> IdMapping {
        IdMapping { inside, outside, count }
    }

    #[test]
    fn plans() {
        let sub = [SubRange { start: 100000, count: 65536 }];
        let two = [SubRange { start: 100000, count: 10 }, SubRange { start: 200000, count: 5 }];
        let cases: Vec<(UsernsMode, u32, &[SubRange], Vec<IdMapping>)> = vec![
            (UsernsMode::Root, 1000, &sub, vec![m(0, 1000, 1), m(1, 100000, 65536)]),
            (UsernsMode::KeepId, 1000, &sub, vec![m(0, 100000, 1000), m(1000, 1000, 1), m(1001, 101000, 64536)]),
            (UsernsMode::Root, 1000, &two, vec![m(0, 1000, 1), m(1, 100000, 10), m(11, 200000, 5)]),
            (UsernsMode::KeepId, 12, &two, vec![m(0, 100000, 10), m(10, 200000, 2), m(12, 12, 1), m(13, 200002, 3)]),
        ];
        for (mode, id, ranges, want) in cases {
            let plan = MapPlan::new(mode, id, id, ranges, ranges);
            assert!(plan.helpers);
            assert_eq!(plan.uid, want, "{mode:?} {id}");
            assert_eq!(plan.gid, want);
        }
    }

    #[test]
    fn single_id_without_ranges() {
        let sub = [SubRange { start: 100000, count: 65536 }];
        let plan = MapPlan::new(UsernsMode::Root, 1000, 1001, &[], &sub);
        assert!(!plan.helpers);
        assert_eq!(plan.uid, vec![m(0, 1000, 1)]);
        assert_eq!(plan.gid, vec![m(0, 1001, 1)]);
        assert!(!plan.gid_mapped(5));
        let keep = MapPlan::new(UsernsMode::KeepId, 1000, 1000, &[], &[]);
        assert_eq!(keep.uid, vec![m(1000, 1000, 1)]);
        assert_eq!(format_map(&keep.uid), "1000 1000 1\n");
    }

    #[test]
    fn mapped_lookup() {
        let sub = [SubRange { start: 100000, count: 65536 }];
        let plan = MapPlan::new(UsernsMode::Root, 1000, 1000, &sub, &sub);
        assert!(plan.gid_mapped(5) && plan.uid_mapped(0) && plan.uid_mapped(65536));
        assert!(!plan.uid_mapped(65537));
    }
}
