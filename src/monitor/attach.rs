//! `rl attach`'s wire: the detached monitor listens on `attach.sock` in the container's runtime
//! dir (0700, like the rest of the run root: only the user can connect) and relays — output to
//! every attached client, client input to the container's stdin (a pipe with `-i`, or the pty
//! master with `-t`). With a pty the bytes pass as they are; without, each chunk is framed
//! (`[1|2][u32 length][bytes]`) so the client can put stdout and stderr back apart. A client
//! that cannot keep up is dropped rather than slowing the container down.
//!
//! Socket paths are bound and connected through `/proc/self/fd/DIR/attach.sock`, so a long run
//! root never runs into the 108-byte limit of `sun_path`.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::poll::{PollFd, PollFlags};

use super::log::Stream;

/// Where the monitor of the container with runtime dir `run` listens.
pub fn socket_path(run: &Path) -> PathBuf {
    run.join("attach.sock")
}

/// A short path to `attach.sock` in `run` through an open fd of the directory (kept alive by
/// the returned fd).
fn short_path(run: &Path) -> Result<(OwnedFd, PathBuf)> {
    let dir = std::fs::File::open(run).with_context(|| format!("open `{}`", run.display()))?;
    let fd = OwnedFd::from(dir);
    let path = PathBuf::from(format!("/proc/self/fd/{}/attach.sock", fd.as_raw_fd()));
    Ok((fd, path))
}

/// The monitor's listening socket (replacing one a dead monitor left).
pub fn listen(run: &Path) -> Result<UnixListener> {
    let (_dir, path) = short_path(run)?;
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).with_context(|| format!("listen on `{}`", socket_path(run).display()))?;
    l.set_nonblocking(true).context("make the attach socket non-blocking")?;
    Ok(l)
}

/// A client's connection to the monitor of the container with runtime dir `run`.
pub fn connect(run: &Path) -> Result<UnixStream> {
    let (_dir, path) = short_path(run)?;
    UnixStream::connect(&path).with_context(|| format!("connect to `{}`", socket_path(run).display()))
}

/// The monitor's side: the listener and the attached clients.
pub struct Clients {
    listener: UnixListener,
    /// Where client input goes (the stdin pipe or the pty master), if anywhere.
    input: Option<OwnedFd>,
    tty: bool,
    conns: Vec<UnixStream>,
}

impl Clients {
    pub fn new(listener: UnixListener, input: Option<OwnedFd>, tty: bool) -> Clients {
        Clients { listener, input, tty, conns: Vec::new() }
    }

    /// Adds the listener and every client to a poll set.
    pub fn poll_fds<'a>(&'a self, fds: &mut Vec<PollFd<'a>>) {
        fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
        for c in &self.conns {
            fds.push(PollFd::new(c.as_fd(), PollFlags::POLLIN));
        }
    }

    /// Acts on what poll reported for the entries [`Clients::poll_fds`] added.
    pub fn handle(&mut self, ready: &[bool]) {
        let mut gone = Vec::new();
        let mut buf = [0u8; 8192];
        for (i, c) in self.conns.iter_mut().enumerate() {
            if !ready.get(i + 1).copied().unwrap_or(false) {
                continue;
            }
            match c.read(&mut buf) {
                Ok(0) | Err(_) => gone.push(i),
                Ok(n) => {
                    if let Some(input) = &self.input {
                        write_all(input.as_fd(), &buf[..n]);
                    }
                }
            }
        }
        for i in gone.into_iter().rev() {
            self.conns.remove(i);
        }
        if ready.first().copied().unwrap_or(false) {
            while let Ok((c, _)) = self.listener.accept() {
                let _ = c.set_nonblocking(true);
                self.conns.push(c);
            }
        }
    }

    /// Sends output to every client.
    pub fn send(&mut self, stream: Stream, data: &[u8]) {
        if self.conns.is_empty() {
            return;
        }
        let mut frame = Vec::with_capacity(data.len() + 5);
        if !self.tty {
            frame.push(if stream == Stream::Stdout { 1 } else { 2 });
            frame.extend_from_slice(&(data.len() as u32).to_be_bytes());
        }
        frame.extend_from_slice(data);
        self.conns.retain_mut(|c| c.write_all(&frame).is_ok());
    }
}

/// Writes all of `data` to `fd` (the container's stdin), giving up on an error: a container
/// that closed its stdin just does not get the input.
fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Splits framed output back into its streams; returns complete frames and keeps the rest.
pub fn deframe(buf: &mut Vec<u8>) -> Vec<(Stream, Vec<u8>)> {
    let mut out = Vec::new();
    loop {
        if buf.len() < 5 {
            return out;
        }
        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
        if buf.len() < 5 + len {
            return out;
        }
        let stream = if buf[0] == 2 { Stream::Stderr } else { Stream::Stdout };
        out.push((stream, buf[5..5 + len].to_vec()));
        buf.drain(..5 + len);
    }
}

/// `--detach-keys`: `ctrl-p,ctrl-q` (Docker's default), `ctrl-a,d`, …
pub fn parse_detach_keys(spec: &str) -> Result<Vec<u8>> {
    let mut keys = Vec::new();
    for k in spec.split(',') {
        let b = match k.strip_prefix("ctrl-") {
            Some(c) if c.len() == 1 => {
                let c = c.as_bytes()[0].to_ascii_lowercase();
                match c {
                    b'a'..=b'z' => c - b'a' + 1,
                    b'@' => 0,
                    b'[' => 27,
                    b'\\' => 28,
                    b']' => 29,
                    b'^' => 30,
                    b'_' => 31,
                    _ => anyhow::bail!("detach keys `{spec}`: `{k}` is not a control key"),
                }
            }
            None if k.len() == 1 => k.as_bytes()[0],
            _ => anyhow::bail!("detach keys `{spec}`: expected keys like `ctrl-p,ctrl-q` or `ctrl-a,d`"),
        };
        keys.push(b);
    }
    if keys.is_empty() {
        anyhow::bail!("detach keys `{spec}`: empty");
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_across_reads() {
        let mut wire = Vec::new();
        for (s, d) in [(1u8, &b"out"[..]), (2, b"err!"), (1, b"")] {
            wire.push(s);
            wire.extend_from_slice(&(d.len() as u32).to_be_bytes());
            wire.extend_from_slice(d);
        }
        let mut buf = wire[..6].to_vec();
        let first = deframe(&mut buf);
        assert!(first.is_empty(), "a frame is whole or not at all");
        buf.extend_from_slice(&wire[6..]);
        let all = deframe(&mut buf);
        assert_eq!(
            all,
            vec![(Stream::Stdout, b"out".to_vec()), (Stream::Stderr, b"err!".to_vec()), (Stream::Stdout, vec![])]
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn detach_keys() {
        assert_eq!(parse_detach_keys("ctrl-p,ctrl-q").unwrap(), vec![0x10, 0x11]);
        assert_eq!(parse_detach_keys("ctrl-a,d").unwrap(), vec![1, b'd']);
        for bad in ["", "ctrl-", "ctrl-pq", "alt-x"] {
            assert!(parse_detach_keys(bad).is_err(), "{bad}");
        }
    }
}
