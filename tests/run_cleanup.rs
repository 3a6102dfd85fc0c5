//! Nothing outlives a container: after a normal exit, a failed start, or `kill -9` of rl while
//! the container runs, no process of the test (the payload, fuse-overlayfs, rl's own helpers)
//! and no mount remains, and `--rm` leaves no container in the store.
mod common;

use common::*;
use nix::sys::signal::Signal;

fn overlay_usable(backend: &str) -> bool {
    backend == "kernel"
        || require(
            fuse_usable() && which("fuse-overlayfs").is_some(),
            "/dev/fuse not rw or fuse-overlayfs not installed",
        )
}

fn assert_nothing_left(ctx: &Ctx, dump: &str) {
    let procs = ctx.leftover_processes();
    assert!(procs.is_empty(), "processes of the test remain: {procs:#?}\n{dump}");
    let mounts = ctx.leftover_mounts();
    assert!(mounts.is_empty(), "mounts of the test remain: {mounts:#?}\n{dump}");
}

#[test]
fn rm_removes_the_container() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&["--rm"], &["sh", "-c", "echo data > /etc/newfile"]);
    out.assert_ok();
    assert!(ctx.containers().is_empty(), "--rm leaves {:?}\n{out}", ctx.containers());
}

/// A payload that ends at once races rl's own bookkeeping of its start (the record, the
/// state): every one of many such runs, four at a time, must report the payload's exit.
#[test]
fn quick_rm_runs_in_parallel_report_their_exit() {
    let Some(ctx) = Ctx::new() else { return };
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|i| {
                let ctx = &ctx;
                s.spawn(move || {
                    for _ in 0..25 {
                        let out = ctx.run(&["--rm", "--network", "none"], &["sh", "-c", &format!("exit {i}")]);
                        out.assert_code(i);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a run failed");
        }
    });
    assert!(ctx.containers().is_empty(), "--rm leaves {:?}", ctx.containers());
}

#[test]
fn without_rm_the_container_stays() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&[], &["sh", "-c", "echo data > /etc/newfile"]);
    out.assert_ok();
    assert_eq!(ctx.containers().len(), 1, "one container in <root>/containers\n{out}");
    assert_eq!(ctx.uppers().len(), 1, "with its upper dir\n{out}");
}

/// The container leaves a background process behind; it dies with the container's PID 1.
fn no_leaks_after_exit(backend: &str) {
    let Some(ctx) = Ctx::new() else { return };
    if !overlay_usable(backend) {
        return;
    }
    let script = format!("sleep {} & echo started", ctx.marker);
    let out = ctx.run(&["--rm", "--overlay", backend], &["sh", "-c", &script]);
    out.assert_ok();
    assert_eq!(out.stdout, "started\n", "{out}");
    assert_nothing_left(&ctx, &out.to_string());
    assert!(ctx.containers().is_empty(), "--rm leaves {:?}\n{out}", ctx.containers());
}

#[test]
fn no_leaks_after_exit_kernel_overlay() {
    no_leaks_after_exit("kernel");
}

#[test]
fn no_leaks_after_exit_fuse_overlay() {
    no_leaks_after_exit("fuse");
}

#[test]
fn no_leaks_after_a_failed_exec() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&["--rm"], &["/nonexistent"]);
    out.assert_code(127);
    assert_nothing_left(&ctx, &out.to_string());
    assert!(ctx.containers().is_empty(), "--rm leaves {:?}\n{out}", ctx.containers());
}

#[test]
fn no_leaks_after_a_failed_setup() {
    let Some(ctx) = Ctx::new() else { return };
    let missing = ctx.dir.join("missing");
    let spec = format!("type=bind,source={},target=/x", missing.display());
    let out = ctx.run(&["--rm", "--mount", &spec], &["true"]);
    out.assert_error("missing");
    assert_nothing_left(&ctx, &out.to_string());
    assert!(ctx.containers().is_empty(), "--rm leaves {:?}\n{out}", ctx.containers());
}

/// `kill -9` of rl gives it no chance to clean up: the container and the helpers must still go
/// (parent-death signals, the mount namespace dying with its last process).
fn no_leaks_after_rl_is_killed(backend: &str) {
    let Some(ctx) = Ctx::new() else { return };
    if !overlay_usable(backend) {
        return;
    }
    let script = format!("echo ready; exec sleep {}", ctx.marker);
    let mut rl = ctx.spawn(&["--rm", "--overlay", backend], &["sh", "-c", &script]);
    rl.wait_for_line("ready");
    let marker = ctx.marker.clone();
    rl.wait_for_descendant("sleep MARKER", |p| p.argv == ["sleep", marker.as_str()]);
    let running = ctx.leftover_processes();
    if backend == "fuse" {
        let fuse = running.iter().any(|p| p.argv.first().is_some_and(|a| a.contains("fuse-overlayfs")));
        assert!(fuse, "while it runs, a fuse-overlayfs of this test is visible: {running:#?}\n{}", rl.dump());
    }
    rl.signal(Signal::SIGKILL);
    // finish() also waits for EOF on rl's stdout and stderr, which the container holds.
    let out = rl.finish();
    assert_eq!(signal_of(&out.status), Some(9), "rl died of SIGKILL\n{out}");
    let gone = poll_until(|| ctx.leftover_processes().is_empty());
    assert!(gone, "processes remain after kill -9 of rl: {:#?}\n{out}", ctx.leftover_processes());
    assert_nothing_left(&ctx, &out.to_string());
}

#[test]
fn no_leaks_after_rl_is_killed_kernel_overlay() {
    no_leaks_after_rl_is_killed("kernel");
}

#[test]
fn no_leaks_after_rl_is_killed_fuse_overlay() {
    no_leaks_after_rl_is_killed("fuse");
}

/// After rl is killed the store is still usable: the next run in it works.
#[test]
fn store_still_works_after_rl_is_killed() {
    let Some(ctx) = Ctx::new() else { return };
    let script = format!("echo ready; exec sleep {}", ctx.marker);
    let mut rl = ctx.spawn(&["--rm"], &["sh", "-c", &script]);
    rl.wait_for_line("ready");
    rl.signal(Signal::SIGKILL);
    rl.finish();
    let out = ctx.run(&["--rm"], &["echo", "again"]);
    out.assert_ok();
    assert_eq!(out.stdout, "again\n", "{out}");
}
