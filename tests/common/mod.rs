//! Shared setup for the integration tests that run real containers with `rl run --rootfs`.
//!
//! scripts/test.sh builds the tests as root and runs them as an unprivileged user with
//! `RL_BIN`, `RL_TEST_ROOTFS` (a busybox rootfs owned by that user), `XDG_RUNTIME_DIR` and a
//! private `TMPDIR`. Every test gets its own store (`--root`) and run dir (`--runroot`) in a
//! temp dir, so tests can run in parallel. A test that cannot run on this host prints
//! `skipped: <reason>`; with `RL_TEST_REQUIRE=1` (CI) it fails instead, because CI's host must
//! be able to run all of them.
//!
//! Waiting is always for a condition (a line on stdout, a process appearing or gone, EOF) with a
//! deadline, never a fixed sleep: the deadline only turns a hang into a failure that shows
//! everything rl printed.
#![allow(dead_code)]

mod fault_proxy;
mod own_registry;
mod procs;
mod running;
mod terminal;
mod token_server;

#[allow(unused_imports)] // only the tests of a misbehaving registry use it
pub use fault_proxy::*;
#[allow(unused_imports)] // only the tests that start their own registry use it
pub use own_registry::*;
pub use procs::*;
pub use running::*;
#[allow(unused_imports)] // only the tests that drive a pty use it
pub use terminal::*;
#[allow(unused_imports)] // only the token auth tests use it
pub use token_server::*;

use std::env;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

/// How long any single wait may take before the test fails instead of hanging.
pub const TIMEOUT: Duration = Duration::from_secs(60);
/// Interval of the poll loops on /proc; they wait for a condition, not for time to pass.
pub(crate) const POLL: Duration = Duration::from_millis(10);

/// Podman's default capability set: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID,
/// SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, SETFCAP.
pub const DEFAULT_CAPS: u64 = 0x0000_0000_8004_05fb;

pub fn rl_bin() -> PathBuf {
    env::var_os("RL_BIN").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_rl")))
}

/// The running test's name, as the harness names its thread.
pub fn test_name() -> String {
    thread::current().name().unwrap_or("test").to_string()
}

/// Written straight to stderr so the harness does not swallow it.
pub fn say(line: &str) {
    let _ = writeln!(io::stderr(), "{}: {line}", test_name());
}

/// True when the test can run. Otherwise prints `skipped: <reason>` and returns false, or
/// fails the test when `RL_TEST_REQUIRE=1`.
pub fn require(cond: bool, reason: &str) -> bool {
    if cond {
        return true;
    }
    if env::var("RL_TEST_REQUIRE").as_deref() == Ok("1") {
        panic!("cannot run here but RL_TEST_REQUIRE=1: {reason}");
    }
    say(&format!("skipped: {reason}"));
    false
}

pub fn uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

pub fn gid() -> u32 {
    nix::unistd::getgid().as_raw()
}

pub fn username() -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.name)
}

/// The first range of the current user in /etc/subuid or /etc/subgid: (start, count).
pub fn subids(file: &str) -> Option<(u32, u32)> {
    let text = fs::read_to_string(file).ok()?;
    let name = username();
    let id = uid().to_string();
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.trim().split(':').collect();
        if f.len() != 3 || !(Some(f[0]) == name.as_deref() || f[0] == id) {
            return None;
        }
        Some((f[1].parse().ok()?, f[2].parse().ok()?))
    })
}

pub fn has_subids() -> bool {
    subids("/etc/subuid").is_some() && subids("/etc/subgid").is_some()
}

pub fn fuse_usable() -> bool {
    fs::OpenOptions::new().read(true).write(true).open("/dev/fuse").is_ok()
}

/// `which`, over this process's PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false))
}

/// Parses /proc/PID/{uid,gid}_map text into triples.
pub fn parse_id_map(text: &str) -> Vec<[u64; 3]> {
    text.lines()
        .filter_map(|l| {
            let v: Vec<u64> = l.split_whitespace().filter_map(|w| w.parse().ok()).collect();
            (v.len() == 3).then(|| [v[0], v[1], v[2]])
        })
        .collect()
}

/// A field of /proc/PID/status, e.g. `status_field(text, "CapEff")`.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':').map(str::trim))
}

pub fn status_hex(status: &str, key: &str) -> Option<u64> {
    u64::from_str_radix(status_field(status, key)?, 16).ok()
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// One test's private world: a temp dir with the store and run dir, and a number unique to the
/// test (usable as `sleep MARKER` so the test can find its own processes on the host).
pub struct Ctx {
    pub dir: PathBuf,
    pub store: PathBuf,
    pub runroot: PathBuf,
    pub rootfs: PathBuf,
    pub marker: String,
}

impl Ctx {
    /// The usual preconditions of a container test; None (after printing why) if unmet.
    pub fn new() -> Option<Ctx> {
        if !require(!is_root(), "running as root (container tests are for unprivileged users)") {
            return None;
        }
        let rootfs = env::var_os("RL_TEST_ROOTFS").map(PathBuf::from);
        let rootfs = match rootfs {
            Some(r) if r.join("bin").is_dir() => r,
            _ => {
                require(false, "RL_TEST_ROOTFS is not set to a rootfs directory");
                return None;
            }
        };
        Some(Ctx::create(rootfs))
    }

    /// Like `new`, plus the full subordinate id map from /etc/subuid and /etc/subgid.
    pub fn with_subids() -> Option<Ctx> {
        let ctx = Ctx::new()?;
        require(has_subids(), "no /etc/subuid and /etc/subgid entry for this user").then_some(ctx)
    }

    /// For `nosubid_*` tests, which run only as the user without subordinate ids
    /// (`RL_TEST_NOSUBID=1`); scripts/test.sh filters them in and out, so they never skip in CI.
    pub fn nosubid() -> Option<Ctx> {
        if env::var("RL_TEST_NOSUBID").as_deref() != Ok("1") {
            say("skipped: runs only as the user without subordinate ids (RL_TEST_NOSUBID=1)");
            return None;
        }
        let ctx = Ctx::new()?;
        require(subids("/etc/subuid").is_none(), "this user has an /etc/subuid entry").then_some(ctx)
    }

    fn create(rootfs: PathBuf) -> Ctx {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let marker = format!("{}{:03}", std::process::id(), n % 1000);
        let name: String =
            test_name().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).take(40).collect();
        let base = env::var_os("TMPDIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp"));
        let dir = base.join(format!("rl-{name}-{marker}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        Ctx { store: dir.join("store"), runroot: dir.join("run"), dir, rootfs, marker }
    }

    /// `rl --root STORE --runroot RUN`, ready for a verb.
    pub fn rl(&self) -> Command {
        let mut c = Command::new(rl_bin());
        c.arg("--root").arg(&self.store).arg("--runroot").arg(&self.runroot);
        c
    }

    /// `rl … run OPTS --rootfs ROOTFS CMD…`
    /// `rl ARGS` in this context, with `stdin` fed to it; waits for it to end.
    pub fn rl_out(&self, args: &[&str], stdin: Option<&[u8]>) -> Out {
        let mut c = self.rl();
        c.args(args);
        output(c, stdin)
    }

    /// [`Ctx::rl_out`] with its own auth file, config home and Docker config dir (in the test's
    /// dir), so no credential or registries.conf of the user running the tests takes part.
    pub fn rl_isolated(&self, args: &[&str], stdin: Option<&[u8]>) -> Out {
        let mut c = self.rl();
        c.env("REGISTRY_AUTH_FILE", self.dir.join("auth.json"))
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env("DOCKER_CONFIG", self.dir.join("docker"))
            .args(args);
        output(c, stdin)
    }

    pub fn run_cmd(&self, opts: &[&str], cmd: &[&str]) -> Command {
        self.run_cmd_in(&self.rootfs, opts, cmd)
    }

    pub fn run_cmd_in(&self, rootfs: &Path, opts: &[&str], cmd: &[&str]) -> Command {
        let mut c = self.rl();
        c.arg("run").args(opts).arg("--rootfs").arg(rootfs).args(cmd);
        c
    }

    /// `rl … run OPTS IMAGE CMD…` to the end, with empty stdin.
    pub fn run_cmd_in_image(&self, opts: &[&str], image: &str, cmd: &[&str]) -> Out {
        let mut c = self.rl();
        c.arg("run").args(opts).arg(image).args(cmd);
        output(c, None)
    }

    /// Runs a container to the end with empty stdin.
    pub fn run(&self, opts: &[&str], cmd: &[&str]) -> Out {
        output(self.run_cmd(opts, cmd), None)
    }

    pub fn spawn(&self, opts: &[&str], cmd: &[&str]) -> Running {
        Running::spawn(self.run_cmd(opts, cmd), false)
    }

    /// `rl inspect NAME`, which must succeed: the container's object.
    pub fn inspect(&self, name: &str) -> serde_json::Value {
        let out = self.rl_out(&["inspect", name], None);
        out.assert_ok();
        let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("inspect prints JSON");
        v[0].clone()
    }

    /// `rl run -d OPTS --rootfs ROOTFS CMD...`, which must succeed; the id it printed.
    pub fn run_d(&self, opts: &[&str], cmd: &[&str]) -> String {
        let rootfs = self.rootfs.to_string_lossy().into_owned();
        let mut args = vec!["run", "-d"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&["--rootfs", &rootfs]);
        args.extend_from_slice(cmd);
        let out = self.rl_out(&args, None);
        out.assert_ok();
        out.stdout_trim().to_string()
    }

    /// A directory of the test, created, owned by the test user.
    pub fn mkdir(&self, rel: &str) -> PathBuf {
        let p = self.dir.join(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
        p
    }

    /// A private copy of the rootfs (`cp -a`) for tests that check it stays unchanged.
    pub fn copy_rootfs(&self) -> PathBuf {
        let dst = self.dir.join("rootfs");
        let st = Command::new("cp").arg("-a").arg(&self.rootfs).arg(&dst).status().expect("run cp");
        assert!(st.success(), "cp -a {} {}: {st}", self.rootfs.display(), dst.display());
        dst
    }

    /// Entries of `<root>/containers` (none if it does not exist).
    pub fn containers(&self) -> Vec<PathBuf> {
        match fs::read_dir(self.store.join("containers")) {
            Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Names of the entries of a store directory (`layers`, `images`, `tmp`), sorted.
    pub fn store_entries(&self, dir: &str) -> Vec<String> {
        let mut out: Vec<String> = match fs::read_dir(self.store.join(dir)) {
            Ok(rd) => rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        };
        out.sort();
        out
    }

    /// `<root>/containers/*/upper`
    pub fn uppers(&self) -> Vec<PathBuf> {
        self.containers().into_iter().map(|c| c.join("upper")).filter(|u| u.is_dir()).collect()
    }

    /// Live processes that belong to this test: anything naming its temp dir in its arguments
    /// (rl itself), working in it or holding it open (fuse-overlayfs holds its layer dirs), and
    /// the container's `sleep MARKER`.
    pub fn leftover_processes(&self) -> Vec<Proc> {
        let dir = self.dir.to_string_lossy().into_owned();
        let me = std::process::id() as i32;
        let inside = |link: &Path| fs::read_link(link).is_ok_and(|t| t.starts_with(&self.dir));
        processes()
            .into_iter()
            .filter(|p| p.pid != me && p.state != 'Z')
            .filter(|p| {
                p.argv.iter().any(|a| a.contains(&dir) || *a == self.marker)
                    || inside(Path::new(&format!("/proc/{}/cwd", p.pid)))
                    || fs::read_dir(format!("/proc/{}/fd", p.pid))
                        .map(|rd| rd.flatten().any(|e| inside(&e.path())))
                        .unwrap_or(false)
            })
            .collect()
    }

    /// The pause process holding the user namespace this run root's containers share, if it
    /// runs (recorded in `RUNROOT/userns` as pid and start time).
    pub fn pause_pid(&self) -> Option<i32> {
        let text = fs::read_to_string(self.runroot.join("userns")).ok()?;
        let pid: i32 = text.split_whitespace().next()?.parse().ok()?;
        let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        let live = process(pid).is_some_and(|p| p.state != 'Z');
        (comm.trim_end() == "rl-pause" && live).then_some(pid)
    }

    /// Mounts visible to the test that lie in its temp dir.
    pub fn leftover_mounts(&self) -> Vec<String> {
        let dir = self.dir.to_string_lossy().into_owned();
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&dir))
            .map(String::from)
            .collect()
    }
}

impl Drop for Ctx {
    /// Best effort: the upper dir may hold files of subordinate ids the test user cannot delete.
    fn drop(&mut self) {
        // A failed test may leave a detached container's monitor behind: it takes its
        // container down with it.
        for p in self.leftover_processes().iter().filter(|p| p.argv.first().is_some_and(|a| a.contains("rl-monitor"))) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), nix::sys::signal::Signal::SIGKILL);
        }
        // The run root's pause process would outlive the test by minutes.
        if let Some(pid) = self.pause_pid() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
        }
        if fs::remove_dir_all(&self.dir).is_err() {
            make_writable(&self.dir);
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Overlay's `work/work` is mode 000; give the owner back what remove_dir_all needs.
fn make_writable(p: &Path) {
    let Ok(md) = fs::symlink_metadata(p) else {
        return;
    };
    if md.is_dir() {
        let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                make_writable(&e.path());
            }
        }
    }
}

/// `inner` run from a shell that first opens fd 7 without close-on-exec, as a careless caller
/// of rl would (a CI runner, a shell script).
pub fn with_leaked_fd(inner: Command) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(r#"exec 7</dev/null; exec "$@""#).arg("sh").arg(inner.get_program()).args(inner.get_args());
    cmd
}

/// The test registry's `host:port` (RL_TEST_REGISTRY), or None after saying why it is missing.
pub fn test_registry() -> Option<String> {
    let r = env::var("RL_TEST_REGISTRY").ok().filter(|r| !r.is_empty());
    require(r.is_some(), "RL_TEST_REGISTRY is not set (scripts/test.sh starts a registry)")
        .then(|| r.unwrap_or_default())
}

/// A context with subordinate ids and the test registry.
pub fn registry_ctx() -> Option<(Ctx, String)> {
    let ctx = Ctx::with_subids()?;
    let reg = test_registry()?;
    Some((ctx, reg))
}

pub fn is_root() -> bool {
    uid() == 0 || nix::unistd::geteuid().is_root()
}
