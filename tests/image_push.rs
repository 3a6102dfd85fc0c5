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
