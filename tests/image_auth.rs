//! Credentials and registry configuration: `rl login`/`logout` against a registry that wants a
//! password (Debian's docker-registry with Basic auth on 127.0.0.1), auth.json as Podman writes
//! it, Docker's config.json, and registries.conf mirrors.
mod common;

use common::*;

fn auth_registry() -> Option<(String, String, String)> {
    let reg = std::env::var("RL_TEST_AUTH_REGISTRY").ok().filter(|r| !r.is_empty());
    let creds = std::env::var("RL_TEST_AUTH_CREDS").ok().filter(|c| c.contains(':'));
    if !require(reg.is_some() && creds.is_some(), "RL_TEST_AUTH_REGISTRY/RL_TEST_AUTH_CREDS are not set") {
        return None;
    }
    let creds = creds.unwrap_or_default();
    let (u, p) = creds.split_once(':').unwrap_or_default();
    Some((reg.unwrap_or_default(), u.to_string(), p.to_string()))
}

fn rl(ctx: &Ctx, args: &[&str], stdin: Option<&[u8]>) -> Out {
    ctx.rl_isolated(args, stdin)
}

#[test]
fn login_pull_logout_round_trip() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let Some((reg, user, pass)) = auth_registry() else { return };
    let image = format!("{reg}/test/busybox");
    let denied = rl(&ctx, &["pull", &image], None);
    denied.assert_error("requires authentication");
    let login = format!("hint: log in with `rl login {reg}`");
    assert!(denied.stderr.lines().any(|l| l == login), "a hint line says how to log in\n{denied}");

    let wrong = rl(&ctx, &["login", "-u", &user, "--password-stdin", &reg], Some(b"not-the-password\n"));
    wrong.assert_error("denied");
    assert!(!ctx.dir.join("auth.json").exists(), "a failed login stores nothing");

    rl(&ctx, &["login", "-u", &user, "--password-stdin", &reg], Some(format!("{pass}\n").as_bytes())).assert_ok();
    let file = std::fs::read_to_string(ctx.dir.join("auth.json")).expect("auth.json written");
    let doc: serde_json::Value = serde_json::from_str(&file).expect("auth.json is JSON");
    assert!(doc["auths"][&reg]["auth"].is_string(), "Podman's auth.json shape\n{file}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(ctx.dir.join("auth.json")).unwrap().permissions());
    assert_eq!(mode & 0o077, 0, "auth.json is private");

    rl(&ctx, &["pull", &image], None).assert_ok();
    rl(&ctx, &["logout", &reg], None).assert_ok();
    rl(&ctx, &["logout", &reg], None).assert_error("not logged in");
    rl(&ctx, &["pull", &format!("{reg}/test/entrypoint")], None).assert_error("requires authentication");
}

#[test]
fn docker_config_json_credentials_are_read() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let Some((reg, user, pass)) = auth_registry() else { return };
    let docker = ctx.mkdir("docker");
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{user}:{pass}"));
    std::fs::write(docker.join("config.json"), format!(r#"{{"auths":{{"{reg}":{{"auth":"{auth}"}}}}}}"#)).unwrap();
    rl(&ctx, &["pull", &format!("{reg}/test/busybox")], None).assert_ok();
}

#[test]
fn a_mirror_serves_another_registrys_names() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let reg = std::env::var("RL_TEST_REGISTRY").ok().filter(|r| !r.is_empty());
    if !require(reg.is_some(), "RL_TEST_REGISTRY is not set") {
        return;
    }
    let reg = reg.unwrap_or_default();
    let config = ctx.mkdir("config/rl");
    // `hub.invalid` does not exist; its mirror is the local registry. A broken first mirror is
    // passed over.
    let conf = format!(
        "[[registry]]\nprefix = \"hub.invalid\"\nlocation = \"hub.invalid\"\n\
         [[registry.mirror]]\nlocation = \"127.0.0.1:9\"\n\
         [[registry.mirror]]\nlocation = \"{reg}\"\n"
    );
    std::fs::write(config.join("registries.conf"), conf).unwrap();
    let out = rl(&ctx, &["pull", "hub.invalid/test/busybox"], None);
    out.assert_ok();
    assert!(out.stderr.contains("127.0.0.1:9"), "the failed mirror is reported\n{out}");
    let run = ctx.run_cmd_in_image(&["--rm", "--pull=never"], "hub.invalid/test/busybox", &["echo", "mirrored"]);
    assert_eq!(run.stdout_trim(), "mirrored", "{run}");
}

#[test]
fn short_names_resolve_through_the_search_registries() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    // The first search registry is empty (answers 404), the second has the image.
    let Some(empty) = OwnRegistry::start(&ctx.mkdir("empty-registry"), "", "") else { return };
    let conf = ctx.mkdir("config/containers").join("registries.conf");
    std::fs::write(&conf, format!("unqualified-search-registries = [\"{}\", \"{reg}\"]\n", empty.addr)).unwrap();

    let pulled = rl(&ctx, &["pull", "-q", "test/busybox"], None);
    pulled.assert_ok();
    let names = rl(&ctx, &["images", "--format", "{{.Repository}}:{{.Tag}}"], None);
    names.assert_ok();
    assert_eq!(names.stdout_trim(), format!("{reg}/test/busybox:latest"), "stored under the registry that had it");
    // Every verb finds it by the short name again, without pulling.
    let run = rl(&ctx, &["run", "--rm", "--pull=never", "test/busybox", "echo", "short ok"], None);
    run.assert_ok();
    assert_eq!(run.stdout_trim(), "short ok");
    rl(&ctx, &["image", "inspect", "test/busybox"], None).assert_ok();

    let missing = rl(&ctx, &["pull", "test/not-there"], None);
    missing.assert_error("no search registry has it");
    for tried in [format!("`{}/test/not-there:latest`", empty.addr), format!("`{reg}/test/not-there:latest`")] {
        assert!(missing.stderr.contains(&tried), "the error names every try: {tried}\n{missing}");
    }
}
