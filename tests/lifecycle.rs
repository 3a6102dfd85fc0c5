//! Detached containers under their monitor: `run -d`, `ps`, `logs [-f]`, `stop` (and its SIGKILL
//! escalation), `wait`, `kill`, `start` after the runtime state is wiped, restart policies, log
//! rotation, and a monitor killed with SIGKILL. Each test uses its own store and run root and
//! the busybox rootfs (`--rootfs`), and checks from the host side too: processes, records.
mod common;

use std::path::Path;

use common::*;

fn rl(ctx: &Ctx, args: &[&str]) -> Out {
    ctx.rl_out(args, None)
}

/// `rl run -d --rootfs ROOTFS OPTS... CMD...`; returns the id it printed.
fn run_d(ctx: &Ctx, opts: &[&str], cmd: &[&str]) -> String {
    let rootfs = ctx.rootfs.to_string_lossy().into_owned();
    let mut args = vec!["run", "-d", "--rootfs", &rootfs];
    args.extend_from_slice(opts);
    args.extend_from_slice(cmd);
    let out = rl(ctx, &args);
    out.assert_ok();
    let id = out.stdout_trim().to_string();
    assert_eq!(id.len(), 64, "run -d prints the container id\n{out}");
    id
}

fn state_of(ctx: &Ctx, name: &str) -> String {
    ctx.inspect(name)["State"]["Status"].as_str().unwrap_or_default().to_string()
}

#[test]
fn detached_run_ps_logs_stop_and_wait() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let id = run_d(&ctx, &["--name", "web"], &["sh", "-c", "echo hello; echo oops >&2; exec sleep 1000"]);
    // `run -d` returns once the container runs: ps shows it at once, by name and short id.
    let ps = rl(&ctx, &["ps", "--format", "{{.ID}} {{.Names}} {{.State}}"]);
    ps.assert_ok();
    assert_eq!(ps.stdout_trim(), format!("{} web running", &id[..12]), "{ps}");
    let pid = ctx.inspect("web")["State"]["Pid"].as_i64().unwrap_or(0) as i32;
    assert!(
        process(pid).is_some_and(|p| p.argv.first().is_some_and(|a| a.contains("sleep"))),
        "PID is the container's"
    );

    assert!(poll_until(|| rl(&ctx, &["logs", "web"]).stdout.contains("hello")), "the log gets the output");
    let logs = rl(&ctx, &["logs", "web"]);
    assert_eq!(logs.stdout, "hello\n", "stdout to stdout\n{logs}");
    assert_eq!(logs.stderr, "oops\n", "stderr to stderr\n{logs}");
    let stamped = rl(&ctx, &["logs", "-t", "web"]);
    assert!(stamped.stdout.starts_with("20") && stamped.stdout.contains("Z hello"), "{stamped}");

    // sleep as PID 1 ignores SIGTERM: stop escalates to SIGKILL after -t seconds.
    let stop = rl(&ctx, &["stop", "-t", "1", "web"]);
    stop.assert_ok();
    assert!(process(pid).is_none_or(|p| p.state == 'Z'), "the container's process is gone");
    let wait = rl(&ctx, &["wait", &id[..12]]);
    wait.assert_ok();
    assert_eq!(wait.stdout_trim(), "137", "128+SIGKILL");
    assert_eq!(state_of(&ctx, "web"), "exited");
    assert!(rl(&ctx, &["ps", "-q"]).stdout_trim().is_empty(), "ps without -a lists running ones only");
    assert!(rl(&ctx, &["ps", "-aq"]).stdout_trim() == &id[..12]);

    rl(&ctx, &["rm", "web"]).assert_ok();
    assert!(ctx.containers().is_empty(), "the record and layer are gone: {:?}", ctx.containers());
    assert!(ctx.leftover_processes().is_empty(), "{:?}", ctx.leftover_processes());
}

#[test]
fn exit_codes_come_through_wait_and_rm_refuses_a_running_one() {
    let Some(ctx) = Ctx::with_subids() else { return };
    run_d(&ctx, &["--name", "seven"], &["sh", "-c", "exit 7"]);
    let wait = rl(&ctx, &["wait", "seven"]);
    assert_eq!(wait.stdout_trim(), "7", "{wait}");
    assert_eq!(ctx.inspect("seven")["State"]["ExitCode"], 7);

    run_d(&ctx, &["--name", "busy"], &["sleep", &ctx.marker]);
    rl(&ctx, &["rm", "busy"]).assert_error("cannot remove a running container");
    rl(&ctx, &["rm", "-f", "busy"]).assert_ok();
    rl(&ctx, &["rm", "nothere"]).assert_error("no such container");
    assert!(ctx.leftover_processes().is_empty(), "{:?}", ctx.leftover_processes());
}

#[test]
fn logs_follow_until_the_container_ends() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let ctl = ctx.mkdir("ctl");
    let vol = format!("{}:/ctl", ctl.display());
    run_d(
        &ctx,
        &["--name", "f", "-v", &vol],
        &["sh", "-c", "echo one; while [ ! -e /ctl/go ]; do sleep 0.05; done; echo two"],
    );
    let mut follow = Running::spawn(
        {
            let mut c = ctx.rl();
            c.args(["logs", "-f", "f"]);
            c
        },
        false,
    );
    follow.wait_for_line("one");
    std::fs::write(ctl.join("go"), b"").unwrap();
    follow.wait_for_line("two");
    // The container exits after `two`: logs -f ends by itself.
    let out = follow.finish();
    out.assert_ok();
    assert_eq!(out.stdout, "one\ntwo\n");
}

#[test]
fn on_failure_restarts_exactly_as_often_as_asked() {
    let Some(ctx) = Ctx::with_subids() else { return };
    run_d(&ctx, &["--name", "r", "--restart", "on-failure:2"], &["sh", "-c", "echo attempt; exit 3"]);
    let wait = rl(&ctx, &["wait", "r"]);
    assert_eq!(wait.stdout_trim(), "3");
    let info = ctx.inspect("r");
    assert_eq!(info["RestartCount"], 2, "{info}");
    assert_eq!(info["HostConfig"]["RestartPolicy"]["Name"], "on-failure");
    assert_eq!(rl(&ctx, &["logs", "r"]).stdout, "attempt\nattempt\nattempt\n", "one run and two restarts");
    // A clean exit is not a failure.
    run_d(&ctx, &["--name", "ok", "--restart", "on-failure"], &["true"]);
    rl(&ctx, &["wait", "ok"]).assert_ok();
    assert_eq!(ctx.inspect("ok")["RestartCount"], 0);
    rl(&ctx, &["run", "--rm", "--restart", "always", "--rootfs", &ctx.rootfs.to_string_lossy(), "true"])
        .assert_error("--rm");
}

#[test]
fn log_rotation_bounds_disk_use() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let id = run_d(
        &ctx,
        &["--name", "flood", "--log-opt", "max-size=4k", "--log-opt", "max-file=2"],
        &["sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo line $i of a flood; i=$((i+1)); done"],
    );
    assert_eq!(rl(&ctx, &["wait", "flood"]).stdout_trim(), "0");
    let dir = ctx.store.join("containers").join(&id);
    let logs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ctr.log"))
        .map(|e| e.metadata().unwrap().len())
        .collect();
    assert_eq!(logs.len(), 2, "max-file=2 keeps two files: {logs:?}");
    assert!(logs.iter().sum::<u64>() <= 2 * 4096, "{logs:?}");
    let out = rl(&ctx, &["logs", "--tail", "1", "flood"]);
    assert_eq!(out.stdout, "line 2999 of a flood\n", "the newest lines survive");
}

#[test]
fn a_killed_monitor_is_noticed_and_takes_the_container_down() {
    let Some(ctx) = Ctx::with_subids() else { return };
    run_d(&ctx, &["--name", "m"], &["sleep", &ctx.marker]);
    let info = ctx.inspect("m");
    let monitor = info["State"]["MonitorPid"].as_i64().unwrap_or(0) as i32;
    let pid = info["State"]["Pid"].as_i64().unwrap_or(0) as i32;
    assert!(monitor > 0 && process(monitor).is_some(), "{info}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(monitor), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert!(poll_until(|| process(pid).is_none_or(|p| p.state == 'Z')), "the container dies with its monitor");
    assert!(poll_until(|| ctx.leftover_processes().is_empty()), "{:?}", ctx.leftover_processes());
    let after = ctx.inspect("m");
    assert_eq!(after["State"]["Status"], "exited", "{after}");
    assert!(after["State"]["Error"].as_str().unwrap_or("").contains("monitor"), "{after}");
    let ps = rl(&ctx, &["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    assert_eq!(ps.stdout_trim(), "m exited");
}

#[test]
fn after_a_wiped_runtime_dir_start_runs_it_again() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let ctl = ctx.mkdir("ctl2");
    let vol = format!("{}:/ctl", ctl.display());
    run_d(&ctx, &["--name", "boot", "-v", &vol], &["sh", "-c", "echo run >> /ctl/runs; exec sleep 1000"]);
    assert!(poll_until(|| std::fs::read_to_string(ctl.join("runs")).is_ok_and(|s| s == "run\n")));
    // A reboot: every process gone and the run root (a tmpfs) empty.
    let info = ctx.inspect("boot");
    let pid = info["State"]["Pid"].as_i64().unwrap_or(0) as i32;
    // The container's parent: rl's stage 1, which cleans up after it.
    let stage1 = process(pid).map(|p| p.ppid).unwrap_or(0);
    for key in ["MonitorPid", "Pid"] {
        let pid = info["State"][key].as_i64().unwrap_or(0) as i32;
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    assert!(poll_until(|| process(stage1).is_none_or(|p| p.state == 'Z')), "stage 1 finished its cleanup");
    assert!(poll_until(|| ctx.leftover_processes().is_empty()), "{:?}", ctx.leftover_processes());
    wipe(&ctx.runroot);
    assert_eq!(state_of(&ctx, "boot"), "exited");
    rl(&ctx, &["start", "boot"]).assert_ok();
    assert_eq!(state_of(&ctx, "boot"), "running");
    assert!(poll_until(|| std::fs::read_to_string(ctl.join("runs")).is_ok_and(|s| s == "run\nrun\n")));
    rl(&ctx, &["rm", "-f", "boot"]).assert_ok();
    assert!(poll_until(|| ctx.leftover_processes().is_empty()), "{:?}", ctx.leftover_processes());
}

fn wipe(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap_or_else(|err| panic!("wipe {}: {err}", p.display()));
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
}

/// `rl attach` as a client with plain pipes: `attach`'s stdin feeds the container and the detach
/// keys leave it running.
fn attach(ctx: &Ctx, name: &str) -> Running {
    let mut c = ctx.rl();
    c.args(["attach", name]);
    Running::spawn(c, true)
}

#[test]
fn attach_to_interactive_streams_and_detach_with_the_keys() {
    let Some(ctx) = Ctx::with_subids() else { return };
    run_d(&ctx, &["-i", "--name", "echoer"], &["sh", "-c", "while read l; do echo got $l; echo err $l >&2; done"]);
    let mut a = attach(&ctx, "echoer");
    a.write_stdin(b"one\n");
    a.wait_for_line("got one");
    // Both streams come back, each as itself, before the keys end the session.
    a.wait_for_err_line("err one");
    // Ctrl-P Ctrl-Q: attach ends, the container goes on.
    a.write_stdin(b"\x10\x11");
    let out = a.finish();
    out.assert_ok();
    assert_eq!(out.stdout, "got one\n", "{out}");
    assert_eq!(state_of(&ctx, "echoer"), "running", "detaching leaves it running");
    // Attached again, the same shell answers; the log has both streams.
    let mut b = attach(&ctx, "echoer");
    b.write_stdin(b"two\n");
    b.wait_for_line("got two");
    b.write_stdin(b"\x10\x11");
    assert_eq!(b.finish().stdout, "got two\n");
    assert!(rl(&ctx, &["logs", "echoer"]).stdout.contains("got one\ngot two\n"));
    rl(&ctx, &["rm", "-f", "echoer"]).assert_ok();
}

#[test]
fn run_dit_then_attach_gives_the_shell() {
    let Some(ctx) = Ctx::with_subids() else { return };
    run_d(&ctx, &["-i", "-t", "--name", "shell"], &["sh"]);
    let mut a = attach(&ctx, "shell");
    // The pty echoes and runs the line; the shell's exit ends attach with its status.
    a.feed_stdin(b"echo $((6*7)); exit 5\n".to_vec());
    let out = a.finish();
    assert!(out.stdout.contains("42"), "{out}");
    assert_eq!(out.code(), Some(5), "attach ends with the container's status\n{out}");
    assert_eq!(state_of(&ctx, "shell"), "exited");
    rl(&ctx, &["attach", "shell"]).assert_error("not running");
}

#[test]
fn top_lists_the_containers_processes_by_their_own_pids() {
    let Some(ctx) = Ctx::with_subids() else { return };
    run_d(&ctx, &["--name", "t"], &["sh", "-c", &format!("sleep {} & exec sleep 1000", ctx.marker)]);
    assert!(poll_until(|| rl(&ctx, &["top", "t"]).stdout.contains(&ctx.marker)));
    let out = rl(&ctx, &["top", "t"]);
    let rows: Vec<Vec<&str>> = out.stdout.lines().skip(1).map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows.len(), 2, "PID 1 and its child, nothing of the host\n{out}");
    assert!(rows.iter().any(|r| r[1] == "1" && r[4] == "sleep" && r[5] == "1000"), "{out}");
    assert!(rows.iter().any(|r| r[2] == "1" && r[5] == ctx.marker), "the child's parent is PID 1\n{out}");
    assert!(rows.iter().all(|r| r[0] == "0"), "root inside\n{out}");
    rl(&ctx, &["port", "t"]).assert_ok();
    rl(&ctx, &["rm", "-f", "t"]).assert_ok();
}

#[test]
fn records_logs_and_sockets_are_private_to_the_user() {
    use std::os::unix::fs::PermissionsExt;
    let Some(ctx) = Ctx::with_subids() else { return };
    let id = run_d(&ctx, &["-i", "--name", "p"], &["sh", "-c", "echo secret; exec sleep 1000"]);
    assert!(poll_until(|| rl(&ctx, &["logs", "p"]).stdout.contains("secret")));
    let record = ctx.store.join("containers").join(&id);
    let run = ctx.runroot.join("containers").join(&id);
    // Another user can neither list nor enter any of these (so not read the log or connect to
    // the attach socket), nor signal the container (its processes are the user's ids).
    for dir in [ctx.store.clone(), ctx.store.join("containers"), ctx.runroot.clone(), run.clone()] {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", dir.display());
    }
    for file in [record.join("ctr.log"), record.join("state.json"), record.join("config.json")] {
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}", file.display());
    }
    rl(&ctx, &["rm", "-f", "p"]).assert_ok();
}

#[test]
fn healthcheck_turns_unhealthy_and_back() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let opts =
        ["--name", "h", "--health-cmd", "test -e /tmp/ok", "--health-interval", "100ms", "--health-retries", "2"];
    run_d(&ctx, &opts, &["sh", "-c", "touch /tmp/ok; exec sleep 1000"]);
    let health = |ctx: &Ctx| ctx.inspect("h")["State"]["Health"].clone();
    assert!(poll_until(|| health(&ctx)["Status"] == "healthy"), "{}", health(&ctx));
    let ps = rl(&ctx, &["ps", "--format", "{{.Status}}"]);
    assert!(ps.stdout.contains("(healthy)"), "{ps}");

    rl(&ctx, &["exec", "h", "rm", "/tmp/ok"]).assert_ok();
    assert!(poll_until(|| health(&ctx)["Status"] == "unhealthy"), "{}", health(&ctx));
    let h = health(&ctx);
    assert!(h["FailingStreak"].as_u64().unwrap_or(0) >= 2, "{h}");
    assert!(h["Log"].as_array().is_some_and(|l| l.iter().any(|p| p["ExitCode"] == 1)), "{h}");
    let once = rl(&ctx, &["healthcheck", "run", "h"]);
    assert_eq!((once.code(), once.stdout_trim()), (Some(1), "unhealthy"), "{once}");

    rl(&ctx, &["exec", "h", "touch", "/tmp/ok"]).assert_ok();
    let again = rl(&ctx, &["healthcheck", "run", "h"]);
    assert_eq!((again.code(), again.stdout_trim()), (Some(0), "healthy"), "{again}");
    rl(&ctx, &["rm", "-f", "h"]).assert_ok();
    assert!(poll_until(|| ctx.leftover_processes().is_empty()), "{:?}", ctx.leftover_processes());
}

/// Another user's running container (scripts/test.sh starts one as the test user and runs this
/// as the second user, passing where it lives): it cannot be listed, read, attached to or
/// signalled.
#[test]
fn nosubid_another_users_container_is_out_of_reach() {
    let Some(ctx) = Ctx::nosubid() else { return };
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let (root, runroot, pid) = (var("RL_TEST_OTHER_ROOT"), var("RL_TEST_OTHER_RUNROOT"), var("RL_TEST_OTHER_PID"));
    if !require(
        root.is_some() && runroot.is_some() && pid.is_some(),
        "no other user's container (scripts/test.sh as root makes one)",
    ) {
        return;
    }
    let (root, runroot) = (root.unwrap_or_default(), runroot.unwrap_or_default());
    let pid: i32 = pid.unwrap_or_default().parse().expect("RL_TEST_OTHER_PID is a pid");
    assert!(process(pid).is_some(), "the other user's container runs");
    let theirs = |args: &[&str]| {
        let mut c = std::process::Command::new(rl_bin());
        c.args(["--root", &root, "--runroot", &runroot]).args(args);
        output(c, None)
    };
    for args in
        [&["ps", "-a"][..], &["logs", "secret"], &["inspect", "secret"], &["attach", "secret"], &["stop", "secret"]]
    {
        let out = theirs(args);
        assert_ne!(out.code(), Some(0), "`rl {}` on another user's store must fail\n{out}", args.join(" "));
        assert!(!out.stdout.contains("secret"), "{out}");
    }
    assert!(std::fs::read_dir(Path::new(&root).join("containers")).is_err(), "the records are unreadable");
    assert!(std::fs::read_dir(&runroot).is_err(), "the run root (attach sockets) is unreadable");
    let signal = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None);
    assert_eq!(signal, Err(nix::errno::Errno::EPERM), "the container's processes cannot be signalled");
    drop(ctx);
}

/// The children of `pid`, as the kernel lists them.
fn children(pid: i32) -> Vec<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    text.split_whitespace().filter_map(|p| p.parse().ok()).collect()
}

#[test]
fn a_detached_container_costs_one_rl_process() {
    let Some(ctx) = Ctx::with_subids() else { return };
    // No network helper: this counts rl's own processes (slirp4netns would be a second child).
    run_d(&ctx, &["--name", "one", "--overlay", "kernel", "--network", "none"], &["sleep", &ctx.marker]);
    let info = ctx.inspect("one");
    let monitor = info["State"]["MonitorPid"].as_i64().unwrap_or(0) as i32;
    let pid = info["State"]["Pid"].as_i64().unwrap_or(0) as i32;
    // The monitor is the PID 1's parent, and nothing of rl stands between or beside them.
    assert_eq!(process(pid).map(|p| p.ppid), Some(monitor), "{info}");
    assert_eq!(children(monitor), vec![pid], "the monitor's only child is the container's PID 1");
    // It still reaps the PID 1 and records how it ended.
    rl(&ctx, &["kill", "-s", "KILL", "one"]).assert_ok();
    let wait = rl(&ctx, &["wait", "one"]);
    assert_eq!(wait.stdout_trim(), "137", "{wait}");
    assert!(poll_until(|| process(monitor).is_none_or(|p| p.state == 'Z')), "the monitor ends with its container");
    assert!(poll_until(|| ctx.leftover_processes().is_empty()), "{:?}", ctx.leftover_processes());
}

#[test]
fn a_detached_rm_container_leaves_nothing_once_it_ends() {
    let Some(ctx) = Ctx::with_subids() else { return };
    // Its writable layer holds a file of a subordinate id, which only the user namespace can delete.
    let script = format!("echo x > /made-here && chown 1000:1000 /made-here && exec sleep {}", ctx.marker);
    let id = run_d(&ctx, &["--rm", "--name", "gone"], &["sh", "-c", &script]);
    let monitor = ctx.inspect("gone")["State"]["MonitorPid"].as_i64().unwrap_or(0) as i32;
    assert!(monitor > 0);
    rl(&ctx, &["kill", "gone"]).assert_ok();
    assert!(poll_until(|| process(monitor).is_none_or(|p| p.state == 'Z')), "the monitor ends");
    let ps = rl(&ctx, &["ps", "-a", "-q", "--no-trunc"]);
    assert!(!ps.stdout.contains(&id), "{ps}");
    assert!(ctx.store_entries("containers").iter().all(|e| !e.contains(&id)), "{:?}", ctx.store_entries("containers"));
    assert!(poll_until(|| ctx.leftover_processes().is_empty()), "{:?}", ctx.leftover_processes());
}

#[test]
fn fuse_detached_container_reports_its_exit() {
    let Some(ctx) = Ctx::with_subids() else { return };
    if !fuse_usable() || which("fuse-overlayfs").is_none() {
        eprintln!("skipped: /dev/fuse not rw or fuse-overlayfs not installed");
        return;
    }
    run_d(&ctx, &["--name", "f", "--overlay", "fuse"], &["sh", "-c", "echo on-fuse; exit 5"]);
    let wait = rl(&ctx, &["wait", "f"]);
    assert_eq!(wait.stdout_trim(), "5", "{wait}");
    let logs = rl(&ctx, &["logs", "f"]);
    assert_eq!(logs.stdout, "on-fuse\n", "{logs}");
    assert!(poll_until(|| ctx.leftover_processes().is_empty()), "{:?}", ctx.leftover_processes());
}

#[test]
fn run_d_holds_none_of_the_callers_fds() {
    let Some(ctx) = Ctx::with_subids() else { return };
    // The caller's stdout also reaches rl as fd 7, as a wrapper's copy would: once `run -d`
    // returns, the pipe must end (as `$(rl run -d …)` waits for it to), though the container
    // runs on.
    let inner = ctx.rl();
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c").arg(r#"exec 7>&1; exec "$@""#).arg("sh").arg(inner.get_program()).args(inner.get_args());
    let rootfs = ctx.rootfs.to_string_lossy().into_owned();
    cmd.args(["run", "-d", "--name", "fds", "--rootfs", &rootfs, "sleep", &ctx.marker]);
    let out = output(cmd, None);
    out.assert_ok();
    assert_eq!(state_of(&ctx, "fds"), "running");
    rl(&ctx, &["rm", "-f", "fds"]).assert_ok();
}

/// The namespace `kind` of process `pid`, as its /proc link names it.
fn ns_of(pid: i32, kind: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).map(|l| l.to_string_lossy().into_owned()).unwrap_or_default()
}

fn pid_of(ctx: &Ctx, name: &str) -> i32 {
    ctx.inspect(name)["State"]["Pid"].as_i64().unwrap_or(0) as i32
}

#[test]
fn running_containers_share_only_their_user_namespace() {
    let Some(ctx) = Ctx::with_subids() else { return };
    run_d(&ctx, &["--name", "a"], &["sleep", &ctx.marker]);
    run_d(&ctx, &["--name", "b"], &["sleep", &ctx.marker]);
    let (a, b) = (pid_of(&ctx, "a"), pid_of(&ctx, "b"));
    assert!(a > 0 && b > 0);
    assert_eq!(ns_of(a, "user"), ns_of(b, "user"), "b joined a's user namespace");
    assert_ne!(ns_of(a, "user"), ns_of(std::process::id() as i32, "user"));
    for kind in ["mnt", "pid", "net", "uts", "ipc", "cgroup"] {
        assert_ne!(ns_of(a, kind), ns_of(b, kind), "each container has its own {kind} namespace");
    }
    // The first one gone, the user namespace lives on in the second, and the next joins it.
    rl(&ctx, &["rm", "-f", "a"]).assert_ok();
    run_d(&ctx, &["--name", "c"], &["sleep", &ctx.marker]);
    assert_eq!(state_of(&ctx, "b"), "running");
    assert_eq!(ns_of(pid_of(&ctx, "c"), "user"), ns_of(b, "user"));
    // Other maps never join it.
    run_d(&ctx, &["--name", "k", "--userns", "keep-id"], &["sleep", &ctx.marker]);
    let k = pid_of(&ctx, "k");
    assert_ne!(ns_of(k, "user"), ns_of(b, "user"), "keep-id has maps of its own");
    let uid_map = std::fs::read_to_string(format!("/proc/{k}/uid_map")).unwrap_or_default();
    let own = format!("{0} {0} 1", uid());
    assert!(uid_map.lines().any(|l| l.split_whitespace().collect::<Vec<_>>().join(" ") == own), "{uid_map}");
    rl(&ctx, &["rm", "-f", "b", "c", "k"]).assert_ok();
    assert!(poll_until(|| ctx.leftover_processes().is_empty()), "{:?}", ctx.leftover_processes());
}
