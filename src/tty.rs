//! The user's terminal while a `-t` container runs: raw mode (so Ctrl-C reaches the container's
//! line discipline instead of killing rl), restored on drop, and window-size propagation to the
//! container's pty. Runs in the `rl` parent.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::sys::termios::{self, SetArg, Termios};

use crate::sys;

/// Raw mode on a terminal, undone when dropped.
pub struct RawMode<'a> {
    fd: BorrowedFd<'a>,
    saved: Termios,
}

impl<'a> RawMode<'a> {
    /// Puts `fd` in raw mode if it is a terminal.
    pub fn enter(fd: BorrowedFd<'a>) -> Option<RawMode<'a>> {
        let saved = termios::tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { fd, saved })
    }
}

impl Drop for RawMode<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.fd, SetArg::TCSADRAIN, &self.saved);
    }
}

/// Copies the window size of the user's terminal (`from`) to the container's pty (`to`).
pub fn copy_window_size(from: impl AsFd, to: impl AsFd) {
    if let Some(ws) = sys::window_size(from.as_fd().as_raw_fd()) {
        let _ = sys::set_window_size(to.as_fd().as_raw_fd(), &ws);
    }
}
