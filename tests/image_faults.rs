//! The pull client against a misbehaving registry: a fault proxy (tests/common/fault_proxy.rs)
//! in front of the shared test registry answers blob GETs with 503 or 429, resets connections,
//! cuts bodies short, redirects blobs to another host, and demands Basic auth. What the issue
//! promises is checked from both sides: rl's outcome (the image pulls and runs, or one clear
//! `Error:` line and a store as it was) and what the proxy saw (the retries, a `Range` resume
//! from the byte where the body broke, no credential sent to the redirect target).
mod common;

use std::time::Duration;

use common::*;

fn rl(ctx: &Ctx, args: &[&str], stdin: Option<&[u8]>) -> Out {
    ctx.rl_isolated(args, stdin)
}

/// The config digest and the layer digests of `test/NAME:latest`, asked of the registry
/// directly (bypassing rl and the proxy), so the tests hard-code no digest.
fn blobs(reg: &str, name: &str) -> (String, Vec<(String, u64)>) {
    let url = format!("http://{reg}/v2/test/{name}/manifests/latest");
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(20))).build().into();
    let text = agent
        .get(&url)
        .header("Accept", "application/vnd.oci.image.manifest.v1+json")
        .call()
        .and_then(|mut r| r.body_mut().read_to_string())
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}\n{text}"));
    let config = v["config"]["digest"].as_str().unwrap_or_else(|| panic!("{url}: no config\n{text}")).to_string();
    let layers = v["layers"]
        .as_array()
        .unwrap_or_else(|| panic!("{url}: no layers\n{text}"))
        .iter()
        .map(|l| (l["digest"].as_str().unwrap_or_default().to_string(), l["size"].as_u64().unwrap_or_default()))
        .collect();
    (config, layers)
}

fn names(ctx: &Ctx, dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(ctx.store.join(dir))
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A failed pull leaves nothing: no image listed, no layer directory, no staging leftover.
fn assert_store_unchanged(ctx: &Ctx, why: &Out) {
    let images = rl(ctx, &["images", "-q"], None);
    images.assert_ok();
    assert_eq!(images.stdout_trim(), "", "no image after a failed pull\n{why}");
    assert_eq!(names(ctx, "layers"), Vec::<String>::new(), "no layer kept from a failed pull\n{why}");
    assert_eq!(names(ctx, "tmp"), Vec::<String>::new(), "no staging leftovers\n{why}");
    assert!(poll_until(|| ctx.leftover_processes().is_empty()), "left running: {:?}", ctx.leftover_processes());
}

/// rl's own failure: exit 125, one `Error:` line naming every needle.
fn assert_error_names(out: &Out, needles: &[&str]) {
    out.assert_error(needles[0]);
    let line = out.stderr.lines().find(|l| l.starts_with("Error: ")).unwrap_or_default();
    for n in needles {
        assert!(line.contains(n), "the error line should name `{n}`\n{out}");
    }
}

/// The error is one line: nothing after it (no HTML page a proxy sent), no markup in it.
fn assert_error_is_one_line(out: &Out) {
    let line = out.stderr.lines().find(|l| l.starts_with("Error: ")).unwrap_or_default();
    let after: Vec<&str> = out.stderr.lines().skip_while(|l| !l.starts_with("Error: ")).skip(1).collect();
    assert!(after.is_empty(), "the error is one line; after it came {after:?}\n{out}");
    assert!(!line.contains('<'), "the error line carries no HTML page\n{out}");
}

/// Runs busybox from `image` (already pulled) and checks its bytes inside the container are
/// those of `bin/busybox` in the registry's busybox layer, read straight from the registry.
fn assert_runs(ctx: &Ctx, reg: &str, image: &str) {
    let out = rl(ctx, &["run", "--rm", "--pull=never", image, "busybox", "sha256sum", "/bin/busybox"], None);
    out.assert_ok();
    let got = out.stdout.split_whitespace().next().unwrap_or_default().to_string();
    assert_eq!(got, busybox_sha256(reg), "/bin/busybox is intact\n{out}");
}

/// The sha256 of `bin/busybox` in test/busybox's layer, from the registry, not through rl.
fn busybox_sha256(reg: &str) -> String {
    let (_, layers) = blobs(reg, "busybox");
    let url = format!("http://{reg}/v2/test/busybox/blobs/{}", layers[0].0);
    let resp = ureq::get(&url).call().unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let gz = flate2::read::GzDecoder::new(resp.into_body().into_reader());
    let mut archive = tar::Archive::new(gz);
    for entry in archive.entries().expect("the layer is a tar") {
        let mut entry = entry.expect("a tar entry");
        let path = entry.path().expect("an entry path").to_string_lossy().trim_start_matches("./").to_string();
        if path == "bin/busybox" {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).expect("read bin/busybox");
            let hash = sha2::Digest::finalize(sha2::Digest::chain_update(sha2::Sha256::default(), &bytes));
            return hash.iter().map(|b| format!("{b:02x}")).collect();
        }
    }
    panic!("{url}: no bin/busybox in the layer");
}

/// Fails `test/busybox`'s blobs `times` times each with `status`, then serves them: the pull
/// retries, succeeds and the image runs.
fn transient_status_is_retried(status: u16, times: usize) {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let (config, layers) = blobs(&reg, "busybox");
    let proxy = FaultProxy::start(&reg, Plan { fail: Some(Fail { status, times }), ..Plan::default() });
    let image = format!("{}/test/busybox", proxy.addr);
    let out = rl(&ctx, &["pull", &image], None);
    out.assert_ok();
    for digest in std::iter::once(&config).chain(layers.iter().map(|(d, _)| d)) {
        let gets = proxy.blob_gets(digest);
        let answers: Vec<Action> = gets.iter().map(|s| s.action).collect();
        let mut want = vec![Action::Failed(status); times];
        want.push(Action::Forwarded(200));
        assert_eq!(answers, want, "blob {digest}: {times} × {status}, then the retry that worked\n{}", proxy.dump());
    }
    assert_runs(&ctx, &reg, &image);
}

#[test]
fn blobs_answered_503_are_retried() {
    transient_status_is_retried(503, 3);
}

#[test]
fn blobs_answered_429_are_retried() {
    transient_status_is_retried(429, 2);
}

#[test]
fn reset_connections_are_retried() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let (_, layers) = blobs(&reg, "busybox");
    let layer = layers[0].0.clone();
    let plan = Plan { blobs: vec![layer.clone()], reset: Some(2), ..Plan::default() };
    let proxy = FaultProxy::start(&reg, plan);
    let image = format!("{}/test/busybox", proxy.addr);
    rl(&ctx, &["pull", &image], None).assert_ok();
    let answers: Vec<Action> = proxy.blob_gets(&layer).iter().map(|s| s.action).collect();
    assert_eq!(answers, [Action::Reset, Action::Reset, Action::Forwarded(200)], "{}", proxy.dump());
    assert_runs(&ctx, &reg, &image);
}

#[test]
fn persistent_503_fails_after_bounded_retries_and_keeps_nothing() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    // The top layer of three fails for good; the other two download fine and must not be kept.
    let (_, layers) = blobs(&reg, "layered");
    let top = layers.last().expect("layers").0.clone();
    let plan =
        Plan { blobs: vec![top.clone()], fail: Some(Fail { status: 503, times: usize::MAX }), ..Plan::default() };
    let proxy = FaultProxy::start(&reg, plan);
    let out = rl(&ctx, &["pull", &format!("{}/test/layered", proxy.addr)], None);
    assert_error_names(&out, &[&format!("registry `{}`", proxy.addr), "HTTP 503", &top]);
    let tries = proxy.blob_gets(&top).len();
    assert!((2..=8).contains(&tries), "retried, but a bounded number of times: {tries}\n{}", proxy.dump());
    for (other, _) in &layers[..layers.len() - 1] {
        assert_eq!(proxy.blob_gets(other).len(), 1, "the other layers were fetched once\n{}", proxy.dump());
    }
    assert_store_unchanged(&ctx, &out);
    // The proxy's 503 is an nginx page, as load balancers send: it does not belong in the error.
    assert_error_is_one_line(&out);
}

#[test]
fn a_cut_blob_resumes_with_range_from_where_it_broke() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let (_, layers) = blobs(&reg, "busybox");
    let (layer, size) = layers[0].clone();
    let after = 300_000;
    assert!(size > 2 * after, "the busybox layer is big enough to cut ({size} bytes)");
    let plan = Plan { blobs: vec![layer.clone()], cut: Some(Cut { after, times: 1 }), ..Plan::default() };
    let proxy = FaultProxy::start(&reg, plan);
    let image = format!("{}/test/busybox", proxy.addr);
    let out = rl(&ctx, &["pull", &image], None);
    out.assert_ok();
    let gets = proxy.blob_gets(&layer);
    let ranges: Vec<Option<&str>> = gets.iter().map(|s| s.range.as_deref()).collect();
    let resume = format!("bytes={after}-");
    assert_eq!(ranges, [None, Some(resume.as_str())], "one cut, one resume from byte {after}\n{}", proxy.dump());
    assert_eq!(gets[1].action, Action::Forwarded(206), "the registry served the rest\n{}", proxy.dump());
    assert_runs(&ctx, &reg, &image);
}

#[test]
fn a_cut_on_every_attempt_fails_cleanly() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let (_, layers) = blobs(&reg, "busybox");
    let (layer, size) = layers[0].clone();
    let after = 100_000;
    let plan = Plan { blobs: vec![layer.clone()], cut: Some(Cut { after, times: usize::MAX }), ..Plan::default() };
    let proxy = FaultProxy::start(&reg, plan);
    let out = rl(&ctx, &["pull", &format!("{}/test/busybox", proxy.addr)], None);
    assert_error_names(&out, &[&layer]);
    let gets = proxy.blob_gets(&layer);
    assert!((2..=8).contains(&gets.len()), "resumed, but a bounded number of times\n{}", proxy.dump());
    // Every resume starts where the previous answer broke off, never from 0 again.
    for (i, g) in gets.iter().enumerate().skip(1) {
        let want = format!("bytes={}-", i as u64 * after);
        assert_eq!(g.range.as_deref(), Some(want.as_str()), "attempt {i}\n{}", proxy.dump());
    }
    assert!((gets.len() as u64) * after < size, "the test never let the whole blob through");
    assert_store_unchanged(&ctx, &out);
    assert_error_is_one_line(&out);
}

#[test]
fn a_cut_config_blob_is_fetched_again() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let (config, _) = blobs(&reg, "busybox");
    // The config is a few hundred bytes: a connection that breaks inside it is as transient
    // as one that breaks inside a layer.
    let plan = Plan { blobs: vec![config.clone()], cut: Some(Cut { after: 100, times: 1 }), ..Plan::default() };
    let proxy = FaultProxy::start(&reg, plan);
    let image = format!("{}/test/busybox", proxy.addr);
    let out = rl(&ctx, &["pull", &image], None);
    out.assert_ok();
    let gets = proxy.blob_gets(&config);
    assert_eq!(gets.len(), 2, "the broken config download was tried again\n{}", proxy.dump());
    assert_runs(&ctx, &reg, &image);
}

#[test]
fn redirected_blobs_never_get_the_credential() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let (user, pass) = ("faulty", "fault-proxy-password");
    let plan = Plan { redirect: true, basic_auth: Some((user.into(), pass.into())), ..Plan::default() };
    let proxy = FaultProxy::start(&reg, plan);
    let target = proxy.target.clone().expect("a redirect target");
    let image = format!("{}/test/layered", proxy.addr);

    rl(&ctx, &["pull", &image], None).assert_error("requires authentication");
    rl(&ctx, &["login", "-u", user, "--password-stdin", &proxy.addr], Some(format!("{pass}\n").as_bytes())).assert_ok();
    let out = rl(&ctx, &["pull", &image], None);
    out.assert_ok();

    let (config, layers) = blobs(&reg, "layered");
    let seen = proxy.seen();
    let want = format!(
        "Basic {}",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("{user}:{pass}"))
    );
    for digest in std::iter::once(&config).chain(layers.iter().map(|(d, _)| d)) {
        let gets = proxy.blob_gets(digest);
        assert!(
            gets.iter().any(|g| g.action == Action::Redirected && g.authorization.as_deref() == Some(want.as_str())),
            "blob {digest} was asked of the proxy with the credential and redirected\n{}",
            proxy.dump()
        );
        let there: Vec<&Seen> =
            seen.iter().filter(|s| s.to.to_string() == target && s.path.ends_with(digest.as_str())).collect();
        assert!(
            there.iter().any(|s| s.action == Action::Forwarded(200)),
            "blob {digest} was served by the redirect target\n{}",
            proxy.dump()
        );
    }
    let leaked: Vec<&Seen> = seen.iter().filter(|s| s.to.to_string() == target && s.authorization.is_some()).collect();
    assert!(leaked.is_empty(), "the credential went to another host: {leaked:?}\n{}", proxy.dump());
    assert_runs(&ctx, &reg, &image);
}
