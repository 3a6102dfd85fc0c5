//! Watching a running container from the `rl` parent (foreground runs; later also the detached
//! per-container monitor): forward signals to its PID 1, relay the pty and the window size, and
//! wait for stage 1 to report the exit. One poll loop over fds, single-threaded, no sleeps.

pub mod attach;
pub mod detached;
pub mod health;
pub mod log;

use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::SignalFd;

use crate::sandbox::msg::Msg;
use crate::sandbox::parent::Running;
use crate::sandbox::FORWARDED;
use crate::tty;

/// The signals the parent takes through its signalfd: those it forwards, and SIGWINCH.
pub fn signal_mask() -> SigSet {
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGWINCH);
    mask
}

/// How the container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl Exit {
    /// The status `rl` exits with: the command's code, or 128+N for signal N.
    pub fn status(self) -> i32 {
        match (self.code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => crate::hint::EXIT_RL_FAILED,
        }
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    if let Ok(flags) = fcntl(fd, FcntlArg::F_GETFL) {
        let _ = fcntl(fd, FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK));
    }
}

/// Copies what is readable on `from` to `to`; false at end of file (or EIO: the pty's slave side
/// is closed).
fn pump(from: BorrowedFd<'_>, to: &mut impl Write) -> bool {
    let mut buf = [0u8; 16384];
    loop {
        match nix::unistd::read(from, &mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    return false;
                }
                let _ = to.flush();
            }
            Err(Errno::EAGAIN) => return true,
            Err(Errno::EINTR) => {}
            Err(_) => return false,
        }
    }
}

/// Runs until the container exits. `stdin_to_pty`: with `-t -i`, the user's input goes to the
/// pty (without a pty, the container reads rl's stdin directly).
pub fn watch(running: &Running, sigfd: &SignalFd, stdin_to_pty: bool) -> Result<Exit> {
    let stdin = std::io::stdin();
    let _raw = match (&running.pty, stdin_to_pty) {
        (Some(_), true) => tty::RawMode::enter(stdin.as_fd()),
        _ => None,
    };
    let master: Option<&OwnedFd> = running.pty.as_ref();
    if let Some(m) = master {
        tty::copy_window_size(std::io::stdout(), m);
        tty::copy_window_size(stdin.as_fd(), m);
        set_nonblocking(m.as_fd());
    }
    let mut stdin_open = master.is_some() && stdin_to_pty;
    let mut master_open = master.is_some();
    let chan = &running.stage.chan;
    let mut stdout = std::io::stdout();
    let exit = loop {
        let mut fds = vec![PollFd::new(sigfd.as_fd(), PollFlags::POLLIN), PollFd::new(chan.as_fd(), PollFlags::POLLIN)];
        if let (Some(m), true) = (master, master_open) {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
        }
        if stdin_open {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e).context("wait for the container"),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if ready[0] {
            while let Ok(Some(info)) = sigfd.read_signal() {
                let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                    continue;
                };
                match (sig, master) {
                    (Signal::SIGWINCH, Some(m)) => tty::copy_window_size(std::io::stdout(), m),
                    (Signal::SIGWINCH, None) => {}
                    (sig, _) => {
                        let _ = kill(running.pid, sig);
                    }
                }
            }
        }
        let mut i = 2;
        if let (Some(m), true) = (master, master_open) {
            if ready[i] {
                master_open = pump(m.as_fd(), &mut stdout);
            }
            i += 1;
        }
        if stdin_open && ready.get(i) == Some(&true) {
            if let Some(m) = master {
                let mut to = File(m.as_fd());
                let mut buf = [0u8; 4096];
                // Unbuffered: poll must see every byte std's buffer would hide.
                match nix::unistd::read(stdin.as_fd(), &mut buf) {
                    Ok(0) | Err(_) => stdin_open = false,
                    Ok(n) => {
                        let _ = to.write_all(&buf[..n]);
                    }
                }
            }
        }
        if ready[1] {
            match chan.recv()? {
                Some(Msg::Exited { code, signal }) => break Exit { code, signal },
                Some(Msg::Failed { message, code, .. }) => {
                    return Err(crate::hint::ExitStatus { code, message }.into());
                }
                Some(_) => {}
                None => break Exit { code: None, signal: None },
            }
        }
    };
    if let (Some(m), true) = (master, master_open) {
        pump(m.as_fd(), &mut stdout);
    }
    Ok(exit)
}

/// A borrowed fd as a writer (the pty master).
struct File<'a>(BorrowedFd<'a>);

impl Write for File<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        loop {
            match nix::unistd::write(self.0, buf) {
                Ok(n) => return Ok(n),
                Err(Errno::EAGAIN) => {
                    let mut fds = [PollFd::new(self.0, PollFlags::POLLOUT)];
                    let _ = poll(&mut fds, PollTimeout::NONE);
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `poll(2)` for a long-lived waiter going idle (the detached monitor, stage 1): right before
/// blocking, every mapping backed by a file that was never written (no anonymous copy-on-write
/// pages: the text, most read-only data) loses its page-table entries, and the heap's free pages
/// go back to the kernel. What is resident while it waits is then its data and the few pages the
/// wait itself runs; the code a wake-up runs faults back from the page cache (nothing is reread
/// from disk). Without this, everything the setup ran stays resident, 64 KB per page touched
/// (the kernel maps a file's neighbouring pages on each fault).
pub fn idle_poll(fds: &mut [PollFd], timeout: PollTimeout) -> nix::Result<i32> {
    let ranges = releasable();
    crate::sys::release_free_heap();
    crate::sys::release_then_poll(&ranges, fds, timeout)
}

/// The file mappings of this process whose pages can be dropped: from /proc/self/smaps, those
/// with an inode, not writable, and without anonymous pages.
fn releasable() -> Vec<(usize, usize)> {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else { return Vec::new() };
    let mut found = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for line in smaps.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-').filter(|_| !first.ends_with(':')) {
            let perms = words.next().unwrap_or("");
            let inode = words.nth(2).unwrap_or("0");
            let range = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16));
            current = match range {
                (Ok(a), Ok(b)) if inode != "0" && !perms.contains('w') => Some((a, b)),
                _ => None,
            };
        } else if let Some(anon) = line.strip_prefix("Anonymous:") {
            if let Some((a, b)) = current.take() {
                if anon.trim().starts_with("0 ") {
                    found.push((a, b - a));
                }
            }
        }
    }
    found
}
