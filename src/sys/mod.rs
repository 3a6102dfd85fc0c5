//! The only module with `unsafe`: thin wrappers over syscalls that nix does not wrap safely.
//!
//! Every other module calls these functions; each `unsafe` block names the invariant that makes
//! it sound. Keep this file small: when nix grows a safe wrapper, use it and delete the one here.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::Signal;
use nix::unistd::Pid;

mod idle;
pub use idle::{release_free_heap, release_then_poll};

/// What a spawned helper or stage process gets between `fork` and `exec`.
#[derive(Debug, Default, Clone)]
pub struct PreExec {
    /// `(from, to)`: `from` is duplicated onto `to` without `O_CLOEXEC`.
    pub fds: Vec<(RawFd, RawFd)>,
    /// Signal delivered when the spawning thread dies (prctl `PR_SET_PDEATHSIG`).
    pub death_signal: Option<Signal>,
    /// Start a new session, detaching from the controlling terminal.
    pub setsid: bool,
    /// Unblock every signal: a spawner that waits for signals in a signalfd has them blocked,
    /// and exec keeps the mask (a helper would never see its SIGTERM).
    pub unblock_signals: bool,
}

/// Installs `pre` as the `pre_exec` hook of `cmd`.
pub fn set_pre_exec(cmd: &mut Command, pre: PreExec) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec; it only makes async-signal-safe
    // calls (dup3, fcntl, sigemptyset, sigprocmask, prctl, getppid, setsid) on plain integers and
    // a stack sigset_t it owns, allocates nothing and touches no lock.
    unsafe {
        cmd.pre_exec(move || {
            for &(from, to) in &pre.fds {
                if from == to {
                    let flags = libc::fcntl(from, libc::F_GETFD);
                    if flags < 0 || libc::fcntl(from, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                } else if libc::dup3(from, to, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if pre.unblock_signals {
                let mut none: libc::sigset_t = std::mem::zeroed();
                if libc::sigemptyset(&mut none) < 0
                    || libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut()) < 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            if pre.setsid && libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(sig) = pre.death_signal {
                if libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong, 0, 0, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
            }
            Ok(())
        });
    }
}

/// `fork(2)`; only ever called from single-threaded processes (stage 1, the init, the monitor).
pub fn fork() -> nix::Result<nix::unistd::ForkResult> {
    // SAFETY: callers are the stage-1 process, the container init and the detached monitor,
    // which never start threads, so the child cannot inherit a lock held by another thread.
    unsafe { nix::unistd::fork() }
}

/// `fd`, or a close-on-exec copy of it numbered 3 or above when it sits on a stdio number: an fd
/// handed to a child by number must not be one the child's stdio replaces (an rl started with
/// stdin closed gets its first new fd on 0).
pub fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let n = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: n is the fresh fd F_DUPFD_CLOEXEC just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// A close-on-exec copy of `fd` numbered `min` or above.
pub fn dup_above(fd: std::os::fd::BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    let n = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(min))?;
    // SAFETY: n is the fresh fd F_DUPFD_CLOEXEC just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

/// Sets or clears close-on-exec on `fd`.
pub fn set_cloexec(fd: std::os::fd::BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let flags = if on { libc::FD_CLOEXEC } else { 0 };
    // SAFETY: F_SETFD on a borrowed, open fd only changes its flags.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, flags) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Puts `fd` on the number `to` (dup3 then close the original, unless it is `to` already),
/// leaving it open across exec as an inherited fd is.
pub fn move_fd(fd: OwnedFd, to: RawFd) -> io::Result<()> {
    if fd.as_raw_fd() == to {
        // SAFETY: F_SETFD on an fd we own only changes its flags.
        if unsafe { libc::fcntl(to, libc::F_SETFD, 0) } < 0 {
            return Err(io::Error::last_os_error());
        }
        std::mem::forget(fd);
        return Ok(());
    }
    // SAFETY: dup3 onto `to` replaces whatever was there; callers own that number (a freshly
    // forked child arranging its fds before it runs anything else).
    if unsafe { libc::dup3(fd.as_raw_fd(), to, 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Forks a child of this process's parent (`clone(2)` with `CLONE_PARENT`), so stage 1 can hand
/// the container init to the detached monitor and exit. Like `fork`, the child runs on a copy of
/// the caller's stack; unlike glibc's `fork`, no atfork handlers run and glibc's thread
/// descriptor keeps the caller's tid — the child only runs rl's init code, which takes no
/// pthread locks and never calls `raise`. Single-threaded callers only (stage 1).
pub fn fork_sibling() -> nix::Result<nix::unistd::ForkResult> {
    // SAFETY: a raw clone without CLONE_VM or a new stack behaves as fork(2): the child gets a
    // copy-on-write copy of the whole address space, stack included, and returns 0 here. The
    // caller is single-threaded, so no lock can be held by a thread missing in the child.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match r {
        -1 => Err(nix::errno::Errno::last()),
        0 => Ok(nix::unistd::ForkResult::Child),
        pid => Ok(nix::unistd::ForkResult::Parent { child: nix::unistd::Pid::from_raw(pid as i32) }),
    }
}

/// Marks every fd from `first` upward close-on-exec (`close_range(2)` with `CLOSE_RANGE_CLOEXEC`),
/// so an exec failure can still be reported on a kept fd while nothing leaks into the payload.
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range only changes fd flags; it takes no pointers.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Closes every fd from `first` upward (`close_range(2)`), in a process that keeps running rl
/// code: the caller must own none of them any more.
pub fn close_from(first: RawFd) -> io::Result<()> {
    // SAFETY: close_range takes no pointers; callers have dropped or forgotten every owned fd at
    // or above `first` (the init has only stdio left to use).
    let r =
        unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, libc::c_uint::MAX, 0 as libc::c_uint) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `pidfd_open(2)`: an fd that polls readable once `pid` has exited.
pub fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall on integers; on success the kernel returns a new fd we own.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: r is a freshly opened fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Resets every catchable signal to its default disposition (the payload must not inherit rl's
/// ignored SIGPIPE or handlers).
pub fn reset_signal_dispositions() {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: installing SIG_DFL involves no handler code; failures for invalid numbers are
        // harmless and ignored.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
}

/// Capability sets as the kernel's `capget`/`capset` v3 structures see them (two u32 words).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
}

/// `capset(2)` on the calling thread.
pub fn capset(sets: CapSets) -> io::Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header { version: VERSION_3, pid: 0 };
    let split = |v: u64| (v as u32, (v >> 32) as u32);
    let (e0, e1) = split(sets.effective);
    let (p0, p1) = split(sets.permitted);
    let (i0, i1) = split(sets.inheritable);
    let data = [
        Data { effective: e0, permitted: p0, inheritable: i0 },
        Data { effective: e1, permitted: p1, inheritable: i1 },
    ];
    // SAFETY: header and data are valid, properly sized v3 structures that outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Drops capability `cap` from the bounding set (`PR_CAPBSET_DROP`).
pub fn capbset_drop(cap: u8) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether `cap` is known to the running kernel (`PR_CAPBSET_READ` fails with EINVAL otherwise).
pub fn cap_supported(cap: u8) -> bool {
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_CAPBSET_READ, cap as libc::c_ulong, 0, 0, 0) >= 0 }
}

/// Clears the ambient capability set.
pub fn clear_ambient_caps() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let r = unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

nix::ioctl_write_int_bad!(tiocsctty, libc::TIOCSCTTY);
nix::ioctl_read_bad!(tiocgwinsz, libc::TIOCGWINSZ, libc::winsize);
nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);

/// Makes the terminal on `fd` the controlling terminal of the calling session leader.
pub fn set_controlling_tty(fd: RawFd) -> nix::Result<()> {
    // SAFETY: TIOCSCTTY takes an integer argument; fd validity is checked by the kernel.
    unsafe { tiocsctty(fd, 0) }.map(drop)
}

/// Window size of the terminal on `fd`, or None if it is not a terminal.
pub fn window_size(fd: RawFd) -> Option<libc::winsize> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: ws is a valid winsize the kernel writes into.
    unsafe { tiocgwinsz(fd, &mut ws) }.ok().map(|_| ws)
}

/// Sets the window size of the terminal on `fd`.
pub fn set_window_size(fd: RawFd, ws: &libc::winsize) -> nix::Result<()> {
    // SAFETY: ws points to a valid winsize for the duration of the call.
    unsafe { tiocswinsz(fd, ws) }.map(drop)
}

/// `_exit(2)`: leaves a forked child without running the parent's atexit handlers or flushing
/// buffers it shares with the parent.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no Rust state.
    unsafe { libc::_exit(code) }
}

/// Whether `path` carries the extended attribute `name` (e.g. `security.capability`).
pub fn has_xattr(path: &std::path::Path, name: &str) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let (Ok(p), Ok(n)) = (std::ffi::CString::new(path.as_os_str().as_bytes()), std::ffi::CString::new(name)) else {
        return false;
    };
    // SAFETY: both strings are valid NUL-terminated C strings; a null buffer of size 0 only asks
    // for the value's length.
    unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) > 0 }
}

/// Takes ownership of an fd number this process was handed (inherited across exec, or received
/// with SCM_RIGHTS), after checking it is open, and marks it close-on-exec.
pub fn adopt_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: fcntl on an integer; F_SETFD fails with EBADF if the fd is not open.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open, and callers hand over numbers nothing else in the process owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

extern "C" fn noop_handler(_: libc::c_int) {}

/// Installs a handler that does nothing for each of `signals`. The container init needs one: the
/// kernel drops signals sent to a PID 1 that has the default disposition (pid_namespaces(7)),
/// even while they are blocked for a signalfd.
pub fn install_noop_handlers(signals: &[Signal]) -> nix::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let action = SigAction::new(SigHandler::Handler(noop_handler), SaFlags::SA_RESTART, SigSet::empty());
    for &sig in signals {
        // SAFETY: the handler is async-signal-safe (it does nothing).
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

/// Wraps an fd opened from a devpts `ptmx` as a pty master.
pub fn pty_master(fd: OwnedFd) -> nix::pty::PtyMaster {
    // SAFETY: callers pass an fd they just opened on a `ptmx` device node, which is what
    // PtyMaster requires.
    unsafe { nix::pty::PtyMaster::from_owned_fd(fd) }
}

/// A forked child that has unshared namespaces and holds them until released.
pub struct NsHolder {
    pub pid: Pid,
    /// Closing this releases the holder, which then exits.
    pub release: OwnedFd,
    /// Where it reports the other namespaces: [`NsHolder::rest_ready`].
    rest: OwnedFd,
}

/// Forks a child that unshares `flags` (which must include `CLONE_NEWUSER`; with `join_user`,
/// it joins that user namespace instead of making one, and makes the others in it), makes its mounts
/// private (with `CLONE_NEWNS`), brings up loopback (with `CLONE_NEWNET`), and then waits to be
/// released, holding the namespaces for the id-map helpers and for stage 1 to join. Returns
/// once the user namespace exists, or the errno that refused it; the others follow
/// ([`NsHolder::rest_ready`]).
///
/// Between fork and exit the child makes only raw, async-signal-safe syscalls, so this is
/// sound even while the parent runs other threads.
pub fn fork_ns_holder(
    flags: libc::c_int,
    join_user: Option<std::os::fd::BorrowedFd<'_>>,
) -> io::Result<Result<NsHolder, nix::errno::Errno>> {
    let join_user = join_user.map(|fd| fd.as_raw_fd());
    let mut ready = [0 as libc::c_int; 2];
    let mut hold = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into each valid two-element array.
    unsafe {
        if libc::pipe2(ready.as_mut_ptr(), libc::O_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::pipe2(hold.as_mut_ptr(), libc::O_CLOEXEC) < 0 {
            let e = io::Error::last_os_error();
            libc::close(ready[0]);
            libc::close(ready[1]);
            return Err(e);
        }
    }
    // SAFETY: these four fds were just created and are owned by nobody else.
    let (ready_r, ready_w, hold_r, hold_w) = unsafe {
        (
            OwnedFd::from_raw_fd(ready[0]),
            OwnedFd::from_raw_fd(ready[1]),
            OwnedFd::from_raw_fd(hold[0]),
            OwnedFd::from_raw_fd(hold[1]),
        )
    };
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the child branch below only makes async-signal-safe syscalls on integers and
    // stack buffers, then _exits; it never returns into Rust code, allocates or takes locks.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: see above; every pointer is to a live stack value.
        unsafe {
            // Our copies of the parent's ends: the release pipe must see EOF when the parent
            // closes its end.
            libc::close(hold_w.as_raw_fd());
            libc::close(ready_r.as_raw_fd());
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0);
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            let private = |flags: libc::c_int| {
                flags & libc::CLONE_NEWNS == 0
                    || libc::mount(
                        std::ptr::null(),
                        c"/".as_ptr(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) == 0
            };
            let loopback = |flags: libc::c_int| {
                if flags & libc::CLONE_NEWNET == 0 {
                    return true;
                }
                let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
                let mut req: libc::ifreq = std::mem::zeroed();
                req.ifr_name[0] = b'l' as libc::c_char;
                req.ifr_name[1] = b'o' as libc::c_char;
                if sock < 0 || libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
                    return false;
                }
                req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
                libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) == 0
            };
            let report = |ok: bool| {
                let err: libc::c_int = if ok { 0 } else { *libc::__errno_location() };
                let bytes = err.to_ne_bytes();
                libc::write(ready_w.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
                ok
            };
            // The user namespace first, reported at once: the id-map helpers need only it, and
            // run while the others (a network namespace takes a millisecond) are made in it.
            let rest = flags & !libc::CLONE_NEWUSER;
            let user = match join_user {
                // A mapped namespace of the user's: its owner holds every capability in it.
                Some(fd) => libc::setns(fd, libc::CLONE_NEWUSER) == 0,
                None => libc::unshare(libc::CLONE_NEWUSER) == 0,
            };
            if report(user) {
                report(libc::unshare(rest) == 0 && private(flags) && loopback(flags));
            }
            let mut b = 0u8;
            // Blocks until the parent closes its end (or dies).
            libc::read(hold_r.as_raw_fd(), (&mut b as *mut u8).cast(), 1);
            libc::_exit(0);
        }
    }
    drop(ready_w);
    drop(hold_r);
    let pid = Pid::from_raw(pid);
    let errno = read_errno(&ready_r)?;
    if errno != 0 {
        drop(hold_w);
        let _ = nix::sys::wait::waitpid(pid, None);
        return Ok(Err(nix::errno::Errno::from_raw(errno)));
    }
    Ok(Ok(NsHolder { pid, release: hold_w, rest: ready_r }))
}

/// One errno the holder reports (0: done); ECHILD when it died first.
fn read_errno(from: &OwnedFd) -> io::Result<libc::c_int> {
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match nix::unistd::read(from, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(if got == 4 { i32::from_ne_bytes(buf) } else { libc::ECHILD })
}

impl NsHolder {
    /// Waits until the holder made the namespaces other than the user namespace (which exists
    /// once [`fork_ns_holder`] returns), or the errno that refused them.
    pub fn rest_ready(&self) -> io::Result<Result<(), nix::errno::Errno>> {
        Ok(match read_errno(&self.rest)? {
            0 => Ok(()),
            e => Err(nix::errno::Errno::from_raw(e)),
        })
    }
}

/// Sets the extended attribute `name` to `value` on `path` without following a final symlink
/// (`lsetxattr(2)`).
pub fn lset_xattr(path: &std::path::Path, name: &str, value: &[u8]) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let p =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let n = std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: both strings are valid and NUL-terminated; value is a live slice of value.len() bytes.
    let r = unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Lists the extended attribute names of `path` without following a final symlink.
pub fn llist_xattrs(path: &std::path::Path) -> io::Result<Vec<String>> {
    use std::os::unix::ffi::OsStrExt;
    let p =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: p is a valid C string and buf a live, writable buffer of buf.len() bytes.
        let r = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            break;
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || buf.len() > 1 << 20 {
            return Err(e);
        }
        buf.resize(buf.len() * 4, 0);
    }
    Ok(buf.split(|&b| b == 0).filter(|n| !n.is_empty()).map(|n| String::from_utf8_lossy(n).into_owned()).collect())
}

/// Reads the extended attribute `name` of `path` without following a final symlink.
pub fn lget_xattr(path: &std::path::Path, name: &str) -> io::Result<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p =
        std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let n = std::ffi::CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: valid C strings; buf is a live, writable buffer of buf.len() bytes.
        let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if r >= 0 {
            buf.truncate(r as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || buf.len() > 1 << 20 {
            return Err(e);
        }
        buf.resize(buf.len() * 4, 0);
    }
}
