//! The parent side, in the `rl` process: create the namespaces, map them, start stage 1 in them
//! and drive it until the container runs.
//!
//! Three things happen at once, because each waits on the kernel: a forked namespace holder
//! ([`crate::sys::fork_ns_holder`]) unshares the namespaces; the setuid helpers write its id
//! maps while the parent writes the container's record; and stage 1 is exec'd. Stage 1 is rl
//! re-exec'd (`rl __stage1`) rather than forked: a fresh exec is single-threaded, which joining a
//! user namespace requires, so the parent stays free to use threads (parallel layer downloads),
//! and raw syscalls stay in `sys`. With `--init` it is exec'd from a sealed memfd copy of rl, not from
//! rl's file: the container's root is the user, so a process in it that could reach rl's file
//! through /proc/PID/exe (the `--init` PID 1 is rl) could overwrite the user's rl binary —
//! CVE-2019-5736. A sealed memfd cannot be written by anyone.
//!
//! [`Stage1::join`] starts stage 1 in a running container's namespaces instead (`exec`, `cp`):
//! they and their id maps exist already, so there is no holder and no setuid helper, only the
//! namespace fds of the container's PID 1 and a move into its cgroup.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::msg::{Channel, Job, Msg};
use super::stage1::SYNC_FD;
use crate::hint::{hinted, ExitStatus};
use crate::network::wiring::{Hold, Prepared, Wiring};
use crate::sys;
use crate::userns::MapPlan;

/// A sealed, executable in-memory copy of the running rl binary.
fn sealed_exe() -> Result<File> {
    let fd = memfd_create(c"rl", MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING).context("memfd_create")?;
    let mut memfd = File::from(fd);
    let mut exe = File::open("/proc/self/exe").context("open /proc/self/exe")?;
    std::io::copy(&mut exe, &mut memfd).context("copy rl into a memfd")?;
    let seals = SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE;
    fcntl(&memfd, FcntlArg::F_ADD_SEALS(seals)).context("seal the rl memfd")?;
    Ok(memfd)
}

/// Whether a process with the container's ids could write rl's binary — what an rl process
/// inside the container exposes through /proc/PID/exe (CVE-2019-5736) — so that one must run
/// from a sealed copy ([`Spawn::sealed`]). The container's processes have the user's uid and the
/// mapped subordinate ids, with capabilities over files those own; an rl installed by root
/// (`/usr/local/bin/rl`, 0755) is out of their reach and spares the copy, one in the user's home
/// is not.
pub fn exe_exposed(idmap: &MapPlan) -> bool {
    let Ok(meta) = std::fs::metadata("/proc/self/exe") else { return true };
    let mapped =
        |maps: &[crate::userns::IdMapping], id: u32| maps.iter().any(|m| id >= m.outside && id - m.outside < m.count);
    let mode = meta.mode();
    nix::unistd::access("/proc/self/exe", nix::unistd::AccessFlags::W_OK).is_ok()
        || mapped(&idmap.uid, meta.uid())
        || (mode & 0o020 != 0 && mapped(&idmap.gid, meta.gid()))
        || mode & 0o002 != 0
}

/// A stage-1 process and our end of its sync socket.
pub struct Stage1 {
    process: StageProcess,
    pub chan: Channel,
    /// The container's network helpers, started on its new namespaces.
    net: Option<Box<Wiring>>,
}

/// How stage 1 was started.
enum StageProcess {
    /// `rl __stage1`, exec'd.
    Exec(Child),
    /// Forked from a single-threaded parent ([`Spawn::fork_stdio`]).
    Fork(Pid),
}

/// How to start stage 1.
pub struct Spawn {
    /// The container's stdin (stdout and stderr are inherited).
    pub stdin: Stdio,
    /// Exec from a sealed memfd copy of rl: needed whenever an rl process will be visible inside
    /// the container (`--init`; `exec` when [`exe_exposed`]). Without it, no rl process ever shares the
    /// container's pid namespace with a payload process — stage 1 stays outside it, and the init
    /// execs the payload before any other process exists there — so the copy is skipped.
    pub sealed: bool,
    /// Fds handed to stage 1 with the job (an unpack job's layer streams).
    pub fds: Vec<OwnedFd>,
    /// The container's stdout and stderr (default: inherited); a detached container's monitor
    /// passes pipes it logs.
    pub output: Option<(Stdio, Stdio)>,
    /// Fork stage 1 from this process, with these as its stdin, stdout and stderr, instead of
    /// exec'ing rl again (which costs a load of rl on every start). Only for a single-threaded
    /// parent that holds nothing the container must not see: the detached monitor. Never with
    /// `sealed`, whose point is a copy of rl unreachable from the container.
    pub fork_stdio: Option<[OwnedFd; 3]>,
    /// For a container: the run root, where a pause process holding a user namespace with the
    /// same maps may be recorded to join ([`crate::userns::share`]) instead of mapping a new one;
    /// a start that maps one leaves such a pause ([`crate::userns::pause`]).
    pub share_userns: Option<std::path::PathBuf>,
    /// For a container: its network, prepared ([`crate::network::wiring::prepare`]).
    pub network: Option<Prepared>,
}

impl Default for Spawn {
    fn default() -> Self {
        Spawn {
            stdin: Stdio::null(),
            sealed: false,
            fds: Vec::new(),
            output: None,
            fork_stdio: None,
            share_userns: None,
            network: None,
        }
    }
}

/// The namespaces a job's holder creates, in the order stage 1 joins them (user first: it
/// grants the capabilities the others need). Stage 1 itself adds the cgroup namespace (after
/// joining the container's cgroup) and the pid namespace (after fuse-overlayfs started, so the
/// daemon is not its PID 1).
fn namespaces(job: &Job) -> &'static [(&'static str, libc::c_int)] {
    const RUN: [(&str, libc::c_int); 5] = [
        ("user", libc::CLONE_NEWUSER),
        ("mnt", libc::CLONE_NEWNS),
        ("uts", libc::CLONE_NEWUTS),
        ("ipc", libc::CLONE_NEWIPC),
        ("net", libc::CLONE_NEWNET),
    ];
    match job {
        Job::Run(_) | Job::Launch(_) => &RUN,
        Job::RemoveTree(_) | Job::Unpack(_) | Job::Export(_) | Job::ContainerFs(_) => &RUN[..1],
        // Started with `Stage1::join`, in the container's own namespaces.
        Job::Exec(_) => &RUN[..1],
    }
}

/// The error for namespaces the kernel refused, with the hint that explains it.
fn refused(errno: nix::errno::Errno) -> anyhow::Error {
    let message = format!("create a user namespace: {}", errno.desc());
    match crate::hint::UsernsFacts::read().explain(errno) {
        Some(p) => hinted(p, message),
        None => anyhow!(message),
    }
}

impl Stage1 {
    /// Starts a job in new namespaces. Stage 1 is exec'd first; while it loads, a forked
    /// holder creates the namespaces (a network namespace alone takes a millisecond or two);
    /// the setuid helpers write the holder's id maps while `meanwhile` runs; then stage 1 joins
    /// the holder's namespaces (as fds on the socket) and the holder exits.
    pub fn spawn(plan: &MapPlan, job: Job, mut how: Spawn, meanwhile: impl FnOnce() -> Result<()>) -> Result<Stage1> {
        let net = how.network.take();
        let own_netns = net.as_ref().map_or(true, Prepared::own_netns);
        // `--network host` or `container:`: no network namespace of its own.
        let ns: Vec<(&str, libc::c_int)> =
            namespaces(&job).iter().copied().filter(|(name, _)| own_netns || *name != "net").collect();
        let flags = ns.iter().fold(0, |f, (_, flag)| f | flag);
        // A `container:` peer's user namespace (its network namespace belongs to it), else a
        // running container's with the same maps.
        let peer_userns = match net.as_ref().and_then(Prepared::peer_userns) {
            Some(fd) => Some(fd.try_clone_to_owned().context("dup the peer's user namespace")?.into()),
            None => None,
        };
        let share_root = match peer_userns {
            None => how.share_userns.take(),
            Some(_) => None,
        };
        let shared: Option<File> =
            peer_userns.or_else(|| share_root.as_ref().and_then(|r| crate::userns::share::find(r, plan)));
        // A new user namespace for a container: kept for the next starts to share.
        let mut pin = None;
        let mut wiring = None;
        let mut stage = Self::launch(job, how, |_| {
            let join = shared.as_ref().map(|f| f.as_fd());
            let holder = sys::fork_ns_holder(flags, join).context("fork the namespace holder")?.map_err(refused)?;
            // In a shared user namespace no id-map helper runs for `meanwhile` to overlap: the
            // network helpers, the slowest to get ready, start first and overlap it instead.
            let (now, later) = match shared.is_some() {
                true => (None, Some(meanwhile)),
                false => (Some(meanwhile), None),
            };
            let fds = Self::map_and_open(plan, || now.map_or(Ok(()), |f| f()), &holder, &ns, shared.is_some());
            let sys::NsHolder { pid, release, .. } = holder;
            let hold = Hold { pid, release: Some(release) };
            let mut fds = fds?;
            if shared.is_none() && share_root.is_some() {
                pin = fds[0].try_clone().ok();
            }
            if let Some(net) = net {
                match net.peer_netns()? {
                    Some(peer) => fds.push(peer),
                    // The helpers start now, on the new namespaces, and load while stage 1
                    // mounts the rootfs; slirp4netns finds them through the holder, which
                    // stays until it is ready.
                    None if own_netns => {
                        wiring = Some(net.start(fds[0].as_fd(), fds[ns.len() - 1].as_fd(), hold)?);
                    }
                    None => {}
                }
            }
            if let Some(f) = later {
                f()?;
            }
            Ok(fds)
        })?;
        stage.net = wiring.filter(Wiring::has_helpers).map(Box::new);
        if let (Some(ns), Some(root)) = (pin, &share_root) {
            crate::userns::pause::pin(root, ns);
        }
        Ok(stage)
    }

    /// Execs `rl __stage1 FD PPID` with its end of a new sync socket on fd FD (stage 1 moves it
    /// to [`SYNC_FD`]) and our pid, against which it checks its parent-death signal. No
    /// pre-exec step: std then spawns through posix_spawn (vfork) instead of forking this
    /// process, which may be large (a pull's buffers) and multi-threaded.
    fn start(stdin: Stdio, output: Option<(Stdio, Stdio)>, sealed: bool) -> Result<Stage1> {
        let exe = if sealed { Some(sealed_exe()?) } else { None };
        let (ours, theirs) = Channel::pair()?;
        let theirs = sys::above_stdio(theirs.into_fd()).context("move the sync socket")?;
        let program = match &exe {
            Some(f) => format!("/proc/self/fd/{}", f.as_raw_fd()),
            None => "/proc/self/exe".to_string(),
        };
        let mut cmd = Command::new(program);
        cmd.arg0("rl")
            .arg("__stage1")
            .arg(theirs.as_raw_fd().to_string())
            .arg(std::process::id().to_string())
            .stdin(stdin);
        if let Some((out, err)) = output {
            cmd.stdout(out).stderr(err);
        }
        // Inherited only by this child: our copy closes right after the spawn.
        sys::set_cloexec(theirs.as_fd(), false).context("hand the sync socket to stage 1")?;
        let child = cmd.spawn().context("start the stage-1 process")?;
        drop(theirs);
        Ok(Stage1 { process: StageProcess::Exec(child), chan: ours, net: None })
    }

    /// Forks stage 1 ([`Spawn::fork_stdio`]): the child arranges its fds as an exec'd stage 1
    /// finds them (stdio, the sync socket on [`SYNC_FD`], nothing else) and runs its main.
    fn fork(stdio: [OwnedFd; 3]) -> Result<Stage1> {
        let (ours, theirs) = Channel::pair()?;
        let parent = nix::unistd::getpid();
        match sys::fork().context("fork the stage-1 process")? {
            nix::unistd::ForkResult::Child => {
                let ready = (|| -> Result<()> {
                    let [i, o, e] = stdio;
                    nix::unistd::dup2_stdin(&i)?;
                    nix::unistd::dup2_stdout(&o)?;
                    nix::unistd::dup2_stderr(&e)?;
                    // Closed here, not by close_from: dropping an fd already closed aborts a
                    // debug build (Rust's I/O safety check).
                    drop((i, o, e));
                    sys::move_fd(theirs.into_fd(), SYNC_FD)?;
                    sys::close_from(SYNC_FD + 1)?;
                    nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
                    if nix::unistd::getppid() != parent {
                        anyhow::bail!("the parent is gone");
                    }
                    Ok(())
                })();
                sys::exit_now(match ready {
                    Ok(()) => super::stage1::main(),
                    Err(_) => crate::hint::EXIT_RL_FAILED,
                })
            }
            nix::unistd::ForkResult::Parent { child } => {
                Ok(Stage1 { process: StageProcess::Fork(child), chan: ours, net: None })
            }
        }
    }

    /// The stage-1 process's pid.
    fn pid(&self) -> u32 {
        match &self.process {
            StageProcess::Exec(c) => c.id(),
            StageProcess::Fork(p) => p.as_raw() as u32,
        }
    }

    /// Has the holder's id maps written and opens its namespaces, user first.
    fn map_and_open(
        plan: &MapPlan,
        meanwhile: impl FnOnce() -> Result<()>,
        holder: &sys::NsHolder,
        ns: &[(&str, libc::c_int)],
        mapped: bool,
    ) -> Result<Vec<File>> {
        match mapped {
            true => meanwhile()?,
            false => plan.apply(holder.pid, meanwhile)?,
        }
        holder.rest_ready().context("wait for the namespace holder")?.map_err(refused)?;
        let mut fds = Vec::with_capacity(ns.len());
        for (name, _) in ns {
            let path = format!("/proc/{}/ns/{name}", holder.pid);
            fds.push(File::open(&path).with_context(|| format!("open `{path}`"))?);
        }
        Ok(fds)
    }

    /// Execs stage 1 and hands it `job` (with `how`'s fds), then the namespaces `namespaces`
    /// yields once the job is on its way (user first) to join; reaps it on any failure.
    fn launch(job: Job, how: Spawn, namespaces: impl FnOnce(&Stage1) -> Result<Vec<File>>) -> Result<Stage1> {
        let how_fds = how.fds;
        let stage = match how.fork_stdio {
            Some(stdio) if !how.sealed => Self::fork(stdio)?,
            _ => Self::start(how.stdin, how.output, how.sealed)?,
        };
        let joined = (|| {
            let job_fds: Vec<i32> = how_fds.iter().map(|f| f.as_raw_fd()).collect();
            stage.chan.send_fds(&Msg::Job(job), &job_fds)?;
            drop(how_fds);
            let ns = namespaces(&stage)?;
            let raw: Vec<i32> = ns.iter().map(|f| f.as_raw_fd()).collect();
            stage.chan.send_fds(&Msg::Join, &raw)
        })();
        match joined {
            Ok(()) => Ok(stage),
            Err(e) => {
                stage.reap();
                Err(e)
            }
        }
    }

    /// Starts a job in the namespaces of a running container whose PID 1 is `pid` on the host.
    /// Their id maps exist, so no holder and no setuid helper take part: stage 1 is moved into
    /// the container's cgroup (so whatever it forks starts there), then joins the namespaces
    /// ([`JOINED`], sent as fds: user first, pid last).
    pub fn join(pid: Pid, job: Job, how: Spawn) -> Result<Stage1> {
        // Opened before stage 1 exists: a container that is gone fails here, cheaply.
        let ns = open_namespaces(pid)?;
        Self::launch(job, how, |stage| {
            join_cgroup(pid, stage.pid())?;
            Ok(ns)
        })
    }

    /// The next message; the peer closing first is an error.
    pub fn expect_msg(&self) -> Result<Msg> {
        self.chan.recv()?.ok_or_else(|| anyhow!("the stage-1 process exited unexpectedly"))
    }

    /// Turns an unexpected or failure message into the error to report.
    pub fn fail(&self, msg: Msg) -> anyhow::Error {
        match msg {
            Msg::Failed { message, code, problem: Some(p) } if code == crate::hint::EXIT_RL_FAILED => {
                hinted(p, message)
            }
            Msg::Failed { message, code, .. } => ExitStatus { code, message }.into(),
            other => anyhow!("the stage-1 process sent an unexpected {other:?}"),
        }
    }

    /// Waits for the stage-1 process to exit.
    pub fn reap(self) {
        drop(self.chan);
        match self.process {
            StageProcess::Exec(mut c) => {
                let _ = c.wait();
            }
            StageProcess::Fork(p) => {
                let _ = nix::sys::wait::waitpid(p, None);
            }
        }
    }
}

/// The namespaces of a running container that [`Stage1::join`] enters, in order: user first (it
/// grants the capabilities joining the others needs), pid last (it applies only to the children
/// stage 1 forks afterwards).
pub const JOINED: [&str; 7] = ["user", "mnt", "uts", "ipc", "net", "cgroup", "pid"];

/// Opens the [`JOINED`] namespaces of `pid`, refusing a process in rl's own user namespace (a
/// pid reused by a process outside any container).
fn open_namespaces(pid: Pid) -> Result<Vec<File>> {
    let mut fds = Vec::with_capacity(JOINED.len());
    for name in JOINED {
        let path = format!("/proc/{pid}/ns/{name}");
        fds.push(File::open(&path).with_context(|| format!("open `{path}`"))?);
    }
    let ours = std::fs::metadata("/proc/self/ns/user").context("stat `/proc/self/ns/user`")?;
    let theirs = fds[0].metadata().with_context(|| format!("stat `/proc/{pid}/ns/user`"))?;
    if (ours.dev(), ours.ino()) == (theirs.dev(), theirs.ino()) {
        bail!("process {pid} is not in a container (it shares rl's user namespace)");
    }
    Ok(fds)
}

/// Moves process `mover` into the cgroup of `pid`, where it differs from rl's own. Without a
/// delegated cgroup the container runs where `rl run` was started (a login session's scope the
/// user may not move processes into): the process then stays in rl's cgroup, as the container
/// itself would have.
fn join_cgroup(pid: Pid, mover: u32) -> Result<()> {
    use crate::cgroup::cgroup_of;
    let Some(target) = cgroup_of(&pid.to_string()) else { return Ok(()) };
    if cgroup_of("self").as_deref() == Some(target.as_str()) {
        return Ok(());
    }
    let Some(dir) = crate::cgroup::Host::detect().path(&target) else { return Ok(()) };
    let procs = dir.join("cgroup.procs").display().to_string();
    let moved = std::fs::OpenOptions::new().write(true).open(&procs).and_then(|mut f| write!(f, "{mover}"));
    // A leaf of the container's own holds its limits: what runs there must too. Otherwise the
    // container is wherever its `rl run` was, which this process may not enter.
    let own_leaf = target.rsplit('/').next().is_some_and(|n| n.starts_with("rl-"));
    match moved {
        Ok(()) => Ok(()),
        Err(e)
            if !own_leaf
                && matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM | libc::EROFS | libc::ENOENT)) =>
        {
            Ok(())
        }
        Err(e) => Err(crate::hint::hinted(
            crate::hint::Problem::CgroupNotDelegated,
            format!("join the container's cgroup: write `{procs}`: {e} (run rl from a cgroup delegated to you)"),
        )),
    }
}

/// The container is running: its PID 1 on the host and, with `-t`, the pty master.
pub struct Running {
    pub stage: Stage1,
    pub pid: Pid,
    pub pty: Option<OwnedFd>,
    /// The PID 1 is this process's child ([`Job::Launch`]): stage 1 is exiting, and the exit
    /// comes from waiting for the PID 1, not from stage 1.
    pub adopted: bool,
    /// The network helpers: they end when this is dropped, so hold it while the container runs.
    pub net: Option<Box<Wiring>>,
}

/// Drives a `Job::Run` stage 1 until the payload has been exec'd: once the network helpers are
/// ready, tells the init it may exec (or why not).
pub fn wait_started(mut stage: Stage1) -> Result<Running> {
    let mut net = stage.net.take();
    if let Some(w) = net.as_mut() {
        let msg = match w.wait_ready() {
            Ok(()) => Msg::NetworkReady,
            Err(e) => Msg::Failed { message: format!("{e:#}"), code: crate::hint::EXIT_RL_FAILED, problem: None },
        };
        // An init that failed already reports that instead; the message then goes unread.
        let _ = stage.chan.send(&msg);
    }
    let mut pty = None;
    loop {
        let got = stage.chan.recv_fd()?;
        match got {
            Some((Msg::PtyMaster, fd)) => pty = fd,
            Some((Msg::Started { pid }, _)) => {
                return Ok(Running { stage, pid: Pid::from_raw(pid), pty, adopted: false, net })
            }
            Some((Msg::HandedOver { pid }, _)) => {
                return Ok(Running { stage, pid: Pid::from_raw(pid), pty, adopted: true, net })
            }
            Some((other, _)) => {
                let err = stage.fail(other);
                stage.reap();
                return Err(err);
            }
            None => {
                stage.reap();
                bail!("the stage-1 process exited before the container started");
            }
        }
    }
}
