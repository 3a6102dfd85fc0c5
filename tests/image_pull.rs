//! Images from a real registry (Debian's docker-registry on 127.0.0.1, seeded by scripts/test.sh
//! with images built offline by scripts/make-images.py): pull, list, run with the image's
//! config, layers with whiteouts and opaque directories, zstd layers, multi-arch indexes,
//! pull by digest, and errors that leave the store unchanged.
mod common;

use common::*;

fn rl(ctx: &Ctx, args: &[&str]) -> Out {
    ctx.rl_out(args, None)
}

/// Files under the store's layers/ and images/ (to check a failed pull left nothing).
fn store_entries(ctx: &Ctx) -> Vec<String> {
    let mut out = Vec::new();
    for d in ["layers", "images"] {
        if let Ok(rd) = std::fs::read_dir(ctx.store.join(d)) {
            out.extend(rd.flatten().map(|e| format!("{d}/{}", e.file_name().to_string_lossy())));
        }
    }
    out.sort();
    out
}

#[test]
fn pull_lists_and_runs_busybox() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let image = format!("{reg}/test/busybox:latest");
    let out = rl(&ctx, &["pull", &image]);
    out.assert_ok();
    let id = out.stdout_trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "pull prints the image id\n{out}");
    assert!(
        out.stderr.lines().any(|l| l.starts_with("layer sha256:") && l.ends_with("downloaded")),
        "plain progress lines without a terminal\n{out}"
    );
    let list = rl(&ctx, &["images"]);
    list.assert_ok();
    assert!(list.stdout.contains(&format!("{reg}/test/busybox")) && list.stdout.contains(&id[7..19]), "{list}");
    // The image's Cmd is `sh`; arguments replace it.
    let run =
        ctx.run_cmd_in_image(&["--rm"], &image, &["sh", "-c", "echo hi from $(cat /proc/1/cmdline | tr '\\0' ' ')"]);
    run.assert_ok();
    assert_eq!(run.stdout_trim(), "hi from sh -c echo hi from $(cat /proc/1/cmdline | tr '\\0' ' ')", "{run}");
    // Layers are unpacked inside the user namespace: root-owned files belong to the user.
    let layers: Vec<_> = std::fs::read_dir(ctx.store.join("layers")).expect("layers dir").flatten().collect();
    assert_eq!(layers.len(), 1, "one layer stored");
    let meta = std::fs::symlink_metadata(layers[0].path().join("bin/busybox")).expect("busybox in the layer");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), uid(), "root inside = the user outside");
    // uid 1000 inside is the 1000th subordinate id outside (inside 1 = the first).
    let (start, _) = subids("/etc/subuid").expect("a subordinate range");
    let home = std::fs::symlink_metadata(layers[0].path().join("home/user")).expect("/home/user in the layer");
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&home), start + 999, "owners map to subordinate ids");
}

#[test]
fn second_pull_reuses_layers_and_run_uses_the_store() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let image = format!("{reg}/test/busybox:latest");
    let quiet = rl(&ctx, &["pull", "-q", &image]);
    quiet.assert_ok();
    assert_eq!(quiet.stderr, "", "-q prints nothing but the id\n{quiet}");
    let before = store_entries(&ctx);
    let again = rl(&ctx, &["pull", &image]);
    again.assert_ok();
    assert!(again.stderr.contains("0 to fetch"), "{again}");
    assert_eq!(store_entries(&ctx), before);
    ctx.run_cmd_in_image(&["--rm", "--pull=never"], &image, &["true"]).assert_ok();
}

#[test]
fn layered_image_honours_whiteouts_opaque_dirs_and_config() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let image = format!("{reg}/test/layered");
    let script = "pwd; echo LAYERED=$LAYERED; ls /data; ls /opt/old; test -e /data/gone || echo gone-absent; \
                  test -e /data/dir || echo dir-absent; stat -c '%u %a' /bin/suid-test /etc/highuid";
    let out = ctx.run_cmd_in_image(&["--rm"], &image, &["sh", "-c", script]);
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "/data", "WorkingDir from the image\n{out}");
    assert_eq!(lines[1], "LAYERED=1", "Env from the image\n{out}");
    assert_eq!(lines[2], "keep", "/data/gone and /data/dir were deleted by the top layer\n{out}");
    assert_eq!(lines[3], "new", "/opt/old is opaque in the top layer: only `new` remains\n{out}");
    assert!(lines.contains(&"gone-absent") && lines.contains(&"dir-absent"), "{out}");
    assert!(lines.contains(&"0 4755"), "the setuid bit is kept\n{out}");
    assert!(lines.contains(&"0 644"), "/etc/highuid (uid 70000) is remapped to root\n{out}");
    assert!(
        out.stderr.lines().any(|l| l.contains("outside your subordinate range") && l.contains(&image)),
        "the remap is reported, naming the image\n{out}"
    );
}

#[test]
fn entrypoint_and_cmd_follow_docker() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let image = format!("{reg}/test/entrypoint");
    let out = ctx.run_cmd_in_image(&["--rm"], &image, &[]);
    out.assert_ok();
    assert_eq!(out.stdout_trim(), "from-entrypoint default-cmd", "{out}");
    let out = ctx.run_cmd_in_image(&["--rm"], &image, &["given"]);
    assert_eq!(out.stdout_trim(), "from-entrypoint given", "arguments replace CMD\n{out}");
    let out = ctx.run_cmd_in_image(&["--rm", "--entrypoint", "/bin/echo"], &image, &[]);
    assert_eq!(out.stdout_trim(), "", "--entrypoint drops the image's CMD\n{out}");
}

#[test]
fn zstd_and_uncompressed_layers() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let out = ctx.run_cmd_in_image(&["--rm"], &format!("{reg}/test/zstd"), &["cat", "/zstd-marker"]);
    out.assert_ok();
    assert!(!out.stdout.is_empty(), "{out}");
}

#[test]
fn multiarch_picks_the_host_platform_and_explains_a_missing_one() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let image = format!("{reg}/test/multiarch");
    ctx.run_cmd_in_image(&["--rm"], &image, &["true"]).assert_ok();
    let arm = rl(&ctx, &["pull", "--platform", "linux/arm64", &image]);
    arm.assert_ok();
    let before = store_entries(&ctx);
    let none = rl(&ctx, &["pull", "--platform", "linux/s390x", &image]);
    none.assert_error("linux/s390x");
    assert!(none.stderr.contains("linux/amd64") && none.stderr.contains("linux/arm64"), "lists what exists\n{none}");
    assert_eq!(store_entries(&ctx), before, "a failed pull leaves the store unchanged");
}

#[test]
fn pull_by_digest() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let image = format!("{reg}/test/busybox:latest");
    rl(&ctx, &["pull", "-q", &image]).assert_ok();
    let json = rl(&ctx, &["images", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap_or_else(|e| panic!("{e}\n{json}"));
    let digest = v[0]["Digest"].as_str().expect("digest").to_string();
    let fresh = Ctx::with_subids().expect("ctx");
    let by_digest = format!("{reg}/test/busybox@{digest}");
    rl(&fresh, &["pull", &by_digest]).assert_ok();
    fresh.run_cmd_in_image(&["--rm", "--pull=never"], &by_digest, &["true"]).assert_ok();
}

#[test]
fn bad_references_and_missing_images_fail_cleanly() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    rl(&ctx, &["pull", "Not_Valid"]).assert_error("Not_Valid");
    rl(&ctx, &["pull", &format!("{reg}/test/busybox:no-such-tag")]).assert_error("no-such-tag");
    rl(&ctx, &["pull", &format!("{reg}/test/no-such-repo")]).assert_error("no-such-repo");
    // Nothing listens on port 9 of loopback.
    rl(&ctx, &["pull", "127.0.0.1:9/test/busybox"]).assert_error("127.0.0.1:9");
    assert!(store_entries(&ctx).is_empty(), "{:?}", store_entries(&ctx));
    ctx.run_cmd_in_image(&["--rm", "--pull=never"], &format!("{reg}/test/busybox"), &["true"])
        .assert_error("--pull=never");
}

#[test]
fn debian_minbase_runs_with_its_users_and_dynamic_binaries() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let image = format!("{reg}/test/debian");
    rl(&ctx, &["pull", "-q", &image]).assert_ok();
    let out = ctx.run_cmd_in_image(
        &["--rm"],
        &image,
        &[
            "sh",
            "-c",
            "cat /etc/debian_version; stat -c '%U:%G' /var/mail; dpkg-query -W -f '${Package}\\n' dpkg; id -un",
        ],
    );
    out.assert_ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines.first().is_some_and(|v| v.starts_with("12")), "bookworm\n{out}");
    assert_eq!(&lines[1..], ["root:mail", "dpkg", "root"], "file groups from the image, dpkg works\n{out}");
}
