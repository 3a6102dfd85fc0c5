//! The user namespace containers share outlives them: the first start maps one and leaves a
//! pause process in it; the next starts join it (no setuid helper runs), even when no container
//! runs in between; the pause holds nothing of the store and ends on SIGTERM, after which a start
//! maps a new namespace.
mod common;

use common::*;

fn userns_of(ctx: &Ctx) -> String {
    let out = ctx.run(&["--rm", "--network", "none"], &["readlink", "/proc/self/ns/user"]);
    out.assert_ok();
    out.stdout_trim().to_string()
}

#[test]
fn sequential_starts_share_the_pause_processes_user_namespace() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let first = userns_of(&ctx);
    let pause = ctx.pause_pid().expect("the first start leaves a pause process");
    let held = std::fs::read_link(format!("/proc/{pause}/ns/user")).unwrap();
    assert_eq!(held.to_string_lossy(), first, "the pause holds the container's user namespace");
    // Nothing of the test's dirs stays open in it, and it is nobody's child but init's.
    assert!(ctx.leftover_processes().iter().all(|p| p.pid != pause), "the pause holds files of the store");
    let p = process(pause).expect("the pause runs");
    assert_eq!(p.argv.get(1).map(String::as_str), Some("__pause"), "{p:?}");
    assert!(
        processes().iter().all(|q| q.pid != p.ppid || !q.argv.first().is_some_and(|a| a.starts_with("rl"))),
        "an rl process is its parent: {p:?}"
    );
    // No container runs now; the next ones still land in the same namespace, with the same maps.
    assert_eq!(userns_of(&ctx), first);
    let maps = ctx.run(&["--rm", "--network", "none"], &["cat", "/proc/self/uid_map"]);
    assert!(
        maps.stdout.split_whitespace().collect::<Vec<_>>().starts_with(&["0", &nix::unistd::getuid().to_string(), "1"]),
        "{maps}"
    );
    assert_eq!(ctx.pause_pid(), Some(pause), "the same pause");
    // Ended: the next start maps a new namespace and leaves a new pause.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pause), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert!(poll_until(|| process(pause).is_none_or(|p| p.state == 'Z')), "the pause ends on SIGTERM");
    // (A namespace's inode number is reused once it is freed: the new pause tells it is new.)
    let next = userns_of(&ctx);
    let again = ctx.pause_pid().expect("a new pause");
    assert_ne!(again, pause);
    assert_eq!(std::fs::read_link(format!("/proc/{again}/ns/user")).unwrap().to_string_lossy(), next);
}
