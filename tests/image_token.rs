//! Token auth for real: Debian's docker-registry configured with `auth: token`, trusting the
//! key of a small token server in the test process (common/token_server.rs), which records
//! every request. Each test seeds its own registry with `rl login` + `rl push` of images pulled
//! from the shared test registry, then checks what rl does from both sides: the outcome of the
//! command, and what it asked the token server for (scopes, credentials, how often).
mod common;

use common::*;

const USER: &str = "alice";
const PASSWORD: &str = "alice-password";

fn rl(ctx: &Ctx, args: &[&str], stdin: Option<&[u8]>) -> Out {
    ctx.rl_isolated(args, stdin)
}

/// A registry with `auth: token` and its token server; the shared test registry's address.
struct TokenRegistry {
    tokens: TokenServer,
    registry: OwnRegistry,
    shared: String,
}

impl TokenRegistry {
    /// Starts both in `ctx`'s directory; `realm_query` is appended to the realm the registry
    /// sends in its challenges.
    fn start(ctx: &Ctx, realm_query: &str) -> Option<TokenRegistry> {
        let shared = test_registry()?;
        let tokens = TokenServer::start(&ctx.dir.join("token-server"), &[(USER, PASSWORD)])?;
        let registry = OwnRegistry::start(&ctx.dir.join("token-registry"), "", &tokens.auth_yaml(realm_query))?;
        Some(TokenRegistry { tokens, registry, shared })
    }

    fn addr(&self) -> &str {
        &self.registry.addr
    }

    /// What both servers saw, for assertion messages.
    fn dump(&self) -> String {
        format!("--- token requests:\n{}--- registry log:\n{}", self.tokens.dump(), self.registry.log())
    }

    /// Logs `ctx` in as alice, then for each (`test/NAME`, `DEST`) pulls `test/NAME` from the
    /// shared registry and pushes it as `DEST` to this registry.
    fn seed(&self, ctx: &Ctx, images: &[(&str, &str)]) {
        login(ctx, self.addr());
        for (src, dest) in images {
            let src = format!("{}/{src}", self.shared);
            rl(ctx, &["pull", "-q", &src], None).assert_ok();
            let dest = format!("{}/{dest}", self.addr());
            let out = rl(ctx, &["push", "-q", &src, &dest], None);
            assert_eq!(out.code(), Some(0), "seed push {dest}\n{out}\n{}", self.dump());
        }
    }
}

fn login(ctx: &Ctx, registry: &str) {
    rl(ctx, &["login", "-u", USER, "--password-stdin", registry], Some(format!("{PASSWORD}\n").as_bytes())).assert_ok();
}

/// A store that has seen no registry yet and no credentials.
fn fresh() -> Ctx {
    Ctx::with_subids().expect("a second test context")
}

fn image_ids(ctx: &Ctx) -> String {
    let out = rl(ctx, &["images", "-q"], None);
    out.assert_ok();
    out.stdout_trim().to_string()
}

#[test]
fn anonymous_pull_of_a_public_repository_goes_through_the_token_flow() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let Some(reg) = TokenRegistry::start(&ctx, "") else { return };
    reg.seed(&ctx, &[("test/busybox", "public/busybox")]);
    reg.tokens.clear();

    let client = fresh();
    let image = format!("{}/public/busybox", reg.addr());
    let pulled = rl(&client, &["pull", &image], None);
    assert_eq!(pulled.code(), Some(0), "{pulled}\n{}", reg.dump());
    let requests = reg.tokens.requests();
    assert!(!requests.is_empty(), "the pull went through the token server\n{}", reg.dump());
    assert!(requests.iter().all(|r| r.anonymous()), "no credentials were sent\n{}", reg.dump());
    assert!(
        requests.iter().any(|r| r.status == 200
            && r.scopes == ["repository:public/busybox:pull"]
            && r.param("service") == Some(TOKEN_SERVICE)),
        "an anonymous request for `repository:public/busybox:pull` of the challenge's service\n{}",
        reg.dump()
    );

    let run = client.run_cmd_in_image(
        &["--rm", "--pull=never"],
        &image,
        &["sh", "-c", "echo via token; busybox | head -n 1"],
    );
    run.assert_ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"via token"), "{run}");
    assert!(lines.get(1).is_some_and(|l| l.starts_with("BusyBox v")), "busybox ran from the pulled image\n{run}");
}

#[test]
fn private_pull_without_login_fails_and_says_how_to_log_in() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let Some(reg) = TokenRegistry::start(&ctx, "") else { return };
    reg.seed(&ctx, &[("test/busybox", "alice/busybox")]);
    reg.tokens.clear();

    let client = fresh();
    let denied = rl(&client, &["pull", &format!("{}/alice/busybox", reg.addr())], None);
    denied.assert_error("requires authentication");
    let login = format!("hint: log in with `rl login {}`", reg.addr());
    assert!(denied.stderr.lines().any(|l| l == login), "a hint line says how to log in\n{denied}");
    assert_eq!(image_ids(&client), "", "a refused pull stores nothing");
    let requests = reg.tokens.requests();
    assert!(
        requests.iter().any(|r| r.anonymous() && r.scopes == ["repository:alice/busybox:pull"] && r.granted.is_empty()),
        "rl asked anonymously and got a token granting nothing\n{}",
        reg.dump()
    );
}

#[test]
fn login_is_checked_by_the_token_server_and_push_asks_for_pull_and_push() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let Some(reg) = TokenRegistry::start(&ctx, "") else { return };
    let addr = reg.addr().to_string();

    let wrong = rl(&ctx, &["login", "-u", USER, "--password-stdin", &addr], Some(b"not-the-password\n"));
    wrong.assert_error("denied");
    assert!(!ctx.dir.join("auth.json").exists(), "a failed login stores nothing");
    assert!(
        reg.tokens.requests().iter().any(|r| r.user.as_deref() == Some(USER) && r.status == 401),
        "the token server refused the password\n{}",
        reg.dump()
    );

    reg.tokens.clear();
    login(&ctx, &addr);
    assert!(ctx.dir.join("auth.json").is_file(), "a good login is stored");
    let requests = reg.tokens.requests();
    assert!(
        requests.iter().any(|r| r.user.as_deref() == Some(USER) && r.status == 200),
        "the login was checked at the token server\n{}",
        reg.dump()
    );
    assert!(
        requests.iter().all(|r| r.user.is_none() || r.param("account") == Some(USER)),
        "a request with credentials names the account, as Docker's client does\n{}",
        reg.dump()
    );

    let src = format!("{}/test/busybox", reg.shared);
    rl(&ctx, &["pull", "-q", &src], None).assert_ok();
    reg.tokens.clear();
    let dest = format!("{addr}/alice/pushed:v1");
    let pushed = rl(&ctx, &["push", &src, &dest], None);
    assert_eq!(pushed.code(), Some(0), "{pushed}\n{}", reg.dump());
    let requests = reg.tokens.requests();
    assert!(
        requests.iter().all(|r| r.user.as_deref() == Some(USER)),
        "every token request of the push carried the credentials\n{}",
        reg.dump()
    );
    assert!(
        requests.iter().any(|r| r.scopes.contains(&"repository:alice/pushed:pull,push".to_string())
            && r.granted.contains(&"repository:alice/pushed:pull,push".to_string())),
        "the push asked for `pull,push` on the destination\n{}",
        reg.dump()
    );

    // What was pushed pulls back, with the login, into another store and runs.
    let client = fresh();
    login(&client, &addr);
    let run = rl(&client, &["run", "--rm", &dest, "echo", "pushed through a token"], None);
    run.assert_ok();
    assert_eq!(run.stdout_trim(), "pushed through a token", "{run}");
}

#[test]
fn a_multi_layer_pull_asks_for_one_token() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let Some(reg) = TokenRegistry::start(&ctx, "") else { return };
    reg.seed(&ctx, &[("test/layered", "public/layered")]);
    reg.tokens.clear();

    let client = fresh();
    let image = format!("{}/public/layered", reg.addr());
    let pulled = rl(&client, &["pull", &image], None);
    assert_eq!(pulled.code(), Some(0), "{pulled}\n{}", reg.dump());
    let asked =
        reg.tokens.requests().iter().filter(|r| r.scopes.contains(&"repository:public/layered:pull".into())).count();
    assert_eq!(asked, 1, "one token for the manifest, the config and all three layers\n{}", reg.dump());
    let run = client.run_cmd_in_image(&["--rm", "--pull=never"], &image, &["ls", "/data"]);
    run.assert_ok();
    assert_eq!(run.stdout_trim(), "keep", "{run}");
}

#[test]
fn pushing_to_a_second_repository_mounts_the_blobs_with_a_token_for_both() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let Some(reg) = TokenRegistry::start(&ctx, "") else { return };
    reg.seed(&ctx, &[("test/busybox", "alice/one")]);
    reg.tokens.clear();

    let src = format!("{}/test/busybox", reg.shared);
    let second = rl(&ctx, &["push", &src, &format!("{}/alice/two", reg.addr())], None);
    assert_eq!(second.code(), Some(0), "{second}\n{}", reg.dump());
    assert!(second.stderr.contains("mounted from"), "the layer is linked, not uploaded again\n{second}");
    // The registry's challenge for the mount names both repositories; the token must too.
    assert!(
        reg.tokens.requests().iter().any(|r| r.granted.contains(&"repository:alice/two:pull,push".to_string())
            && r.granted.contains(&"repository:alice/one:pull".to_string())),
        "a token for the destination and the mount's source\n{}",
        reg.dump()
    );
}

#[test]
fn a_realm_with_its_own_query_and_an_access_token_only_answer_work() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let Some(reg) = TokenRegistry::start(&ctx, "?tenant=rl-test") else { return };
    // OAuth2-style servers answer `access_token` without Docker's `token`.
    reg.tokens.set_access_token_only(true);
    reg.seed(&ctx, &[("test/busybox", "public/busybox")]);

    let client = fresh();
    let image = format!("{}/public/busybox", reg.addr());
    let pulled = rl(&client, &["pull", "-q", &image], None);
    assert_eq!(pulled.code(), Some(0), "{pulled}\n{}", reg.dump());
    let requests = reg.tokens.requests();
    assert!(
        requests.iter().all(|r| r.status == 200 && r.param("tenant") == Some("rl-test")),
        "the realm's own query parameters are kept\n{}",
        reg.dump()
    );
    assert!(requests.iter().any(|r| r.anonymous() && r.scopes == ["repository:public/busybox:pull"]), "{}", reg.dump());
    assert_eq!(image_ids(&client).lines().count(), 1, "the pulled image is stored");
}

/// A blob the user may no longer read where it was pushed before cannot be mounted from there:
/// the push must upload it instead of failing.
#[test]
fn a_mount_the_token_does_not_cover_falls_back_to_an_upload() {
    let Some(ctx) = Ctx::with_subids() else { return };
    let Some(reg) = TokenRegistry::start(&ctx, "") else { return };
    reg.seed(&ctx, &[("test/busybox", "alice/one")]);
    reg.tokens.deny("alice/one");
    reg.tokens.clear();

    let src = format!("{}/test/busybox", reg.shared);
    let dest = format!("{}/alice/two", reg.addr());
    let pushed = rl(&ctx, &["push", &src, &dest], None);
    assert_eq!(pushed.code(), Some(0), "{pushed}\n{}", reg.dump());
    assert!(pushed.stderr.contains("pushing blob"), "the layer is uploaded\n{pushed}");
    let client = fresh();
    login(&client, reg.addr());
    rl(&client, &["run", "--rm", &dest, "true"], None).assert_ok();
}
