//! fuse-overlayfs, for kernels or filesystems where kernel overlayfs cannot be mounted in a user
//! namespace. Started by the stage-1 process (so it lives in the container's user and first mount
//! namespace) in the foreground with a parent-death signal, so it can never outlive the
//! container. Readiness is an event, never a sleep: the mount table changing (POLLPRI on
//! /proc/self/mountinfo) or the daemon exiting (its pidfd).

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::Pid;

use crate::config::Dirs;
use crate::helper;
use crate::hint::{hinted, Problem};
use crate::sys;

/// A running fuse-overlayfs serving the container's rootfs.
pub struct Daemon {
    child: Child,
}

impl Daemon {
    /// Reaps the daemon after its mount went away; kills it if it lingers.
    pub fn finish(mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        if let Ok(pidfd) = sys::pidfd_open(pid) {
            let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
            if !matches!(poll(&mut fds, PollTimeout::from(5000u16)), Ok(n) if n > 0) {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

fn mounted(dirs: &Dirs) -> Result<bool> {
    let m = std::fs::metadata(&dirs.merged).with_context(|| format!("stat `{}`", dirs.merged.display()))?;
    let parent = dirs.merged.parent().unwrap_or(&dirs.merged);
    let p = std::fs::metadata(parent).with_context(|| format!("stat `{}`", parent.display()))?;
    Ok(m.dev() != p.dev())
}

/// Starts fuse-overlayfs on `dirs.merged` and returns once the mount is there.
pub fn mount(dirs: &Dirs) -> Result<Daemon> {
    let bin = helper::find("fuse-overlayfs", Problem::OverlayUnavailable)?;
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        return Err(hinted(Problem::FuseDevice, format!("open `/dev/fuse`: {e}")));
    }
    let lower: Vec<String> = dirs.lower.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},allow_other",
        lower.join(":"),
        dirs.upper.display(),
        dirs.work.display()
    );
    // Opened before the daemon starts, so a mount made at any later moment wakes the poll.
    let mountinfo = File::open("/proc/self/mountinfo").context("open /proc/self/mountinfo")?;
    let mut cmd = Command::new(&bin);
    cmd.arg("-f").arg("-o").arg(&opts).arg(&dirs.merged).stdout(Stdio::null());
    let mut child = helper::spawn_tied(&mut cmd)?;
    let pidfd = sys::pidfd_open(Pid::from_raw(child.id() as i32)).context("pidfd_open fuse-overlayfs")?;
    loop {
        if mounted(dirs)? {
            return Ok(Daemon { child });
        }
        let mut fds =
            [PollFd::new(mountinfo.as_fd(), PollFlags::POLLPRI), PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        let n = poll(&mut fds, PollTimeout::from(30_000u16)).context("wait for fuse-overlayfs")?;
        if n == 0 {
            let _ = child.kill();
            let _ = child.wait();
            bail!("start `{}`: no mount after 30 s", bin.display());
        }
        if fds[1].revents().is_some_and(|r| !r.is_empty()) && !mounted(dirs)? {
            let status = child.wait().context("wait for fuse-overlayfs")?;
            let err = helper::stderr_text(&mut child);
            bail!("start `{}` on `{}`: {err} ({status})", bin.display(), dirs.merged.display());
        }
    }
}
