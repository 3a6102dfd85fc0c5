//! The typed conversation between the `rl` parent and the stage-1 process (and the container
//! init, which inherits stage 1's end): length-prefixed JSON frames over a unix socketpair, with
//! an fd attached where a message carries one (the pty master).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use anyhow::{bail, Context, Result};
use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};

use crate::config::ContainerConfig;

/// What stage 1 is asked to do once it is in its user namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Job {
    /// Start the container and wait for it.
    Run(Box<ContainerConfig>),
    /// Start the container as a child of stage 1's parent (the detached monitor, which then
    /// reaps it) and exit once it runs: a running container costs one rl process, not two.
    /// Kernel overlay only: a fuse-overlayfs daemon dies with the stage 1 that started it.
    Launch(Box<ContainerConfig>),
    /// Remove a directory tree whose files belong to subordinate ids.
    RemoveTree(std::path::PathBuf),
    /// Unpack layers streamed on the fds sent with the job.
    Unpack(crate::image::pull::UnpackJob),
    /// Export layer directories as tars into the fds sent with the job.
    Export(crate::image::layer_export::ExportJob),
    /// Read or write a stopped container's filesystem through the fd sent with the job.
    ContainerFs(super::copy::FsJob),
    /// Run a process in a running container whose namespaces stage 1 joined (`rl exec`).
    Exec(Box<super::exec::ExecJob>),
}

/// Every message, in both directions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Msg {
    /// Parent → stage 1: the work.
    Job(Job),
    /// Parent → stage 1: join the namespaces attached (user first), whose maps are written.
    Join,
    /// Parent → init: the network helpers are ready; the payload may run.
    NetworkReady,
    /// Init → parent: the pty master is attached to this message.
    PtyMaster,
    /// Stage 1 → parent: the payload was exec'd; `pid` is the container's PID 1 on the host.
    Started { pid: i32 },
    /// Stage 1 → parent, for a [`Job::Launch`]: the payload was exec'd as the parent's own child
    /// `pid`, which the parent reaps; stage 1 exits.
    HandedOver { pid: i32 },
    /// Any stage → parent: setup failed; `code` is the exit status rl should end with, `problem`
    /// the known host problem behind it.
    Failed { message: String, code: i32, problem: Option<crate::hint::Problem> },
    /// Stage 1 → parent: the container's PID 1 ended.
    Exited { code: Option<i32>, signal: Option<i32> },
    /// Stage 1 → parent: a job other than Run finished.
    Done,
    /// Stage 1 → parent: per layer of an unpack job, its diff id or the error.
    Unpacked { results: Vec<Result<String, String>> },
    /// Stage 1 → parent: per layer of an export job, success or the error.
    Exported { results: Vec<Result<(), String>> },
    /// Parent → stage 1: remove these trees (staging dirs that did not make it), then say Done.
    RemoveTrees(Vec<std::path::PathBuf>),
}

/// The most fds one message carries.
pub const MAX_FDS: usize = 8;

/// Frames larger than this are refused (a config with a huge environment still fits).
const MAX_FRAME: usize = 16 << 20;

/// One end of the socketpair.
#[derive(Debug)]
pub struct Channel {
    fd: OwnedFd,
}

impl Channel {
    /// The socket itself.
    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    /// A connected pair, close-on-exec.
    pub fn pair() -> Result<(Channel, Channel)> {
        let (a, b) = socket::socketpair(
            socket::AddressFamily::Unix,
            socket::SockType::Stream,
            None,
            socket::SockFlag::SOCK_CLOEXEC,
        )
        .context("create socketpair")?;
        Ok((Channel { fd: a }, Channel { fd: b }))
    }

    /// Adopts an inherited fd (stage 1 gets its end as fd 3).
    pub fn from_fd(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    /// Takes ownership of a raw inherited fd number, making it close-on-exec again.
    pub fn from_inherited(fd: RawFd) -> Result<Channel> {
        let fd = crate::sys::adopt_fd(fd).with_context(|| format!("adopt the sync socket (fd {fd})"))?;
        Ok(Channel { fd })
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
    }

    pub fn send(&self, msg: &Msg) -> Result<()> {
        self.send_fds(msg, &[])
    }

    /// Sends `msg`, attaching `fd` if given.
    pub fn send_fd(&self, msg: &Msg, fd: Option<RawFd>) -> Result<()> {
        self.send_fds(msg, fd.as_slice())
    }

    /// Sends `msg` with `fds` attached (at most [`MAX_FDS`]).
    pub fn send_fds(&self, msg: &Msg, fds: &[RawFd]) -> Result<()> {
        self.send_json(msg, fds)
    }

    /// Sends any serializable message (the network daemon's protocol) with `fds` attached.
    pub fn send_json<T: serde::Serialize>(&self, msg: &T, fds: &[RawFd]) -> Result<()> {
        if fds.len() > MAX_FDS {
            bail!("send on the sync socket: {} fds is more than {MAX_FDS}", fds.len());
        }
        let body = serde_json::to_vec(msg).context("encode message")?;
        let len = (body.len() as u32).to_le_bytes();
        let iov = [IoSlice::new(&len), IoSlice::new(&body)];
        let cmsg: Vec<ControlMessage> = if fds.is_empty() { Vec::new() } else { vec![ControlMessage::ScmRights(fds)] };
        let total = len.len() + body.len();
        let mut sent = socket::sendmsg::<()>(self.fd.as_raw_fd(), &iov, &cmsg, MsgFlags::MSG_NOSIGNAL, None)
            .context("send on the sync socket")?;
        // A stream socket may take a frame in pieces; the fd went with the first one.
        let frame: Vec<u8> = len.iter().chain(body.iter()).copied().collect();
        while sent < total {
            sent += socket::send(self.fd.as_raw_fd(), &frame[sent..], MsgFlags::MSG_NOSIGNAL)
                .context("send on the sync socket")?;
        }
        Ok(())
    }

    /// Receives one message; `Ok(None)` when the peer closed the socket.
    pub fn recv(&self) -> Result<Option<Msg>> {
        Ok(self.recv_fds()?.map(|(m, _)| m))
    }

    /// Receives one message and the first fd attached to it, if any.
    pub fn recv_fd(&self) -> Result<Option<(Msg, Option<OwnedFd>)>> {
        Ok(self.recv_fds()?.map(|(m, fds)| (m, fds.into_iter().next())))
    }

    /// Receives one message and the fds attached to it.
    pub fn recv_fds(&self) -> Result<Option<(Msg, Vec<OwnedFd>)>> {
        self.recv_json()
    }

    /// Receives one message of any deserializable type and the fds attached to it.
    pub fn recv_json<T: serde::de::DeserializeOwned>(&self) -> Result<Option<(T, Vec<OwnedFd>)>> {
        let mut len = [0u8; 4];
        let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
        let (n, fd) = {
            let mut iov = [IoSliceMut::new(&mut len)];
            let r = socket::recvmsg::<()>(
                self.fd.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_WAITALL,
            )
            .context("receive on the sync socket")?;
            let mut fd = Vec::new();
            for c in r.cmsgs().context("read control message")? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    // The kernel installed these fds for us (close-on-exec); we own them.
                    fd.extend(fds.into_iter().filter_map(|f| crate::sys::adopt_fd(f).ok()));
                }
            }
            (r.bytes, fd)
        };
        if n == 0 {
            return Ok(None);
        }
        if n != 4 {
            bail!("receive on the sync socket: short frame header ({n} bytes)");
        }
        let size = u32::from_le_bytes(len) as usize;
        if size > MAX_FRAME {
            bail!("receive on the sync socket: frame of {size} bytes is too large");
        }
        let mut body = vec![0u8; size];
        let mut got = 0;
        while got < size {
            let n = socket::recv(self.fd.as_raw_fd(), &mut body[got..], MsgFlags::empty())
                .context("receive on the sync socket")?;
            if n == 0 {
                bail!("receive on the sync socket: peer closed mid-message");
            }
            got += n;
        }
        let msg = serde_json::from_slice(&body).context("decode message")?;
        Ok(Some((msg, fd)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_with_fd() {
        let (a, b) = Channel::pair().unwrap();
        a.send(&Msg::Started { pid: 42 }).unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        a.send_fd(&Msg::PtyMaster, Some(file.as_raw_fd())).unwrap();
        let big = "x".repeat(300_000);
        // A frame larger than the socket buffer needs a reader while it is written.
        let sender = {
            let big = big.clone();
            std::thread::spawn(move || {
                a.send(&Msg::Failed { message: big, code: 125, problem: None }).unwrap();
                drop(a);
            })
        };
        assert!(matches!(b.recv().unwrap(), Some(Msg::Started { pid: 42 })));
        let (m, fd) = b.recv_fd().unwrap().unwrap();
        assert!(matches!(m, Msg::PtyMaster) && fd.is_some());
        match b.recv().unwrap() {
            Some(Msg::Failed { message, code: 125, .. }) => assert_eq!(message, big),
            other => panic!("{other:?}"),
        }
        assert!(b.recv().unwrap().is_none());
        sender.join().unwrap();
    }
}
