//! rl's own failures: exit 125, one `Error: …` line naming the object and the cause, and a
//! `hint: …` line naming the fix and a distro-notes/ file for the host problems rl knows (no
//! newuidmap, newuidmap not setuid, user namespaces disabled, no fuse-overlayfs). Also the
//! degraded modes that still run: no /etc/subuid entry, no XDG_RUNTIME_DIR.
mod common;

use common::*;
use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::process::Command;

#[test]
fn nonexistent_rootfs() {
    let Some(ctx) = Ctx::new() else { return };
    let missing = format!("/nonexistent-rootfs-{}", ctx.marker);
    let out = output(ctx.run_cmd_in(missing.as_ref(), &["--rm"], &["true"]), None);
    out.assert_error(&missing);
    assert_eq!(out.stdout, "", "{out}");
}

#[test]
fn missing_env_file() {
    let Some(ctx) = Ctx::new() else { return };
    let missing = ctx.dir.join("no-such-env-file").display().to_string();
    let out = ctx.run(&["--rm", "--env-file", &missing], &["true"]);
    out.assert_error(&missing);
}

#[test]
fn usage_errors_exit_125() {
    let Some(ctx) = Ctx::new() else { return };
    let cases: [(&[&str], &str); 3] = [
        (&["--overlay", "bogus"], "bogus"),
        (&["--mount", "type=bogus,target=/x"], "bogus"),
        (&["--tmpfs", "relative/path"], "relative/path"),
    ];
    for (opts, needle) in cases {
        let out = ctx.run(opts, &["true"]);
        out.assert_code(125);
        assert!(out.stderr.contains(needle), "the error names `{needle}`\n{out}");
    }
}

/// As with `podman run --no-such-flag IMAGE`: the message names the flag, it does not take
/// it for the command.
#[test]
fn unknown_flag_is_named() {
    let Some(ctx) = Ctx::new() else { return };
    let out = ctx.run(&["--no-such-flag"], &["true"]);
    out.assert_code(125);
    assert!(out.stderr.contains("--no-such-flag"), "the error names the flag\n{out}");
}

/// rl with PATH set to `bin` only; rl itself is called by absolute path.
fn run_with_path(ctx: &Ctx, bin: &std::path::Path, opts: &[&str]) -> Out {
    let mut cmd = ctx.run_cmd(opts, &["true"]);
    cmd.env("PATH", bin);
    output(cmd, None)
}

#[test]
fn missing_newuidmap() {
    let Some(ctx) = Ctx::with_subids() else {
        return;
    };
    let empty = ctx.mkdir("empty-bin");
    let out = run_with_path(&ctx, &empty, &["--rm"]);
    out.assert_error("newuidmap");
    out.assert_hint(&["uidmap"]);
}

#[test]
fn newuidmap_not_setuid() {
    let Some(ctx) = Ctx::with_subids() else {
        return;
    };
    let (Some(uidmap), Some(gidmap)) = (which("newuidmap"), which("newgidmap")) else {
        require(false, "newuidmap/newgidmap not installed");
        return;
    };
    let bin = ctx.mkdir("bin");
    for src in [uidmap, gidmap] {
        let dst = bin.join(src.file_name().unwrap());
        fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        fs::set_permissions(&dst, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = ctx.run_cmd(&["--rm"], &["true"]);
    cmd.env("PATH", path);
    let out = output(cmd, None);
    out.assert_code(125);
    let error = out.stderr.lines().find(|l| l.starts_with("Error: ")).unwrap_or_default();
    assert!(error.contains("newuidmap") || error.contains("newgidmap"), "the error names the helper\n{out}");
    out.assert_hint(&["setuid"]);
}

#[test]
fn user_namespaces_disabled() {
    let Some(ctx) = Ctx::new() else { return };
    if !require(which("unshare").is_some(), "unshare (util-linux) not installed") {
        return;
    }
    // In a user namespace of its own the test may set the limit for everything nested in it.
    let inner = ctx.run_cmd(&["--rm"], &["true"]);
    let mut cmd = Command::new("unshare");
    cmd.args(["--user", "--map-root-user", "sh", "-c"])
        .arg("echo 0 > /proc/sys/user/max_user_namespaces && exec \"$@\"")
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args());
    let out = output(cmd, None);
    out.assert_code(125);
    assert_eq!(out.stderr.lines().filter(|l| l.starts_with("Error: ")).count(), 1, "{out}");
    out.assert_hint(&["max_user_namespaces"]);
}

#[test]
fn fuse_overlayfs_missing() {
    let Some(ctx) = Ctx::new() else { return };
    let bin = ctx.mkdir("bin");
    for name in ["newuidmap", "newgidmap"] {
        if let Some(p) = which(name) {
            symlink(&p, bin.join(name)).unwrap();
        }
    }
    let out = run_with_path(&ctx, &bin, &["--rm", "--overlay", "fuse"]);
    out.assert_error("fuse-overlayfs");
    out.assert_hint(&["fuse-overlayfs"]);
}

#[test]
fn unset_xdg_runtime_dir_falls_back_once() {
    let Some(ctx) = Ctx::new() else { return };
    // No --runroot: the run dir would come from XDG_RUNTIME_DIR.
    let mut cmd = Command::new(rl_bin());
    cmd.arg("--root").arg(&ctx.store).args(["run", "--rm", "--rootfs"]).arg(&ctx.rootfs);
    cmd.args(["echo", "ok"]).env_remove("XDG_RUNTIME_DIR");
    let out = output(cmd, None);
    out.assert_ok();
    assert_eq!(out.stdout, "ok\n", "{out}");
    let said = out.stderr.lines().filter(|l| l.contains("XDG_RUNTIME_DIR")).count();
    assert_eq!(said, 1, "one line says XDG_RUNTIME_DIR is unset and which dir is used instead\n{out}");
}

/// The rootfs may belong to another user (scripts/test.sh shares rltest's fixture), whose ids
/// are unmapped here: the test only reads it.
#[test]
fn nosubid_single_map() {
    let Some(ctx) = Ctx::nosubid() else { return };
    let script = "id -u; cat /proc/self/uid_map; cat /proc/self/gid_map";
    let out = ctx.run(&["--rm"], &["sh", "-c", script]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(lines[0], "0", "root inside\n{out}");
    assert_eq!(parse_id_map(lines[1]), [[0, uid() as u64, 1]], "uid_map\n{out}");
    assert_eq!(parse_id_map(lines[2]), [[0, gid() as u64, 1]], "gid_map\n{out}");
    let warnings = out.stderr.lines().filter(|l| l.contains("warning:") && l.contains("subuid")).count();
    assert_eq!(warnings, 1, "one warning naming /etc/subuid\n{out}");
}

#[test]
fn nosubid_keep_id_and_bind_mount() {
    let Some(ctx) = Ctx::nosubid() else { return };
    let data = ctx.mkdir("data");
    let vol = format!("{}:/data", data.display());
    let out = ctx.run(&["--rm", "--userns", "keep-id", "-v", &vol], &["sh", "-c", "id -u; echo hi > /data/f"]);
    out.assert_ok();
    assert_eq!(out.stdout_trim(), uid().to_string(), "{out}");
    let md = fs::metadata(data.join("f")).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&md), uid(), "{out}");
}
