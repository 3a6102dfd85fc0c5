//! Hardening, as Podman does it: Podman's 11 default capabilities (bounding set too), no
//! inheritable or ambient ones, no_new_privs, a seccomp filter, masked /proc files, read-only
//! /proc/sys; and the options that loosen it (`--cap-add`, `--cap-drop`,
//! `--security-opt seccomp=unconfined`, `--privileged`).
mod common;

use common::*;
use std::path::Path;

const CAP_CHOWN: u64 = 1 << 0;
const CAP_NET_RAW: u64 = 1 << 13;

/// Every capability this kernel knows.
fn all_caps() -> u64 {
    let last: u32 =
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40);
    (1u64 << (last + 1)) - 1
}

/// The container's own /proc/self/status (the command is `cat`, so "self" is the payload).
fn status(ctx: &Ctx, opts: &[&str]) -> Out {
    let mut all = vec!["--rm"];
    all.extend_from_slice(opts);
    let out = ctx.run(&all, &["cat", "/proc/self/status"]);
    out.assert_ok();
    out
}

fn cap(out: &Out, key: &str) -> u64 {
    status_hex(&out.stdout, key).unwrap_or_else(|| panic!("no {key} in /proc/self/status\n{out}"))
}

fn assert_caps(out: &Out, eff: u64, bnd: u64) {
    for (key, want) in [("CapEff", eff), ("CapPrm", eff), ("CapBnd", bnd), ("CapInh", 0), ("CapAmb", 0)] {
        assert_eq!(cap(out, key), want, "{key} is {:016x}, want {want:016x}\n{out}", cap(out, key));
    }
}

#[test]
fn default_capabilities_are_podmans() {
    let Some(ctx) = Ctx::new() else { return };
    let out = status(&ctx, &[]);
    assert_caps(&out, DEFAULT_CAPS, DEFAULT_CAPS);
    assert_eq!(status_field(&out.stdout, "CapEff"), Some("00000000800405fb"), "{out}");
    assert_eq!(status_field(&out.stdout, "NoNewPrivs"), Some("1"), "{out}");
    assert_eq!(status_field(&out.stdout, "Seccomp"), Some("2"), "a seccomp filter is installed\n{out}");
}

#[test]
fn cap_drop_all_leaves_none() {
    let Some(ctx) = Ctx::new() else { return };
    let out = status(&ctx, &["--cap-drop", "ALL"]);
    assert_caps(&out, 0, 0);
}

#[test]
fn cap_add_net_raw_adds_bit_13() {
    let Some(ctx) = Ctx::new() else { return };
    let out = status(&ctx, &["--cap-add", "NET_RAW"]);
    assert_caps(&out, DEFAULT_CAPS | CAP_NET_RAW, DEFAULT_CAPS | CAP_NET_RAW);
}

#[test]
fn cap_names_may_carry_the_cap_prefix() {
    let Some(ctx) = Ctx::new() else { return };
    let out = status(&ctx, &["--cap-drop", "CAP_CHOWN", "--cap-add", "CAP_NET_RAW"]);
    let want = (DEFAULT_CAPS & !CAP_CHOWN) | CAP_NET_RAW;
    assert_caps(&out, want, want);
}

#[test]
fn cap_drop_all_then_add_one() {
    let Some(ctx) = Ctx::new() else { return };
    let out = status(&ctx, &["--cap-drop", "ALL", "--cap-add", "CHOWN"]);
    assert_caps(&out, CAP_CHOWN, CAP_CHOWN);
}

#[test]
fn cap_add_all_gives_every_capability() {
    let Some(ctx) = Ctx::new() else { return };
    let out = status(&ctx, &["--cap-add", "ALL"]);
    assert_caps(&out, all_caps(), all_caps());
}

#[test]
fn unknown_capability_is_refused() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&["--rm", "--cap-add", "NOT_A_CAP"], &["true"]);
    out.assert_error("NOT_A_CAP");
}

/// A non-root user gets no effective capabilities (as with Podman), only the bounding set.
#[test]
fn non_root_user_has_no_effective_capabilities() {
    let Some(ctx) = Ctx::with_subids() else {
        return;
    };
    let out = status(&ctx, &["-u", "1000"]);
    assert_caps(&out, 0, DEFAULT_CAPS);
}

#[test]
fn privileged_has_every_capability_and_no_seccomp() {
    let Some(ctx) = Ctx::new() else { return };
    let out = status(&ctx, &["--privileged"]);
    assert_caps(&out, all_caps(), all_caps());
    assert_eq!(status_field(&out.stdout, "Seccomp"), Some("0"), "{out}");
}

#[test]
fn mount_is_refused_without_cap_sys_admin() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&["--rm"], &["sh", "-c", "mkdir -p /mnt/t && mount -t tmpfs none /mnt/t && echo mounted"]);
    assert_ne!(out.code(), Some(0), "mount must fail\n{out}");
    assert!(!out.stdout.contains("mounted"), "{out}");
}

#[test]
fn sensitive_proc_files_are_masked() {
    let Some(ctx) = Ctx::new() else { return };
    let files = ["/proc/kcore", "/proc/keys", "/proc/timer_list"];
    let script = "for f in \"$@\"; do \
                    if [ -c $f ]; then echo \"$f masked $(wc -c < $f)\"; \
                    elif [ -e $f ]; then echo \"$f visible\"; else echo \"$f absent\"; fi; done";
    let mut cmd = vec!["sh", "-c", script, "sh"];
    cmd.extend(files);
    let out = ctx.run(&["--rm"], &cmd);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), files.len(), "{out}");
    for (f, line) in files.iter().zip(lines) {
        let masked = line == format!("{f} masked 0");
        let ok = masked || (!Path::new(f).exists() && line == format!("{f} absent"));
        assert!(ok, "{f} must be masked by /dev/null (reads as empty): `{line}`\n{out}");
    }
}

#[test]
fn proc_sys_is_read_only() {
    let Some(ctx) = Ctx::new() else { return };
    let script = "echo 1 > /proc/sys/kernel/ns_last_pid; echo 1 > /proc/sys/net/ipv4/ip_forward; \
                  cat /proc/sys/kernel/hostname";
    let out = ctx.run(&["--rm"], &["sh", "-c", script]);
    out.assert_ok();
    let refused = out.stderr.lines().filter(|l| l.contains("Read-only file system")).count();
    assert_eq!(refused, 2, "both sysctl writes fail with EROFS\n{out}");
    assert!(!out.stdout.trim().is_empty(), "/proc/sys stays readable\n{out}");
}

#[test]
fn seccomp_blocks_nested_user_namespaces() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&["--rm"], &["unshare", "-U", "true"]);
    assert_ne!(out.code(), Some(0), "unshare(CLONE_NEWUSER) must be blocked by default\n{out}");
    assert!(out.code() != Some(125), "rl itself failed\n{out}");
    assert!(out.stderr.contains("Operation not permitted"), "EPERM from the filter\n{out}");
}

#[test]
fn seccomp_unconfined_allows_them() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(
        &["--rm", "--security-opt", "seccomp=unconfined"],
        &["sh", "-c", "unshare -U true && grep Seccomp: /proc/self/status"],
    );
    out.assert_ok();
    assert_eq!(status_field(&out.stdout, "Seccomp"), Some("0"), "{out}");
}

#[test]
fn only_stdio_reaches_the_payload() {
    let Some(ctx) = Ctx::new() else { return };
    let script = format!("echo ready; exec sleep {}", ctx.marker);
    let mut rl = Running::spawn(with_leaked_fd(ctx.run_cmd(&["--rm"], &["sh", "-c", &script])), false);
    rl.wait_for_line("ready");
    let marker = ctx.marker.clone();
    let sleeper = rl.wait_for_descendant("sleep MARKER", |p| p.argv == ["sleep", marker.as_str()]);
    // Seen from the host: the container's process holds exactly stdin, stdout and stderr.
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{}/fd", sleeper.pid))
        .expect("list the payload's fds")
        .map(|e| e.expect("fd entry").file_name().to_string_lossy().into_owned())
        .collect();
    fds.sort();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sleeper.pid), nix::sys::signal::Signal::SIGKILL)
        .expect("kill sleep");
    rl.finish().assert_code(137);
    assert_eq!(fds, ["0", "1", "2"], "the payload may only hold stdio");
}

#[test]
fn init_is_sealed_and_opaque_to_the_container() {
    let Some(ctx) = Ctx::new() else { return };
    let before = std::fs::read(rl_bin()).expect("read the rl binary");
    // The --init PID 1 is rl: the container (root, mapped to the user who owns rl's file) must
    // not reach rl's file through it, nor its fds (CVE-2019-5736).
    let script = "readlink /proc/1/exe >/dev/null 2>&1 && echo link:exe; \
                  cat /proc/1/exe >/dev/null 2>&1 && echo read:exe; \
                  ls /proc/1/fd >/dev/null 2>&1 && echo list:fd; \
                  echo x >> /proc/1/exe 2>/dev/null && echo wrote; echo done";
    let out = output(with_leaked_fd(ctx.run_cmd(&["--rm", "--init"], &["sh", "-c", script])), None);
    out.assert_ok();
    assert_eq!(out.stdout_trim(), "done", "{out}");
    assert_eq!(std::fs::read(rl_bin()).expect("read the rl binary"), before, "the rl binary changed");
}
