//! The container's filesystem: the rootfs under an overlay whose writes land in the store's
//! upper dir (kernel overlayfs and fuse-overlayfs), bind mounts rw and ro, tmpfs mounts,
//! `--read-only`, and the standard /dev.
mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Path → (mode, size, mtime, uid, link target) of everything under `dir`.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, acc: &mut BTreeMap<String, String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(md) = fs::symlink_metadata(&p) else {
                continue;
            };
            let link = fs::read_link(&p).map(|l| l.display().to_string()).unwrap_or_default();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            acc.insert(rel, format!("{:o} {} {} {} {link}", md.mode(), md.size(), md.mtime(), md.uid()));
            if md.is_dir() {
                walk(root, &p, acc);
            }
        }
    }
    let mut acc = BTreeMap::new();
    walk(dir, dir, &mut acc);
    acc
}

/// The filesystem type of the mount at `mountpoint`, from mountinfo text.
fn fstype<'a>(mountinfo: &'a str, mountpoint: &str) -> Option<&'a str> {
    mountinfo
        .lines()
        .rfind(|l| l.split_whitespace().nth(4) == Some(mountpoint))
        .and_then(|l| l.split_once(" - ")?.1.split_whitespace().next())
}

fn writes_land_in_upper(backend: &str) {
    let Some(ctx) = Ctx::new() else { return };
    if backend == "fuse" {
        let usable = fuse_usable() && which("fuse-overlayfs").is_some();
        if !require(usable, "/dev/fuse not rw or fuse-overlayfs not installed") {
            return;
        }
    }
    let rootfs = ctx.copy_rootfs();
    if !rootfs.join("etc/os-release").exists() {
        fs::write(rootfs.join("etc/os-release"), "ID=rl-test\n").unwrap();
    }
    let before = snapshot(&rootfs);
    let script = "echo new > /etc/newfile && rm /etc/os-release && cat /etc/newfile && \
                  test ! -e /etc/os-release && cat /proc/self/mountinfo";
    let out = output(ctx.run_cmd_in(&rootfs, &["--overlay", backend], &["sh", "-c", script]), None);
    out.assert_ok();
    assert!(out.stdout.starts_with("new\n"), "{out}");
    let fs_type = fstype(&out.stdout, "/").unwrap_or("none");
    let want = if backend == "kernel" { fs_type == "overlay" } else { fs_type.contains("fuse") };
    assert!(want, "--overlay {backend}: / is `{fs_type}`\n{out}");

    assert_eq!(snapshot(&rootfs), before, "the rootfs directory changed\n{out}");
    let uppers = ctx.uppers();
    assert_eq!(uppers.len(), 1, "one <root>/containers/*/upper: {uppers:?}\n{out}");
    let etc = uppers[0].join("etc");
    let newfile = fs::read_to_string(etc.join("newfile"));
    assert_eq!(newfile.ok().as_deref(), Some("new\n"), "upper/etc/newfile\n{out}");
    // The deletion is a whiteout: a 0/0 char device (kernel) or a .wh. file (fuse-overlayfs).
    let wh = fs::symlink_metadata(etc.join("os-release"));
    let char_whiteout = wh.is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0);
    assert!(
        char_whiteout || etc.join(".wh.os-release").exists(),
        "no whiteout for os-release in {}\n{out}",
        etc.display()
    );
}

#[test]
fn writes_land_in_upper_kernel_overlay() {
    writes_land_in_upper("kernel");
}

#[test]
fn writes_land_in_upper_fuse_overlay() {
    writes_land_in_upper("fuse");
}

#[test]
fn bind_mount_is_shared_both_ways() {
    let Some(ctx) = Ctx::new() else { return };
    let data = ctx.mkdir("data");
    fs::write(data.join("in"), "from host\n").unwrap();
    let vol = format!("{}:/data", data.display());
    let out = ctx.run(&["--rm", "-v", &vol], &["sh", "-c", "cat /data/in && echo from container > /data/out"]);
    out.assert_ok();
    assert_eq!(out.stdout, "from host\n", "{out}");
    let written = fs::read_to_string(data.join("out"));
    assert_eq!(written.ok().as_deref(), Some("from container\n"), "write visible on the host\n{out}");
    let md = fs::metadata(data.join("out")).unwrap();
    assert_eq!(md.uid(), uid(), "container root writes as the host user\n{out}");
}

fn assert_read_only_bind(data: &Path, out: &Out) {
    assert_ne!(out.code(), Some(0), "writing to a read-only bind mount must fail\n{out}");
    assert!(out.code() != Some(125), "rl itself failed\n{out}");
    assert!(out.stdout.starts_with("from host\n"), "reading works\n{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert!(!data.join("out").exists(), "nothing written on the host\n{out}");
}

#[test]
fn bind_mount_ro_refuses_writes() {
    let Some(ctx) = Ctx::new() else { return };
    let data = ctx.mkdir("data");
    fs::write(data.join("in"), "from host\n").unwrap();
    let vol = format!("{}:/data:ro", data.display());
    let out = ctx.run(&["--rm", "-v", &vol], &["sh", "-c", "cat /data/in && echo x > /data/out"]);
    assert_read_only_bind(&data, &out);
}

#[test]
fn mount_option_bind_readonly() {
    let Some(ctx) = Ctx::new() else { return };
    let data = ctx.mkdir("data");
    fs::write(data.join("in"), "from host\n").unwrap();
    let spec = format!("type=bind,source={},target=/srv/data,readonly", data.display());
    let out = ctx.run(&["--rm", "--mount", &spec], &["sh", "-c", "cat /srv/data/in && echo x > /srv/data/out"]);
    assert_read_only_bind(&data, &out);
}

#[test]
fn bind_mount_of_a_single_file() {
    let Some(ctx) = Ctx::new() else { return };
    let file = ctx.dir.join("config");
    fs::write(&file, "setting=1\n").unwrap();
    let vol = format!("{}:/etc/app.conf:ro", file.display());
    let out = ctx.run(&["--rm", "-v", &vol], &["cat", "/etc/app.conf"]);
    out.assert_ok();
    assert_eq!(out.stdout, "setting=1\n", "{out}");
}

#[test]
fn mount_option_tmpfs() {
    let Some(ctx) = Ctx::new() else { return };
    let spec = "type=tmpfs,target=/scratch";
    let out = ctx.run(&["--mount", spec], &["sh", "-c", "echo x > /scratch/f && cat /scratch/f /proc/self/mountinfo"]);
    out.assert_ok();
    assert!(out.stdout.starts_with("x\n"), "{out}");
    assert_eq!(fstype(&out.stdout, "/scratch"), Some("tmpfs"), "{out}");
    for upper in ctx.uppers() {
        assert!(!upper.join("scratch/f").exists(), "a tmpfs write reached the upper dir\n{out}");
    }
}

#[test]
fn tmpfs_option_with_size_limit() {
    let Some(ctx) = Ctx::new() else { return };
    let script = "cat /proc/self/mountinfo; echo small > /scratch/small && echo small-ok; \
                  dd if=/dev/zero of=/scratch/big bs=1024 count=2048";
    let out = ctx.run(&["--rm", "--tmpfs", "/scratch:size=1m"], &["sh", "-c", script]);
    assert_eq!(fstype(&out.stdout, "/scratch"), Some("tmpfs"), "{out}");
    assert!(out.stdout.contains("small-ok"), "the tmpfs is writable\n{out}");
    assert_ne!(out.code(), Some(0), "2 MiB cannot fit in size=1m\n{out}");
    assert!(out.stderr.contains("No space left on device"), "{out}");
}

#[test]
fn read_only_root_keeps_tmp_writable() {
    let Some(ctx) = Ctx::new() else { return };
    let script = "touch /newfile; echo rc=$?; touch /tmp/a /var/tmp/b /run/c && echo tmp-ok; cat /proc/self/mountinfo";
    let out = ctx.run(&["--read-only"], &["sh", "-c", script]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"rc=1"), "writing to / must fail\n{out}");
    assert!(out.stderr.contains("Read-only file system"), "{out}");
    assert_eq!(lines.get(1), Some(&"tmp-ok"), "/tmp, /var/tmp and /run stay writable\n{out}");
    for dir in ["/tmp", "/var/tmp", "/run"] {
        assert_eq!(fstype(&out.stdout, dir), Some("tmpfs"), "{dir} is a tmpfs\n{out}");
    }
    for upper in ctx.uppers() {
        assert!(!upper.join("newfile").exists(), "a write reached the upper dir\n{out}");
    }
}

#[test]
fn dev_has_the_standard_nodes() {
    let Some(ctx) = Ctx::new() else { return };
    let script = "ls /dev; echo x > /dev/null && echo null-ok; head -c 5 /dev/urandom | wc -c; \
                  head -c 3 /dev/zero | wc -c; echo x > /dev/full; echo full-rc=$?";
    let out = ctx.run(&["--rm"], &["sh", "-c", script]);
    out.assert_ok();
    let names: Vec<&str> = out.stdout.split_whitespace().collect();
    for want in
        ["null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm", "fd", "stdin", "stdout", "stderr"]
    {
        assert!(names.contains(&want), "/dev/{want} is missing\n{out}");
    }
    for want in ["null-ok", "5", "3", "full-rc=1"] {
        assert!(names.contains(&want), "expected `{want}`\n{out}");
    }
    assert!(!names.contains(&"kmsg") && !names.contains(&"sda"), "host devices leak into /dev\n{out}");
}
