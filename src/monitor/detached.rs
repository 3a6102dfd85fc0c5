//! The monitor of a detached container (`rl run -d`, `rl start`): rl itself, re-exec'd as
//! `rl __monitor ROOT RUNROOT ID` in a session of its own, so it outlives the `rl` command that
//! started it and no daemon is needed. It starts the container through stage 1 (whose
//! parent-death signal makes a killed monitor take the container down with it, never leaving it
//! unwatched), owns the container's output pipes or pty master and writes them to the log,
//! records the exit code and time in the container's state, and applies the restart policy.
//!
//! It tells the `rl` that launched it how the start went on a pipe (fd 3). Whenever it goes
//! idle — a second without events, the first one after the start — it drops its resident
//! code before it waits (see [`super::idle_poll`]): one monitor per container must stay small
//! (the target is 600 KB; conmon takes ~2.5 MB).

use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use serde::{Deserialize, Serialize};

use super::log::{Stream, Writer};
use super::Exit;
use crate::config::ContainerConfig;
use crate::hint::{hinted, ExitStatus, Problem, EXIT_RL_FAILED};
use crate::sandbox::msg::{Job, Msg};
use crate::sandbox::parent::{self, Spawn, Stage1};
use crate::state::{self, Status};
use crate::store::Paths;
use crate::sys;

/// Where the monitor reports how the start went.
const READY_FD: RawFd = 3;

/// The monitor's report to the `rl` that launched it.
#[derive(Debug, Serialize, Deserialize)]
enum Ready {
    Running,
    Failed { message: String, code: i32, problem: Option<Problem> },
}

/// Starts the monitor of the container `id` (its record exists) and returns once the container
/// runs, or with the error that kept it from starting; `meanwhile` runs while the monitor
/// starts it.
pub fn launch(paths: &Paths, id: &str, meanwhile: impl FnOnce() -> Result<()>) -> Result<()> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create the monitor's ready pipe")?;
    let w = sys::above_stdio(w).context("move the ready pipe")?;
    let mut cmd = Command::new("/proc/self/exe");
    cmd.arg0("rl-monitor")
        .arg("__monitor")
        .arg(&paths.root)
        .arg(&paths.runroot)
        .arg(id)
        .arg(w.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // The report pipe is inherited under its own number, and the monitor makes its session
    // itself: without a pre-exec step, std spawns through posix_spawn (vfork), sparing this
    // process a fork of its whole address space on every start.
    sys::set_cloexec(w.as_fd(), false).context("hand the ready pipe to the monitor")?;
    // Not waited for: it outlives this process and is then reaped by init (or the session's
    // subreaper), like any daemon's child.
    let spawned = cmd.spawn().context("start the container's monitor");
    drop(w);
    let _child = spawned?;
    let ours = meanwhile();
    let mut report = Vec::new();
    std::fs::File::from(r).read_to_end(&mut report).context("read the monitor's report")?;
    match serde_json::from_slice::<Ready>(&report) {
        Ok(Ready::Running) => ours,
        Ok(Ready::Failed { message, problem: Some(p), code }) if code == EXIT_RL_FAILED => Err(hinted(p, message)),
        Ok(Ready::Failed { message, code, .. }) => Err(ExitStatus { code, message }.into()),
        Err(_) => bail!("the container's monitor ended before the container started"),
    }
}

/// `rl __monitor ROOT RUNROOT ID`.
pub fn main(args: &[std::ffi::OsString]) -> i32 {
    let _ = nix::sys::prctl::set_name(c"rl-monitor");
    let internal = || {
        eprintln!("Error: rl __monitor is internal: run `rl run -d` or `rl start` instead");
        EXIT_RL_FAILED
    };
    let [root, runroot, id, fd] = args else { return internal() };
    let Some(ready) = fd.to_str().and_then(|f| f.parse().ok()).and_then(|f| sys::adopt_fd(f).ok()) else {
        return internal();
    };
    // On READY_FD, and nothing else open: whatever the caller's caller left open (a shell's
    // pipe, a CI runner's fd) would be held for the container's whole life, and a
    // `$(rl run -d …)` reading such a pipe would never end. A session of its own, so the
    // user's terminal signals never reach it.
    if sys::move_fd(ready, READY_FD).is_err()
        || sys::close_from(READY_FD + 1).is_err()
        || nix::unistd::setsid().is_err()
    {
        return EXIT_RL_FAILED;
    }
    let Ok(ready) = sys::adopt_fd(READY_FD) else { return EXIT_RL_FAILED };
    let paths = Paths { root: PathBuf::from(root), runroot: PathBuf::from(runroot) };
    let id = id.to_string_lossy().into_owned();
    let mut ready = Some(ready);
    match monitor(&paths, &id, &mut ready) {
        Ok(()) => 0,
        Err(e) => {
            let message = format!("{e:#}");
            if let Some(fd) = ready.take() {
                let problem = e.chain().find_map(|c| c.downcast_ref::<crate::hint::Hinted>()).map(|h| h.problem);
                let code = e.chain().find_map(|c| c.downcast_ref::<ExitStatus>()).map_or(EXIT_RL_FAILED, |s| s.code);
                report(fd, &Ready::Failed { message: message.clone(), code, problem });
            }
            if let Ok(mut st) = state::load(&paths, &id) {
                st.status = Status::Exited;
                st.pid = None;
                st.error = Some(message);
                st.finished_ns.get_or_insert_with(state::now_ns);
                let _ = state::save(&paths, &id, &st);
            }
            EXIT_RL_FAILED
        }
    }
}

fn report(fd: OwnedFd, r: &Ready) {
    if let Ok(json) = serde_json::to_vec(r) {
        let _ = std::io::Write::write_all(&mut std::fs::File::from(fd), &json);
    }
}

/// Starts the container, watches it, restarts it as its policy says; returns when it is done.
fn monitor(paths: &Paths, id: &str, ready: &mut Option<OwnedFd>) -> Result<()> {
    let load = || -> Result<ContainerConfig> {
        let p = paths.container(id).join("config.json");
        let b = std::fs::read(&p).with_context(|| format!("read `{}`", p.display()))?;
        serde_json::from_slice(&b).with_context(|| format!("parse `{}`", p.display()))
    };
    let mut cfg = load()?;
    let me = std::process::id() as i32;
    let mut log = Writer::open(&paths.container(id), cfg.log)?;
    let mut first = true;
    loop {
        // A restart takes what changed since (`rl update`'s limits, `network connect`).
        if !std::mem::take(&mut first) {
            cfg = load()?;
        }
        let (exit, oom) = run_once(paths, &cfg, &mut log, ready, me)?;
        let mut st = state::load(paths, id)?;
        st.status = Status::Exited;
        st.pid = None;
        st.cgroup = None;
        st.oom_killed = oom;
        st.exit_code = Some(exit.status());
        st.finished_ns = Some(state::now_ns());
        let again = cfg.restart.restarts(exit.status(), st.restart_count, st.stopped);
        if again {
            st.restart_count += 1;
        }
        state::save(paths, id, &st)?;
        if !again {
            break;
        }
    }
    if cfg.remove {
        // Stage 1 removed the writable layer (files of subordinate ids) when it waited for the
        // init; a handed-over init leaves it to a removal in the namespace.
        if cfg.dirs.upper.exists() {
            let _ = crate::lifecycle::remove(paths, &cfg);
        } else {
            let _ = crate::sandbox::remove_tree(&paths.container(id));
        }
        state::release_name(paths, &cfg.name, id);
        let _ = crate::sandbox::remove_tree(&cfg.dirs.run);
    }
    Ok(())
}

/// One start of the container, to its exit; and whether the OOM killer struck.
fn run_once(
    paths: &Paths,
    cfg: &ContainerConfig,
    log: &mut Writer,
    ready: &mut Option<OwnedFd>,
    me: i32,
) -> Result<(Exit, bool)> {
    crate::cli::run::prepare_dirs(cfg)?;
    let listener = super::attach::listen(&cfg.dirs.run)?;
    let (out_r, out_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create the stdout pipe")?;
    let (err_r, err_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create the stderr pipe")?;
    // `-i` without a pty: the container reads a pipe that attached clients write to.
    let (stdin, input): (OwnedFd, Option<OwnedFd>) = if cfg.process.stdin && !cfg.process.tty {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("create the stdin pipe")?;
        (r, Some(w))
    } else {
        (std::fs::File::open("/dev/null").context("open /dev/null")?.into(), None)
    };
    let share_userns = Some(paths.runroot.clone());
    let network = Some(crate::network::wiring::prepare(paths, cfg)?);
    let how = match cfg.process.init {
        // The `--init` PID 1 stays rl: stage 1 (which forks it) runs from a sealed copy.
        true => Spawn {
            stdin: Stdio::from(stdin),
            sealed: true,
            output: Some((Stdio::from(out_w), Stdio::from(err_w))),
            share_userns,
            network,
            ..Spawn::default()
        },
        // This process is single-threaded: stage 1 is forked, not loaded again.
        false => Spawn { fork_stdio: Some([stdin, out_w, err_w]), share_userns, network, ..Spawn::default() },
    };
    // The container's cgroup exists, limits written, before any of its processes does.
    let leaf = crate::cgroup::for_start(&cfg.id, &cfg.resources, cfg.ignore_limits)?;
    let job = ContainerConfig { cgroup: leaf.as_ref().map(|l| l.dir.clone()), ..cfg.clone() };
    let started = Stage1::spawn(&cfg.idmap, Job::Launch(Box::new(job)), how, || Ok(())).and_then(parent::wait_started);
    // The network helpers end with `net`, when this start ends.
    let parent::Running { stage, pid, pty, adopted, net } = match started {
        Ok(r) => r,
        Err(e) => {
            if let Some(l) = &leaf {
                crate::cgroup::finish(l, &cfg.name);
            }
            return Err(e);
        }
    };
    // Stage 1 handed the init over (the kernel overlay) and is exiting, or stays to wait for it
    // (fuse-overlayfs) and reports the exit.
    let waiter = match adopted {
        true => {
            stage.reap();
            Waiter::Child(sys::pidfd_open(pid).context("pidfd_open the container's PID 1")?, pid)
        }
        false => Waiter::Stage(stage),
    };
    let mut st = state::load(paths, &cfg.id)?;
    st.status = Status::Running;
    st.pid = Some(pid.as_raw());
    st.started_ns = Some(state::now_ns());
    st.monitor_pid = Some(me);
    st.monitor_start = state::start_time(me);
    st.exit_code = None;
    st.error = None;
    st.network = net.as_ref().map(|n| n.attached.clone());
    st.cgroup = leaf.as_ref().map(|l| l.rel.clone());
    st.oom_killed = false;
    // On the run root's tmpfs before the report, so every command after `run -d` sees it
    // running; in the record after it (off the start's path, without fsync: after a crash
    // "running" only means the container once ran), so a reboot that empties the run root
    // leaves a record that reads exited. The exit is written durably.
    state::save_running(paths, &cfg.id, &st)?;
    if let Some(fd) = ready.take() {
        report(fd, &Ready::Running);
    }
    state::save_as(paths, &cfg.id, &st, false)?;
    // With a pty, the master carries both streams (as a terminal merges them) and the input.
    let (sources, input): (Vec<(OwnedFd, Stream)>, Option<OwnedFd>) = match pty.as_ref() {
        Some(m) => (
            vec![(m.try_clone().context("dup the pty master")?, Stream::Stdout)],
            Some(m.try_clone().context("dup the pty master")?),
        ),
        None => (vec![(out_r, Stream::Stdout), (err_r, Stream::Stderr)], input),
    };
    let mut clients = super::attach::Clients::new(listener, input, pty.is_some());
    let mut prober = cfg.health.as_ref().map(|h| super::health::Prober::new(paths, &cfg.id, h));
    let exit = watch(&waiter, sources, log, &mut clients, &mut prober)?;
    drop(prober);
    drop(clients);
    let _ = std::fs::remove_file(super::attach::socket_path(&cfg.dirs.run));
    match waiter {
        Waiter::Stage(stage) => stage.reap(),
        // What stage 1 would have removed: the runtime dir (the rootfs mount went with the
        // init's mount namespace).
        Waiter::Child(..) => {
            let _ = crate::sandbox::remove_tree(&cfg.dirs.run);
        }
    }
    Ok((exit, leaf.as_ref().is_some_and(|l| crate::cgroup::finish(l, &cfg.name))))
}

/// Where the container's exit comes from.
enum Waiter {
    /// Stage 1 waits for the init and reports its exit on the sync socket.
    Stage(Stage1),
    /// The init is our child: its pidfd, readable once it exited, and its pid to reap.
    Child(OwnedFd, nix::unistd::Pid),
}

impl Waiter {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        match self {
            Waiter::Stage(s) => s.chan.as_fd(),
            Waiter::Child(fd, _) => fd.as_fd(),
        }
    }

    /// The exit, once [`Self::fd`] is readable.
    fn exit(&self) -> Result<Exit> {
        match self {
            Waiter::Stage(s) => Ok(match s.chan.recv()? {
                Some(Msg::Exited { code, signal }) => Exit { code, signal },
                Some(other) => return Err(anyhow!("the stage-1 process sent an unexpected {other:?}")),
                None => Exit { code: None, signal: None },
            }),
            Waiter::Child(_, pid) => loop {
                match nix::sys::wait::waitpid(*pid, None) {
                    Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => {
                        break Ok(Exit { code: Some(code), signal: None })
                    }
                    Ok(nix::sys::wait::WaitStatus::Signaled(_, sig, _)) => {
                        break Ok(Exit { code: None, signal: Some(sig as i32) })
                    }
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => break Err(e).context("wait for the container's PID 1"),
                }
            },
        }
    }
}

/// How long the monitor stays without events before it releases its code again.
const IDLE_MS: u16 = 1000;

/// The earlier of a poll timeout and `ms`.
fn shorter(t: PollTimeout, ms: u16) -> PollTimeout {
    match i32::from(t) {
        m if (0..i32::from(ms)).contains(&m) => t,
        _ => PollTimeout::from(ms),
    }
}

/// Logs the container's output until stage 1 reports its exit and the streams end.
fn watch(
    waiter: &Waiter,
    sources: Vec<(OwnedFd, Stream)>,
    log: &mut Writer,
    clients: &mut super::attach::Clients,
    prober: &mut Option<super::health::Prober>,
) -> Result<Exit> {
    let mut open: Vec<Option<(OwnedFd, Stream)>> = sources.into_iter().map(Some).collect();
    let mut exit = None;
    let mut buf = vec![0u8; 16384];
    // Idle: no event for IDLE_MS since the code was last released. Not at first: the release
    // (reading /proc/self/smaps) would compete with the user's next command, often another
    // start; a second later it does not.
    let mut idle = false;
    loop {
        if exit.is_some() && open.iter().all(Option::is_none) {
            break;
        }
        let mut fds = Vec::new();
        if exit.is_none() {
            fds.push(PollFd::new(waiter.fd(), PollFlags::POLLIN));
        }
        let live: Vec<usize> = (0..open.len()).filter(|&i| open[i].is_some()).collect();
        for &i in &live {
            if let Some((fd, _)) = &open[i] {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
        }
        if let Some(fd) = prober.as_ref().and_then(|p| p.pidfd()) {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        let first_client = fds.len();
        clients.poll_fds(&mut fds);
        // After the exit, output still in flight is drained; a process the container left
        // behind that keeps a stream open must not keep the monitor forever.
        let timeout = match (exit.is_some(), prober.as_ref()) {
            (true, _) => PollTimeout::from(2000u16),
            (false, Some(p)) => PollTimeout::try_from(p.wait_ms().min(60_000) as i32).unwrap_or(PollTimeout::MAX),
            (false, None) => PollTimeout::NONE,
        };
        // After events, wait at most IDLE_MS before releasing the code they ran.
        let busy = exit.is_none() && !idle;
        let polled = match (exit.is_none() && idle, busy) {
            (true, _) => super::idle_poll(&mut fds, timeout),
            (false, true) => poll(&mut fds, shorter(timeout, IDLE_MS)),
            (false, false) => poll(&mut fds, timeout),
        };
        match polled {
            Ok(0) if exit.is_some() => break,
            Ok(0) => idle = true,
            Ok(_) | Err(Errno::EINTR) => idle = false,
            Err(e) => return Err(e).context("wait for the container"),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        clients.handle(&ready[first_client..]);
        if exit.is_none() {
            if let Some(p) = prober.as_mut() {
                p.tick();
            }
        }
        let mut k = 0;
        if exit.is_none() {
            if ready[0] {
                exit = Some(waiter.exit()?);
            }
            k = 1;
        }
        for (j, &i) in live.iter().enumerate() {
            if !ready[k + j] {
                continue;
            }
            let Some((fd, stream)) = &open[i] else { continue };
            match nix::unistd::read(fd.as_fd(), &mut buf) {
                Ok(0) | Err(Errno::EIO) => open[i] = None,
                Ok(n) => {
                    log.write(*stream, &buf[..n], state::now_ns())?;
                    clients.send(*stream, &buf[..n]);
                }
                Err(Errno::EINTR | Errno::EAGAIN) => {}
                Err(e) => return Err(e).context("read the container's output"),
            }
        }
    }
    Ok(exit.unwrap_or(Exit { code: None, signal: None }))
}
