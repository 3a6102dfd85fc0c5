//! `rl exec` into a running container, checked from both sides: what the exec'd process sees
//! (the container's PID 1, hostname, files, user, capabilities, environment) and what the host
//! sees (the same namespaces as the container's PID 1, nothing written outside, no leaked fd),
//! exit statuses, signals, `-d`, and a terminal session with `-it` on a pty the test owns.
mod common;

use common::*;
use nix::sys::signal::Signal;
use std::fs;
use std::process::Command;

/// A container kept running by `sleep MARKER` as its PID 1.
struct Container {
    rl: Running,
    name: String,
    /// Host pid of the container's PID 1.
    pid: i32,
}

/// Whether the container's record says `running` (written right after its PID 1 exec'd).
fn recorded_running(ctx: &Ctx) -> bool {
    ctx.containers().iter().any(|c| fs::read_to_string(c.join("state.json")).is_ok_and(|s| s.contains("\"running\"")))
}

/// Starts `sh -c 'echo ready; exec sleep MARKER'` and waits until it runs and is recorded.
fn start(ctx: &Ctx, opts: &[&str]) -> Container {
    let name = format!("exec-{}", ctx.marker);
    let mut all = vec!["--rm", "--name", name.as_str(), "--hostname", "exec-host"];
    all.extend_from_slice(opts);
    let script = format!("echo ready; exec sleep {}", ctx.marker);
    let mut rl = ctx.spawn(&all, &["sh", "-c", &script]);
    rl.wait_for_line("ready");
    let marker = ctx.marker.clone();
    let pid = rl.wait_for_descendant("sleep MARKER", |p| p.argv == ["sleep", marker.as_str()]).pid;
    assert!(poll_until(|| recorded_running(ctx)), "the container's record never said running\n{}", rl.dump());
    Container { rl, name, pid }
}

impl Container {
    /// Stops the container by killing its PID 1 from the host (a PID 1 ignores SIGTERM).
    fn stop(self) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), Signal::SIGKILL).expect("kill PID 1");
        self.rl.finish().assert_code(137);
    }
}

fn exec_cmd(ctx: &Ctx, opts: &[&str], name: &str, cmd: &[&str]) -> Command {
    let mut c = ctx.rl();
    c.arg("exec").args(opts).arg(name).args(cmd);
    c
}

fn exec(ctx: &Ctx, opts: &[&str], name: &str, cmd: &[&str]) -> Out {
    output(exec_cmd(ctx, opts, name, cmd), None)
}

fn ns_link(pid: i32, ns: &str) -> String {
    fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .unwrap_or_else(|e| panic!("readlink /proc/{pid}/ns/{ns}: {e}"))
        .to_string_lossy()
        .into_owned()
}

#[test]
fn exec_sees_the_containers_pid_1_and_hostname() {
    let Some(ctx) = Ctx::new() else { return };
    let c = start(&ctx, &[]);
    let out = exec(&ctx, &[], &c.name, &["sh", "-c", "tr '\\0' ' ' </proc/1/cmdline; echo; hostname"]);
    out.assert_ok();
    let want = format!("sleep {} \nexec-host\n", ctx.marker);
    assert_eq!(out.stdout, want, "{out}");
    c.stop();
}

/// From the host: the exec'd process shares every namespace with the container's PID 1, and
/// rl passes SIGTERM on to it.
#[test]
fn exec_joins_the_containers_namespaces_and_gets_signals() {
    let Some(ctx) = Ctx::new() else { return };
    let c = start(&ctx, &[]);
    let other = format!("{}1", ctx.marker);
    let script = format!("echo in; exec sleep {other}");
    let mut e = Running::spawn(exec_cmd(&ctx, &[], &c.name, &["sh", "-c", &script]), false);
    e.wait_for_line("in");
    let pid = e.wait_for_descendant("sleep OTHER", |p| p.argv == ["sleep", other.as_str()]).pid;
    for ns in ["user", "mnt", "pid", "net", "uts", "ipc", "cgroup"] {
        assert_eq!(ns_link(pid, ns), ns_link(c.pid, ns), "{ns} namespace of the exec'd process\n{}", e.dump());
    }
    assert_ne!(ns_link(pid, "user"), ns_link(std::process::id() as i32, "user"));
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    assert_eq!(status_field(&status, "NoNewPrivs"), Some("1"), "{status}");
    assert_eq!(status_field(&status, "Seccomp"), Some("2"), "{status}");
    e.signal(Signal::SIGTERM);
    e.finish().assert_code(143);
    c.stop();
}

#[test]
fn exec_writes_in_the_container_not_on_the_host() {
    let Some(ctx) = Ctx::new() else { return };
    // The container reads a line on stdin, then shows the file exec wrote.
    let name = format!("exec-{}", ctx.marker);
    let file = format!("/tmp/from-exec-{}", ctx.marker);
    let script = format!("echo ready; read go; cat {file}");
    let mut rl = Running::spawn(ctx.run_cmd(&["--rm", "-i", "--name", &name], &["sh", "-c", &script]), true);
    rl.wait_for_line("ready");
    assert!(poll_until(|| recorded_running(&ctx)), "the container's record never said running\n{}", rl.dump());
    exec(&ctx, &[], &name, &["sh", "-c", &format!("echo written-by-exec > {file}")]).assert_ok();
    assert!(!std::path::Path::new(&file).exists(), "exec wrote {file} on the host");
    assert!(!ctx.rootfs.join(&file[1..]).exists(), "exec wrote into the lower rootfs");
    rl.feed_stdin(b"go\n".to_vec());
    let out = rl.finish();
    out.assert_ok();
    assert_eq!(out.stdout, "ready\nwritten-by-exec\n", "{out}");
}

#[test]
fn exec_exit_statuses_are_the_commands() {
    let Some(ctx) = Ctx::new() else { return };
    let c = start(&ctx, &[]);
    exec(&ctx, &[], &c.name, &["true"]).assert_ok();
    exec(&ctx, &[], &c.name, &["sh", "-c", "exit 7"]).assert_code(7);
    let out = exec(&ctx, &[], &c.name, &["no-such-command"]);
    out.assert_code(127);
    assert!(out.stderr.contains("no-such-command"), "{out}");
    let out = exec(&ctx, &[], &c.name, &["/etc/passwd"]);
    out.assert_code(126);
    assert!(out.stderr.contains("/etc/passwd"), "{out}");
    exec(&ctx, &[], &c.name, &["sh", "-c", "kill -9 $$"]).assert_code(137);
    // By id prefix too.
    let id = ctx.containers()[0].file_name().unwrap().to_string_lossy().into_owned();
    exec(&ctx, &[], &id[..8], &["true"]).assert_ok();
    c.stop();
}

#[test]
fn exec_user_and_capabilities() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let c = start(&ctx, &[]);
    let show = ["sh", "-c", "id -u; id -g; grep CapEff /proc/self/status"];
    let root = exec(&ctx, &[], &c.name, &show);
    root.assert_ok();
    let lines: Vec<&str> = root.stdout.lines().collect();
    assert_eq!(lines[..2], ["0", "0"], "{root}");
    assert_eq!(status_hex(&root.stdout, "CapEff"), Some(DEFAULT_CAPS), "root gets the container's set\n{root}");
    let user = exec(&ctx, &["-u", "1000:1000"], &c.name, &show);
    user.assert_ok();
    assert_eq!(user.stdout.lines().take(2).collect::<Vec<_>>(), ["1000", "1000"], "{user}");
    assert_eq!(status_hex(&user.stdout, "CapEff"), Some(0), "{user}");
    let nobody = exec(&ctx, &["--user", "nobody"], &c.name, &["id", "-un"]);
    nobody.assert_ok();
    assert_eq!(nobody.stdout_trim(), "nobody", "{nobody}");
    exec(&ctx, &["-u", "no-such-user"], &c.name, &["true"]).assert_error("no-such-user");
    c.stop();
}

#[test]
fn exec_environment_and_workdir() {
    let Some(ctx) = Ctx::new() else { return };
    let c = start(&ctx, &["-e", "FROM_RUN=run", "-e", "BOTH=run", "-w", "/etc"]);
    let show = ["sh", "-c", "pwd; echo $FROM_RUN $BOTH $FROM_EXEC $HOME"];
    let out = exec(&ctx, &[], &c.name, &show);
    out.assert_ok();
    assert_eq!(out.stdout, "/etc\nrun run /root\n", "the container's env and workdir\n{out}");
    let out = exec(&ctx, &["-e", "BOTH=exec", "--env", "FROM_EXEC=x", "-w", "/tmp"], &c.name, &show);
    out.assert_ok();
    assert_eq!(out.stdout, "/tmp\nrun exec x /root\n", "-e on top, -w instead\n{out}");
    exec(&ctx, &["-w", "/no/such/dir"], &c.name, &["true"]).assert_error("/no/such/dir");
    c.stop();
}

#[test]
fn exec_stdin_only_with_interactive() {
    let Some(ctx) = Ctx::new() else { return };
    let c = start(&ctx, &[]);
    let out = output(exec_cmd(&ctx, &["-i"], &c.name, &["cat"]), Some(b"piped\n"));
    out.assert_ok();
    assert_eq!(out.stdout, "piped\n", "{out}");
    let out = output(exec_cmd(&ctx, &[], &c.name, &["sh", "-c", "cat; echo end"]), Some(b"not for you\n"));
    out.assert_ok();
    assert_eq!(out.stdout, "end\n", "{out}");
    c.stop();
}

#[test]
fn exec_into_an_unknown_or_stopped_container_fails_cleanly() {
    let Some(ctx) = Ctx::new() else { return };
    let out = exec(&ctx, &[], "no-such-container", &["true"]);
    out.assert_error("no-such-container");
    let name = format!("done-{}", ctx.marker);
    ctx.run(&["--name", &name], &["true"]).assert_ok();
    let out = exec(&ctx, &[], &name, &["true"]);
    out.assert_error("not running");
    assert!(out.stderr.lines().any(|l| l.starts_with("hint: ")), "{out}");
}

/// An fd rl inherited (fd 7, and its own sync socket) never reaches the exec'd process.
#[test]
fn exec_closes_inherited_fds() {
    let Some(ctx) = Ctx::new() else { return };
    let c = start(&ctx, &[]);
    let cmd = with_leaked_fd(exec_cmd(&ctx, &[], &c.name, &["sh", "-c", "ls /proc/$$/fd; true"]));
    let out = output(cmd, None);
    out.assert_ok();
    let fds: Vec<&str> = out.stdout.split_whitespace().collect();
    assert_eq!(fds, ["0", "1", "2"], "only stdio may reach the process\n{out}");
    c.stop();
}

#[test]
fn exec_detached_keeps_running_in_the_container() {
    let Some(ctx) = Ctx::new() else { return };
    let c = start(&ctx, &[]);
    let other = format!("{}2", ctx.marker);
    let out = exec(&ctx, &["-d"], &c.name, &["sh", "-c", &format!("echo noise; exec sleep {other}")]);
    out.assert_ok();
    assert_eq!(out.stdout, "", "-d prints nothing\n{out}");
    let find = || processes().into_iter().find(|p| p.argv == ["sleep", other.as_str()] && p.state != 'Z');
    assert!(poll_until(|| find().is_some()), "the detached process is not running");
    let pid = find().map(|p| p.pid).unwrap_or_default();
    assert_eq!(ns_link(pid, "pid"), ns_link(c.pid, "pid"), "the detached process is in the container");
    // It ends with the container (its pid namespace goes with PID 1).
    c.stop();
    assert!(poll_until(|| find().is_none()), "the detached process outlived the container");
}

/// A user-installed rl (writable by the container's root, who is the user) runs from a sealed
/// copy; exec works the same.
#[test]
fn exec_with_an_rl_the_user_owns() {
    let Some(ctx) = Ctx::new() else { return };
    let c = start(&ctx, &[]);
    let own = ctx.dir.join("rl");
    fs::copy(rl_bin(), &own).expect("copy rl");
    let mut cmd = Command::new(&own);
    cmd.arg("--root").arg(&ctx.store).arg("--runroot").arg(&ctx.runroot);
    cmd.args(["exec", &c.name, "sh", "-c", "readlink /proc/$$/exe; echo ok"]);
    let out = output(cmd, None);
    out.assert_ok();
    assert!(out.stdout.ends_with("ok\n"), "{out}");
    c.stop();
}

/// The outer side of a pty: what the process printed so far, read by a thread.
/// `rl exec -it NAME sh` on a pty the test opened, as from a user's terminal: the shell gets a
/// pty of the container's own devpts with the outer window size, Ctrl-C reaches its foreground
/// job, and the exit status comes back.
#[test]
fn exec_tty_session_on_a_pty() {
    let Some(ctx) = Ctx::new() else { return };
    let c = start(&ctx, &[]);
    let mut term = Terminal::spawn(exec_cmd(&ctx, &["-i", "-t"], &c.name, &["sh"]), 33, 99);

    term.send("tty; stty size; cat /proc/1/cmdline; echo; echo m-$((6*7))\r");
    if !term.expect("m-42") {
        term.fail("the shell did not answer");
    }
    if !term.seen.contains("/dev/pts/0") {
        term.fail("`tty` should be a pty of the container's devpts (/dev/pts/0)");
    }
    if !term.seen.contains("33 99") {
        term.fail("`stty size` should be the outer window size 33 99");
    }
    if !term.seen.contains(&ctx.marker) {
        term.fail("PID 1 should be the container's sleep");
    }

    let other = format!("{}3", ctx.marker);
    term.send(&format!("sleep {other}\r"));
    let find = || processes().into_iter().find(|p| p.argv == ["sleep", other.as_str()] && p.state != 'Z');
    if !poll_until(|| find().is_some()) {
        term.fail("the shell's `sleep` never started");
    }
    term.send("\x03");
    if !poll_until(|| find().is_none()) {
        term.fail("Ctrl-C did not interrupt the sleep");
    }
    term.send("echo rc=$?\r");
    if !term.expect("rc=130") {
        term.fail("the interrupted sleep should report 130 (SIGINT)");
    }
    term.send("exit 3\r");
    let status = term.wait("rl exec did not exit after `exit 3`");
    assert_eq!(status.code(), Some(3), "exit status of the shell\n--- terminal:\n{}", term.seen);
    c.stop();
}
