//! `rl logs [-f] [-t] [--tail N] [--since T] CONTAINER`: what a detached container wrote, from
//! the log its monitor keeps (rotated files oldest first). `-f` follows the file until the
//! container is done: it waits on inotify and on the watcher's pidfd, never on a timer.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};

use crate::monitor::log::{self, Record, Stream};
use crate::store::Paths;

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new output until the container stops.
    #[arg(short, long)]
    pub follow: bool,
    /// Prefix each line with its time.
    #[arg(short, long)]
    pub timestamps: bool,
    /// Only the last N lines (`all` for every line).
    #[arg(long, value_name = "N")]
    pub tail: Option<String>,
    /// Only lines since T: an RFC 3339 time or a duration ago (`10m`, `1h30m`, `20s`).
    #[arg(long, value_name = "T")]
    pub since: Option<String>,
    pub container: String,
}

/// Nanoseconds since the epoch for `--since`.
fn since_ns(s: &str) -> Result<i128> {
    if let Some(t) = log::unix_nanos(s) {
        return Ok(t);
    }
    let mut total: i128 = 0;
    let mut num = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: i128 =
            num.parse().map_err(|_| anyhow::anyhow!("--since `{s}`: expected a time or a duration like 10m"))?;
        num.clear();
        total += n * match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => bail!("--since `{s}`: unknown unit `{c}` (s, m, h)"),
        };
    }
    if !num.is_empty() || total == 0 {
        bail!("--since `{s}`: expected a time (2024-05-01T10:00:00Z) or a duration like 10m");
    }
    Ok(crate::state::now_ns() as i128 - total * 1_000_000_000)
}

fn print(rec: &Record, timestamps: bool) -> Result<()> {
    let mut line = Vec::new();
    if timestamps {
        line.extend_from_slice(rec.time.as_bytes());
        line.push(b' ');
    }
    line.extend_from_slice(&rec.text);
    let r = match rec.stream {
        Stream::Stdout => std::io::stdout().write_all(&line).and_then(|()| std::io::stdout().flush()),
        Stream::Stderr => std::io::stderr().write_all(&line),
    };
    // A reader that went away (`| head`) ends the listing quietly.
    if let Err(e) = r {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        return Err(e).context("write the log");
    }
    Ok(())
}

/// `rl logs`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: LogsArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let (cfg, st) = crate::state::find(&paths, &args.container)?;
    let dir = paths.container(&cfg.id);
    let since = args.since.as_deref().map(since_ns).transpose()?;
    let tail: Option<usize> = match args.tail.as_deref() {
        None | Some("all") => None,
        Some(n) => Some(n.parse().map_err(|_| anyhow::anyhow!("--tail `{n}`: expected a number or `all`"))?),
    };
    // Watch before reading, so nothing written in between is missed.
    let watch = if args.follow {
        let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).context("inotify_init")?;
        ino.add_watch(&dir, AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
            .with_context(|| format!("watch `{}`", dir.display()))?;
        Some(ino)
    } else {
        None
    };
    let files = log::files(&dir);
    let mut records: Vec<Record> = Vec::new();
    let mut offset = 0;
    for (i, f) in files.iter().enumerate() {
        let (recs, end) = log::read_from(f, 0)?;
        records.extend(recs);
        if i + 1 == files.len() {
            offset = end;
        }
    }
    records.retain(|r| since.map_or(true, |s| r.time_ns.is_some_and(|t| t >= s)));
    let skip = tail.map_or(0, |n| records.len().saturating_sub(n));
    for r in &records[skip..] {
        print(r, args.timestamps)?;
    }
    let Some(ino) = watch else { return Ok(0) };
    let st = st.map(|s| crate::lifecycle::effective(&s));
    let watcher = match st.as_ref().filter(|s| s.running()).and_then(|s| s.monitor_pid) {
        Some(pid) => crate::sys::pidfd_open(nix::unistd::Pid::from_raw(pid)).ok(),
        None => None,
    };
    let Some(watcher) = watcher else { return Ok(0) };
    let current = log::path(&dir);
    loop {
        let mut fds = [PollFd::new(ino.as_fd(), PollFlags::POLLIN), PollFd::new(watcher.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("follow the log"),
        }
        let done = fds[1].revents().is_some_and(|r| !r.is_empty());
        while let Ok(events) = ino.read_events() {
            let fresh = |e: &nix::sys::inotify::InotifyEvent| {
                e.name.as_deref() == Some(std::ffi::OsStr::new("ctr.log"))
                    && (e.mask.contains(AddWatchFlags::IN_MOVED_TO) || e.mask.contains(AddWatchFlags::IN_CREATE))
            };
            if events.iter().any(fresh) {
                // Rotated: the current file is new.
                offset = 0;
            }
            if events.is_empty() {
                break;
            }
        }
        let (recs, end) = log::read_from(&current, offset)?;
        offset = end;
        for r in &recs {
            print(r, args.timestamps)?;
        }
        if done {
            let (recs, _) = log::read_from(&current, offset)?;
            for r in &recs {
                print(r, args.timestamps)?;
            }
            return Ok(0);
        }
    }
}
