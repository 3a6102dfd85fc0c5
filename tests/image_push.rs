//! `rl push` round trips through real registries: what was pushed pulls back into a fresh store
//! and runs the same (whiteouts and opaque directories survive the export), and a registry that
//! wants a password takes the push only after `rl login`.
mod common;

use common::*;

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

fn rl(ctx: &Ctx, args: &[&str], stdin: Option<&[u8]>) -> Out {
    let mut c = ctx.rl();
    c.env("REGISTRY_AUTH_FILE", ctx.dir.join("auth.json")).env("XDG_CONFIG_HOME", ctx.dir.join("config")).args(args);
    output(c, stdin)
}

#[test]
fn push_then_pull_into_a_fresh_store_keeps_the_filesystem() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let reg = env("RL_TEST_REGISTRY");
    if !require(reg.is_some(), "RL_TEST_REGISTRY is not set") {
        return;
    }
    let reg = reg.unwrap_or_default();
    let src = format!("{reg}/test/layered");
    rl(&ctx, &["pull", "-q", &src], None).assert_ok();
    let dest = format!("{reg}/pushed/layered-{}:t1", ctx.marker);
    let out = rl(&ctx, &["push", &src, &dest], None);
    out.assert_ok();
    assert!(out.stdout_trim().starts_with("sha256:"), "push prints the manifest digest\n{out}");

    let fresh = Ctx::with_subids().expect("a second context");
    let run = fresh.run_cmd_in_image(
        &["--rm"],
        &dest,
        &["sh", "-c", "pwd; ls /data; ls /opt/old; stat -c %a /bin/suid-test"],
    );
    run.assert_ok();
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), ["/data", "keep", "new", "4755"], "{run}");
}

#[test]
fn push_needs_login_where_the_registry_wants_it() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let (reg, auth_reg, creds) = (env("RL_TEST_REGISTRY"), env("RL_TEST_AUTH_REGISTRY"), env("RL_TEST_AUTH_CREDS"));
    if !require(reg.is_some() && auth_reg.is_some() && creds.is_some(), "the test registries are not set") {
        return;
    }
    let (reg, auth_reg, creds) = (reg.unwrap_or_default(), auth_reg.unwrap_or_default(), creds.unwrap_or_default());
    let (user, pass) = creds.split_once(':').unwrap_or_default();
    let src = format!("{reg}/test/busybox");
    rl(&ctx, &["pull", "-q", &src], None).assert_ok();
    let dest = format!("{auth_reg}/pushed/busybox-{}:v2", ctx.marker);
    rl(&ctx, &["push", &src, &dest], None).assert_error("requires authentication");
    rl(&ctx, &["login", "-u", user, "--password-stdin", &auth_reg], Some(format!("{pass}\n").as_bytes())).assert_ok();
    rl(&ctx, &["push", "-q", &src, &dest], None).assert_ok();
    // Pushing again finds every blob there already.
    let again = rl(&ctx, &["push", &src, &dest], None);
    again.assert_ok();
    assert!(again.stderr.contains("already in"), "{again}");
    let pulled = rl(&ctx, &["pull", &dest], None);
    pulled.assert_ok();
    ctx.run_cmd_in_image(&["--rm", "--pull=never"], &dest, &["true"]).assert_ok();
}

/// The image id of `name` in `ctx`'s store.
fn image_id(ctx: &Ctx, name: &str) -> String {
    let out = rl(ctx, &["image", "inspect", name], None);
    out.assert_ok();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).expect("inspect prints JSON");
    doc[0]["Id"].as_str().unwrap_or_default().to_string()
}

#[test]
fn push_to_another_repository_mounts_the_pulled_blobs() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let src = format!("{reg}/test/layered");
    rl(&ctx, &["pull", "-q", &src], None).assert_ok();
    let original = image_id(&ctx, &src);
    let dest = format!("{reg}/pushed/mounted-{}:m1", ctx.marker);
    let out = rl(&ctx, &["push", &src, &dest], None);
    out.assert_ok();
    let mounted = out.stderr.lines().filter(|l| l.contains(&format!("mounted from `{reg}/test/layered`"))).count();
    let layers = out.stderr.lines().filter(|l| l.starts_with("blob ") || l.starts_with("pushing blob")).count();
    assert!(mounted >= 3 && mounted == layers, "every layer is mounted, none uploaded\n{out}");
    assert!(!out.stderr.contains("pushing blob"), "{out}");

    // Nothing was re-encoded: a fresh store pulls the very same image (same config, same id).
    let fresh = Ctx::with_subids().expect("a second context");
    rl(&fresh, &["pull", "-q", &dest], None).assert_ok();
    assert_eq!(image_id(&fresh, &dest), original, "the pushed image is the pulled one");
    let run = fresh.run_cmd_in_image(&["--rm", "--pull=never"], &dest, &["ls", "/data", "/opt/old"]);
    run.assert_ok();
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), ["/data:", "keep", "", "/opt/old:", "new"], "{run}");

    // A push to a third repository mounts again, and the manifest is the same.
    let third = format!("{reg}/pushed/mounted-{}-b:m1", ctx.marker);
    let again = rl(&ctx, &["push", &src, &third], None);
    again.assert_ok();
    assert!(!again.stderr.contains("pushing blob"), "{again}");
    assert_eq!(again.stdout_trim(), out.stdout_trim(), "same manifest in both repositories");
}

#[test]
fn large_blobs_go_up_in_chunks() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let own = ctx.mkdir("own-registry");
    let Some(registry) = OwnRegistry::start(&own, "", "") else { return };
    let src = format!("{reg}/test/busybox");
    rl(&ctx, &["pull", "-q", &src], None).assert_ok();
    let dest = format!("{}/chunked/busybox:c1", registry.addr);
    let mut push = ctx.rl();
    push.env("REGISTRY_AUTH_FILE", ctx.dir.join("auth.json"))
        .env("XDG_CONFIG_HOME", ctx.dir.join("config"))
        .env("RL_PUSH_CHUNK_SIZE", "65536")
        .args(["push", &src, &dest]);
    let out = output(push, None);
    out.assert_ok();
    assert!(out.stderr.contains("pushing blob"), "the layer is uploaded, not mounted\n{out}");
    // docker-registry logs every request it completes.
    let log = registry.log();
    let patches =
        log.lines().filter(|l| l.contains("http.request.method=PATCH") && l.contains("response completed")).count();
    assert!(patches >= 8, "a ~1 MB layer in 64 KiB chunks is many PATCH requests, saw {patches}\n{log}");

    // What rl uploaded is remembered: a push to another repository there mounts it.
    let other = format!("{}/chunked/other:c2", registry.addr);
    let again = rl(&ctx, &["push", &src, &other], None);
    again.assert_ok();
    assert!(again.stderr.contains(&format!("mounted from `{}/chunked/busybox`", registry.addr)), "{again}");
    assert_eq!(again.stdout_trim(), out.stdout_trim(), "the same manifest");

    let fresh = Ctx::with_subids().expect("a second context");
    let run = fresh.run_cmd_in_image(&["--rm"], &other, &["busybox", "echo", "chunked ok"]);
    run.assert_ok();
    assert_eq!(run.stdout_trim(), "chunked ok");
}
