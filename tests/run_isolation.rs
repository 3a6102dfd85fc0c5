//! What the container cannot see of the host: its hostname, its processes, its network
//! interfaces, its mounts. Each is checked inside the container and, where the host could be
//! affected, on the host too.
mod common;

use common::*;
use std::collections::BTreeSet;

#[test]
fn hostname_is_the_containers_own() {
    let Some(ctx) = Ctx::new() else { return };
    let before = nix::unistd::gethostname().expect("gethostname");
    let out = ctx.run(&["--rm", "--hostname", "foo"], &["sh", "-c", "hostname; cat /proc/sys/kernel/hostname"]);
    out.assert_ok();
    assert_eq!(out.stdout, "foo\nfoo\n", "{out}");
    assert_eq!(nix::unistd::gethostname().expect("gethostname"), before, "host's hostname changed\n{out}");
}

#[test]
fn setting_the_hostname_inside_stays_inside() {
    let Some(ctx) = Ctx::new() else { return };
    let before = nix::unistd::gethostname().expect("gethostname");
    // sethostname needs CAP_SYS_ADMIN (over the container's own UTS namespace).
    let out = ctx.run(&["--rm", "--cap-add", "SYS_ADMIN"], &["sh", "-c", "hostname changed-inside && hostname"]);
    out.assert_ok();
    assert_eq!(out.stdout_trim(), "changed-inside", "{out}");
    assert_eq!(nix::unistd::gethostname().expect("gethostname"), before, "host's hostname changed\n{out}");
}

/// The container's /proc lists only its own processes: sh (PID 1) and the ls it runs.
#[test]
fn host_processes_are_invisible() {
    let Some(ctx) = Ctx::new() else { return };
    let host_count = processes().len();
    let out = ctx.run(&["--rm"], &["sh", "-c", "ls /proc; echo ---; ps -o pid,args"]);
    out.assert_ok();
    let (ls, ps) = out.stdout.split_once("---\n").unwrap_or_else(|| panic!("{out}"));
    let pids: BTreeSet<u32> = ls.split_whitespace().filter_map(|e| e.parse().ok()).collect();
    assert!(pids.contains(&1), "/proc has PID 1\n{out}");
    assert!(pids.len() <= 3, "only the container's pids in /proc, not the host's {host_count}\n{out}");
    let rows = ps.lines().skip(1).filter(|l| !l.trim().is_empty()).count();
    assert!(rows <= 3, "ps shows only sh and ps\n{out}");
}

#[test]
fn container_process_is_pid_1_inside_and_a_normal_pid_outside() {
    let Some(ctx) = Ctx::new() else { return };
    let mut rl = ctx.spawn(&["--rm"], &["sh", "-c", &format!("echo ready; exec sleep {}", ctx.marker)]);
    rl.wait_for_line("ready");
    let marker = ctx.marker.clone();
    let sleeper = rl.wait_for_descendant("sleep MARKER", |p| p.argv == ["sleep", marker.as_str()]);
    // NSpid in the host's view lists the pid in each namespace, innermost last.
    let status = std::fs::read_to_string(format!("/proc/{}/status", sleeper.pid)).unwrap_or_default();
    let nspid = status_field(&status, "NSpid").unwrap_or("").to_string();
    rl.signal(nix::sys::signal::Signal::SIGKILL);
    let out = rl.finish();
    let ids: Vec<&str> = nspid.split_whitespace().collect();
    assert_eq!(ids.last(), Some(&"1"), "NSpid of the container's process: {nspid}\n{out}");
    assert_eq!(ids.first(), Some(&sleeper.pid.to_string().as_str()), "NSpid: {nspid}\n{out}");
}

#[test]
fn network_none_has_only_loopback() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&["--rm", "--network", "none"], &["sh", "-c", "ls /sys/class/net; echo ---; cat /proc/net/dev"]);
    out.assert_ok();
    let (ls, dev) = out.stdout.split_once("---\n").unwrap_or_else(|| panic!("{out}"));
    let ifaces: Vec<&str> = ls.split_whitespace().collect();
    assert_eq!(ifaces, ["lo"], "only loopback in /sys/class/net\n{out}");
    let devs: Vec<&str> = dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    assert_eq!(devs, ["lo"], "only loopback in /proc/net/dev\n{out}");
}

#[test]
fn loopback_is_up() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&["--rm"], &["cat", "/sys/class/net/lo/flags"]);
    out.assert_ok();
    let flags = u32::from_str_radix(out.stdout_trim().trim_start_matches("0x"), 16);
    assert!(flags.is_ok_and(|f| f & 1 == 1), "lo has IFF_UP\n{out}");
}

#[test]
fn host_mounts_are_invisible() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&["--rm"], &["cat", "/proc/self/mountinfo"]);
    out.assert_ok();
    let hidden = [ctx.rootfs.to_string_lossy().into_owned(), ctx.dir.to_string_lossy().into_owned()];
    for line in out.stdout.lines() {
        let mountpoint = line.split_whitespace().nth(4).unwrap_or("");
        for h in &hidden {
            assert!(!mountpoint.starts_with(h.as_str()), "a host path is visible inside: {line}\n{out}");
        }
    }
    let root = out.stdout.lines().find(|l| l.split_whitespace().nth(4) == Some("/"));
    assert!(root.is_some_and(|l| l.contains("overlay")), "/ is the overlay\n{out}");
}

#[test]
fn namespaces_are_not_the_hosts() {
    let Some(ctx) = Ctx::new() else { return };
    let kinds = ["user", "mnt", "pid", "uts", "ipc", "net"];
    let paths: Vec<String> = kinds.iter().map(|k| format!("/proc/self/ns/{k}")).collect();
    let mut cmd = vec!["sh", "-c", "for f; do readlink $f; done", "sh"];
    cmd.extend(paths.iter().map(String::as_str));
    let out = ctx.run(&["--rm"], &cmd);
    out.assert_ok();
    let inside: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(inside.len(), kinds.len(), "{out}");
    for ((kind, path), seen) in kinds.iter().zip(&paths).zip(&inside) {
        let host = std::fs::read_link(path).expect("readlink /proc/self/ns");
        assert_ne!(host.to_string_lossy(), *seen, "{kind} namespace shared with the host\n{out}");
    }
}
