//! Processes as the host's /proc shows them to the test: to find the container's process, and
//! to prove that nothing of a test outlives it.
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::thread;
use std::time::Instant;

use super::{POLL, TIMEOUT};

/// A process as /proc shows it to the test.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    pub argv: Vec<String>,
}

pub fn process(pid: i32) -> Option<Proc> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may hold spaces and parentheses: the fields that follow start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let argv =
        raw.split(|b| *b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    Some(Proc { pid, ppid, state, argv })
}

pub fn processes() -> Vec<Proc> {
    let Ok(rd) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()).filter_map(process).collect()
}

/// Processes whose parent chain leads to `root`.
pub fn descendants(root: i32) -> Vec<Proc> {
    let all = processes();
    let parent: std::collections::HashMap<i32, i32> = all.iter().map(|p| (p.pid, p.ppid)).collect();
    all.into_iter()
        .filter(|p| {
            let mut cur = p.ppid;
            for _ in 0..64 {
                if cur == root {
                    return true;
                }
                match parent.get(&cur) {
                    Some(&pp) if pp != cur && cur > 1 => cur = pp,
                    _ => return false,
                }
            }
            false
        })
        .collect()
}

/// Polls `cond` until it holds or TIMEOUT passes; true if it held.
pub fn poll_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        thread::sleep(POLL);
    }
}

/// The signal that killed rl itself (not its container: that one is 128+N in rl's exit code).
pub fn signal_of(status: &ExitStatus) -> Option<i32> {
    status.signal()
}
