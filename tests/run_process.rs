//! The container's process as seen from rl's caller: exit statuses (the command's, 128+N for a
//! signal, 126/127 for exec failures), signals forwarded to PID 1, stdin with and without `-i`,
//! and a terminal session with `-t` driven through a pty the test owns.
mod common;

use common::*;
use nix::sys::signal::Signal;

#[test]
fn exit_status_zero() {
    let Some(ctx) = Ctx::new() else { return };
    ctx.run(&["--rm"], &["true"]).assert_ok();
}

#[test]
fn exit_status_of_the_command() {
    let Some(ctx) = Ctx::new() else { return };
    ctx.run(&["--rm"], &["sh", "-c", "exit 7"]).assert_code(7);
    ctx.run(&["--rm"], &["false"]).assert_code(1);
}

#[test]
fn exit_126_for_a_file_that_is_not_executable() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&["--rm"], &["/etc/passwd"]);
    out.assert_code(126);
    assert!(out.stderr.contains("/etc/passwd"), "the error names the command\n{out}");
}

#[test]
fn exit_127_for_a_missing_command() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&["--rm"], &["/nonexistent"]);
    out.assert_code(127);
    assert!(out.stderr.contains("/nonexistent"), "the error names the command\n{out}");
    let out = ctx.run(&["--rm"], &["no-such-command-in-path"]);
    out.assert_code(127);
    assert!(out.stderr.contains("no-such-command-in-path"), "{out}");
}

#[test]
fn exit_137_when_the_container_process_is_killed_from_the_host() {
    let Some(ctx) = Ctx::new() else { return };
    let script = format!("echo $$ >/dev/null; echo ready; exec sleep {}", ctx.marker);
    let mut rl = ctx.spawn(&["--rm"], &["sh", "-c", &script]);
    rl.wait_for_line("ready");
    let marker = ctx.marker.clone();
    let sleeper = rl.wait_for_descendant("sleep MARKER", |p| p.argv == ["sleep", marker.as_str()]);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sleeper.pid), Signal::SIGKILL).expect("kill sleep");
    rl.finish().assert_code(137);
}

#[test]
fn exit_137_with_init_when_the_command_kills_itself() {
    let Some(ctx) = Ctx::new() else { return };
    ctx.run(&["--rm", "--init"], &["sh", "-c", "kill -9 $$"]).assert_code(137);
}

/// PID 1 without a handler ignores SIGTERM, so the container installs one, says "ready" and
/// waits; rl must pass the signal on.
fn signal_is_forwarded(opts: &[&str], sig: Signal, name: &str, code: i32) {
    let Some(ctx) = Ctx::new() else { return };
    let script = format!("trap 'exit {code}' {name}; echo ready; sleep {} & wait", ctx.marker);
    let mut all = vec!["--rm"];
    all.extend_from_slice(opts);
    let mut rl = ctx.spawn(&all, &["sh", "-c", &script]);
    rl.wait_for_line("ready");
    rl.signal(sig);
    rl.finish().assert_code(code);
}

#[test]
fn sigterm_is_forwarded_to_pid_1() {
    signal_is_forwarded(&[], Signal::SIGTERM, "TERM", 42);
}

#[test]
fn sigusr1_is_forwarded_to_pid_1() {
    signal_is_forwarded(&[], Signal::SIGUSR1, "USR1", 43);
}

#[test]
fn sigterm_is_forwarded_through_init() {
    signal_is_forwarded(&["--init"], Signal::SIGTERM, "TERM", 44);
}

#[test]
fn interactive_stdin_reaches_the_command() {
    let Some(ctx) = Ctx::new() else { return };
    let out = output(ctx.run_cmd(&["--rm", "-i"], &["cat"]), Some(b"hello\nworld\n"));
    out.assert_ok();
    assert_eq!(out.stdout, "hello\nworld\n", "{out}");
}

#[test]
fn interactive_stdin_carries_a_megabyte() {
    let Some(ctx) = Ctx::new() else { return };
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let out = output(ctx.run_cmd(&["--rm", "--interactive"], &["sh", "-c", "wc -c; echo done"]), Some(&data));
    out.assert_ok();
    assert_eq!(out.stdout.split_whitespace().collect::<Vec<_>>(), ["1048576", "done"], "{out}");
}

#[test]
fn without_interactive_stdin_is_empty() {
    let Some(ctx) = Ctx::new() else { return };
    let out = output(ctx.run_cmd(&["--rm"], &["sh", "-c", "cat; echo end"]), Some(b"should not arrive\n"));
    out.assert_ok();
    assert_eq!(out.stdout, "end\n", "{out}");
}

#[test]
fn stdout_and_stderr_stay_apart() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&["--rm"], &["sh", "-c", "echo to-out; echo to-err >&2"]);
    out.assert_ok();
    assert_eq!(out.stdout, "to-out\n", "{out}");
    assert!(out.stderr.lines().any(|l| l == "to-err"), "{out}");
    assert!(!out.stderr.contains("to-out"), "{out}");
}

/// `rl run -it … sh` on a pty the test opened: rl's stdin, stdout and stderr are the slave,
/// which is also its controlling terminal, as in a user's terminal session.
#[test]
fn tty_session_on_a_pty() {
    let Some(ctx) = Ctx::new() else { return };
    let mut term = Terminal::spawn(ctx.run_cmd(&["--rm", "-i", "-t"], &["sh"]), 37, 101);

    // The echo of the typed line shows `$((6*7))`, never `42`: "m-42" proves the shell ran it.
    term.send("tty; stty size; echo m-$((6*7))\r");
    if !term.expect("m-42") {
        term.fail("the shell did not answer");
    }
    if !term.seen.contains("/dev/pts/0") {
        term.fail("`tty` inside should print /dev/pts/0");
    }
    if !term.seen.contains("37 101") {
        term.fail("`stty size` inside should be the outer window size 37 101");
    }

    term.set_winsize(40, 120);
    term.send("stty size; echo m-$((7*7))\r");
    if !term.expect("m-49") || !term.seen.contains("40 120") {
        term.fail("after a resize of the outer pty `stty size` should be 40 120");
    }

    // Ctrl-C must reach the container's foreground job, not kill rl.
    term.send(&format!("sleep {}\r", ctx.marker));
    let marker = ctx.marker.clone();
    let rl_pid = term.child.id() as i32;
    let find = || descendants(rl_pid).into_iter().find(|p| p.argv == ["sleep", marker.as_str()]);
    if !poll_until(|| find().is_some()) {
        term.fail("the container's `sleep` never started");
    }
    term.send("\x03");
    if !poll_until(|| find().is_none()) {
        term.fail("Ctrl-C did not interrupt the container's sleep");
    }
    term.send("echo rc=$?\r");
    if !term.expect("rc=130") {
        term.fail("the interrupted sleep should report 130 (SIGINT)");
    }

    term.send("exit 3\r");
    let status = term.wait("rl did not exit after `exit 3`");
    assert_eq!(status.code(), Some(3), "exit status of the shell\n--- terminal:\n{}", term.seen);
    let outer_after = nix::sys::termios::tcgetattr(&term.master).expect("tcgetattr");
    assert_eq!(outer_after.local_flags, term.before.local_flags, "rl must restore the terminal modes");
    assert_eq!(outer_after.input_flags, term.before.input_flags, "rl must restore the terminal modes");
}

#[test]
fn without_tty_stdin_is_not_a_terminal() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&["--rm"], &["sh", "-c", "tty; echo rc=$?"]);
    out.assert_ok();
    assert!(out.stdout.contains("not a tty") && out.stdout.contains("rc=1"), "{out}");
}
