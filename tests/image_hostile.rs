//! Hostile images and broken registries: layers whose entries climb out of the layer, reach
//! the host through symlinks and hardlinks, or carry devices; a config that lies about a diff
//! id; blobs flipped, truncated or deleted in the registry's storage; an unknown registry host;
//! parallel pulls into one store; and `rl pull` killed with SIGKILL at a random moment.
//!
//! The images come from scripts/make-hostile-images.py, seeded as `test/hostile-*` by
//! scripts/seed-hostile.sh, which also breaks the registry's copies of the fault blobs (as
//! root, before the tests run: the tests only pull). tests/fixtures/README.md, "Hostile
//! images", lists them. Every refused pull must end in one `Error:` line naming the cause (exit
//! 125), leave no process behind, and leave the store as it was: the same entries in
//! `layers/` and `images/`, nothing in `tmp/`, `images/tags.json` byte for byte.
mod common;

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use nix::sys::signal::Signal;

/// The diff id hostile-diffid's config claims (make-hostile-images.py WRONG_DIFF_ID).
const WRONG_DIFF_ID: &str = "sha256:d1ffd1ffd1ffd1ffd1ffd1ffd1ffd1ffd1ffd1ffd1ffd1ffd1ffd1ffd1ffd1ff";
/// Host paths the hostile entries aim at (make-hostile-images.py OWNED_FILE, CHMOD_TARGET,
/// VICTIM); the tests own the ones they create.
const OWNED_FILE: &str = "/tmp/rl-hostile-owned-file";
const CHMOD_TARGET: &str = "/tmp/rl-hostile-chmod-target";
const VICTIM: &str = "/tmp/rl-hostile-victim";

/// The registry's `host:port`, once it is known to hold the hostile images; None (after
/// saying why) otherwise.
fn registry() -> Option<String> {
    let reg = test_registry()?;
    static SEEDED: OnceLock<bool> = OnceLock::new();
    let seeded = *SEEDED.get_or_init(|| get(&format!("http://{reg}/v2/test/hostile-big/tags/list"), "").is_ok());
    require(seeded, "the registry has no test/hostile-* images (scripts/seed-hostile.sh seeds them)").then_some(reg)
}

fn setup() -> Option<(Ctx, String)> {
    let ctx = Ctx::with_subids()?;
    let reg = registry()?;
    Some((ctx, reg))
}

/// A GET straight to the registry, bypassing rl: to look up what the tests must not hard-code.
fn get(url: &str, accept: &str) -> Result<String, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(20))).build().into();
    let mut req = agent.get(url);
    if !accept.is_empty() {
        req = req.header("Accept", accept);
    }
    let mut resp = req.call().map_err(|e| format!("GET {url}: {e}"))?;
    resp.body_mut().read_to_string().map_err(|e| format!("GET {url}: {e}"))
}

/// The digest of the top layer of `test/NAME:latest`: the blob the seed script broke.
fn top_layer_digest(reg: &str, name: &str) -> String {
    let url = format!("http://{reg}/v2/test/{name}/manifests/latest");
    let text = get(&url, "application/vnd.oci.image.manifest.v1+json").unwrap_or_else(|e| panic!("{e}"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {e}\n{text}"));
    let layers = v["layers"].as_array().unwrap_or_else(|| panic!("{url}: no layers\n{text}"));
    layers.last().and_then(|l| l["digest"].as_str()).expect("a layer digest").to_string()
}

fn rl(ctx: &Ctx, args: &[&str]) -> Out {
    ctx.rl_out(args, None)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// What a failed pull must not change.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    layers: Vec<String>,
    images: Vec<String>,
    tmp: Vec<String>,
    tags: Option<Vec<u8>>,
}

fn snapshot(ctx: &Ctx) -> Snapshot {
    Snapshot {
        layers: names(&ctx.store.join("layers")),
        images: names(&ctx.store.join("images")),
        tmp: names(&ctx.store.join("tmp")),
        tags: fs::read(ctx.store.join("images/tags.json")).ok(),
    }
}

/// A store that already holds busybox (so layers/, images/ and tags.json exist to compare).
fn store_with_busybox() -> Option<(Ctx, String)> {
    let (ctx, reg) = setup()?;
    rl(&ctx, &["pull", "-q", &format!("{reg}/test/busybox")]).assert_ok();
    Some((ctx, reg))
}

/// Pulls `test/NAME`, which must fail with one `Error:` line holding every needle, leave no
/// process of the test running and leave the store exactly as it was.
fn assert_refused(ctx: &Ctx, reg: &str, name: &str, needles: &[&str]) -> Out {
    assert_pull_refused(ctx, &format!("{reg}/test/{name}"), needles)
}

fn assert_pull_refused(ctx: &Ctx, image: &str, needles: &[&str]) -> Out {
    let before = snapshot(ctx);
    assert!(before.tmp.is_empty(), "tmp/ is empty before the pull: {before:?}");
    let out = rl(ctx, &["pull", image]);
    out.assert_error(needles[0]);
    let line = out.stderr.lines().find(|l| l.starts_with("Error: ")).unwrap_or_default();
    for n in needles {
        assert!(line.contains(n), "the error line should name `{n}`\n{out}");
    }
    assert!(!line.contains("Broken pipe"), "the error should name the cause, not the pipe it broke\n{out}");
    assert!(poll_until(|| ctx.leftover_processes().is_empty()), "left running: {:?}", ctx.leftover_processes());
    assert_eq!(snapshot(ctx), before, "a refused pull leaves the store as it was\n{out}");
    out
}

/// Every entry below `dir` as `path type mode uid:gid size mtime [-> target]`, sorted: what
/// `ls -lR` shows, to compare a layer with a clean pull of the same layer.
fn tree(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())).flatten() {
            let p = e.path();
            let md = fs::symlink_metadata(&p).unwrap_or_else(|e| panic!("stat {}: {e}", p.display()));
            let rel = p.strip_prefix(base).expect("below the base").display().to_string();
            let ft = md.file_type();
            let kind = if ft.is_dir() {
                "d"
            } else if ft.is_symlink() {
                "l"
            } else if ft.is_file() {
                "f"
            } else {
                "o"
            };
            let target = fs::read_link(&p).map(|t| format!(" -> {}", t.display())).unwrap_or_default();
            let size = if ft.is_file() { md.size() } else { 0 };
            let mode = md.mode() & 0o7777;
            // A whiteout (a 0/0 device) keeps the time it was made: rl gives it none.
            let mtime = if kind == "o" { String::new() } else { md.mtime().to_string() };
            out.push(format!("{rel} {kind} {mode:o} {}:{} {size} {mtime}{target}", md.uid(), md.gid()));
            if ft.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Fails, showing only the entries that differ, unless both stores hold the same layers.
fn assert_same_layers(got: &[(String, Vec<String>)], want: &[(String, Vec<String>)], what: &str) {
    let names = |v: &[(String, Vec<String>)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(got), names(want), "{what}: the layer directories");
    for ((name, g), (_, w)) in got.iter().zip(want) {
        let only_got: Vec<&String> = g.iter().filter(|e| !w.contains(e)).collect();
        let only_want: Vec<&String> = w.iter().filter(|e| !g.contains(e)).collect();
        assert!(
            only_got.is_empty() && only_want.is_empty(),
            "{what}: layer {name} differs from a clean pull\nonly here: {only_got:#?}\nonly in the clean pull: {only_want:#?}"
        );
    }
}

/// The layer directories of a store with their trees.
fn layer_trees(ctx: &Ctx) -> Vec<(String, Vec<String>)> {
    names(&ctx.store.join("layers")).into_iter().map(|n| (n.clone(), tree(&ctx.store.join("layers").join(n)))).collect()
}

/// The layers of a clean, single pull of `image` into a fresh store.
fn reference_layers(image: &str) -> Vec<(String, Vec<String>)> {
    let fresh = Ctx::with_subids().expect("ctx");
    rl(&fresh, &["pull", "-q", image]).assert_ok();
    layer_trees(&fresh)
}

/// A file in /tmp that the test owns, with `mode` and `content`; an old one of ours is
/// replaced, someone else's fails the test (it cannot be watched).
fn own_tmp_file(path: &str, mode: u32, content: &[u8]) {
    if let Ok(md) = fs::symlink_metadata(path) {
        assert_eq!(md.uid(), uid(), "`{path}` exists and belongs to uid {}: remove it", md.uid());
        fs::remove_file(path).unwrap_or_else(|e| panic!("remove {path}: {e}"));
    }
    fs::write(path, content).unwrap_or_else(|e| panic!("write {path}: {e}"));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap_or_else(|e| panic!("chmod {path}: {e}"));
}

fn mode_of(path: &str) -> u32 {
    fs::metadata(path).unwrap_or_else(|e| panic!("stat {path}: {e}")).mode() & 0o7777
}

#[test]
fn dotdot_entry_is_refused() {
    let Some((ctx, reg)) = store_with_busybox() else { return };
    assert_refused(&ctx, &reg, "hostile-dotdot", &["../../escape", "escapes the layer"]);
    for p in [ctx.store.join("escape"), ctx.dir.join("escape"), ctx.store.join("tmp/escape")] {
        assert!(fs::symlink_metadata(&p).is_err(), "`{}` was written", p.display());
    }
}

/// The same entry first in a 4 MiB layer: the unpacker refuses it while the download still has
/// megabytes to send, and the error must still be the entry, not the pipe the download lost.
#[test]
fn dotdot_entry_in_a_big_layer_is_named() {
    let Some((ctx, reg)) = store_with_busybox() else { return };
    assert_refused(&ctx, &reg, "hostile-dotdot-big", &["../../escape", "escapes the layer"]);
    assert!(fs::symlink_metadata(ctx.store.join("escape")).is_err(), "store/escape was written");
}

#[test]
fn symlink_to_a_host_directory_leads_nowhere() {
    let Some((ctx, reg)) = store_with_busybox() else { return };
    let existed = fs::symlink_metadata(OWNED_FILE).is_ok();
    assert_refused(&ctx, &reg, "hostile-abs-symlink-parent", &["a/rl-hostile-owned-file", "escapes the layer"]);
    if !existed {
        assert!(fs::symlink_metadata(OWNED_FILE).is_err(), "{OWNED_FILE} was written through the symlink `a`");
    }
}

#[test]
fn hardlinks_out_of_the_layer_are_refused() {
    let Some((ctx, reg)) = store_with_busybox() else { return };
    let passwd = fs::metadata("/etc/passwd").expect("stat /etc/passwd").nlink();
    assert_refused(&ctx, &reg, "hostile-hardlink-out", &["../../../etc/passwd", "escapes the layer"]);
    assert_refused(&ctx, &reg, "hostile-hardlink-via-symlink", &["s/passwd", "escapes the layer"]);
    assert_eq!(fs::metadata("/etc/passwd").expect("stat").nlink(), passwd, "/etc/passwd gained a link");
}

#[test]
fn whiteout_and_opaque_marker_through_a_symlink_are_refused() {
    let Some((ctx, reg)) = store_with_busybox() else { return };
    own_tmp_file(VICTIM, 0o600, b"victim\n");
    assert_refused(&ctx, &reg, "hostile-whiteout-through-symlink", &["w/.wh.rl-hostile-victim", "escapes the layer"]);
    let md = fs::symlink_metadata(VICTIM).expect("the victim is still there");
    assert!(md.file_type().is_file(), "{VICTIM} was replaced by a whiteout");
    assert_refused(&ctx, &reg, "hostile-opaque-through-symlink", &["o/.wh..wh..opq", "escapes the layer"]);
    let _ = fs::remove_file(VICTIM);
}

/// `l -> /etc/passwd` then a 0777 directory `l`; `t -> TARGET` then a 0777 file `t`; a 0777
/// directory `d` then `d -> TARGET`. Legal tar (a later entry replaces an earlier one of the
/// same name), so the pull succeeds; no mode may reach what a symlink pointed at.
#[test]
fn chmod_never_goes_through_a_symlink() {
    let Some((ctx, reg)) = setup() else { return };
    own_tmp_file(CHMOD_TARGET, 0o600, b"target\n");
    let passwd = mode_of("/etc/passwd");
    let out = rl(&ctx, &["pull", &format!("{reg}/test/hostile-chmod-through-symlink")]);
    out.assert_ok();
    assert_eq!(mode_of("/etc/passwd"), passwd, "/etc/passwd's mode changed\n{out}");
    assert_eq!(mode_of(CHMOD_TARGET), 0o600, "{CHMOD_TARGET}'s mode changed\n{out}");
    assert_eq!(fs::read(CHMOD_TARGET).expect("read the target"), b"target\n", "the target was written\n{out}");
    let layers = names(&ctx.store.join("layers"));
    assert_eq!(layers.len(), 1, "{layers:?}");
    let layer = ctx.store.join("layers").join(&layers[0]);
    let md = |n: &str| fs::symlink_metadata(layer.join(n)).unwrap_or_else(|e| panic!("{n} in the layer: {e}"));
    assert!(md("l").is_dir() && md("l").mode() & 0o7777 == 0o777, "l: a 0777 directory\n{:?}", tree(&layer));
    assert!(md("t").is_file() && md("t").mode() & 0o7777 == 0o777, "t: a 0777 file\n{:?}", tree(&layer));
    assert_eq!(fs::read(layer.join("t")).expect("read t"), b"replaced\n");
    assert!(md("d").file_type().is_symlink(), "d: the symlink that replaced the directory\n{:?}", tree(&layer));
    assert_eq!(fs::read_link(layer.join("d")).expect("readlink d"), Path::new(CHMOD_TARGET));
    let _ = fs::remove_file(CHMOD_TARGET);
}

/// A user namespace cannot mknod: devices are left out, each named in a warning, and the rest
/// of the layer is there.
#[test]
fn devices_are_skipped_with_a_warning() {
    let Some((ctx, reg)) = setup() else { return };
    let image = format!("{reg}/test/hostile-device");
    let out = rl(&ctx, &["pull", &image]);
    out.assert_ok();
    let run = ctx.run_cmd_in_image(&["--rm", "--pull=never"], &image, &["ls", "-A", "/opt"]);
    run.assert_ok();
    assert_eq!(run.stdout_trim(), "kept", "only the regular file of /opt is there\n{run}");
    for dev in ["opt/char-1-3", "opt/block-7-0"] {
        assert!(
            out.stderr.lines().any(|l| l.starts_with("warning: ") && l.contains(dev)),
            "a warning names the skipped device `{dev}`\n{out}"
        );
    }
}

#[test]
fn wrong_diff_id_is_refused() {
    let Some((ctx, reg)) = store_with_busybox() else { return };
    assert_refused(&ctx, &reg, "hostile-diffid", &[WRONG_DIFF_ID, "config"]);
}

/// A byte flipped in the middle of stored gzip data: the stream decodes until its CRC, so the
/// download ends and its digest is what is wrong.
#[test]
fn tampered_blob_is_a_digest_mismatch() {
    let Some((ctx, reg)) = store_with_busybox() else { return };
    let blob = top_layer_digest(&reg, "hostile-tampered");
    assert_refused(&ctx, &reg, "hostile-tampered", &[&blob, "digest mismatch"]);
}

/// An invalid deflate block right after the gzip header: the unpacker gives up on the first
/// bytes while 2 MiB are still to come. The cause is still the blob's content.
#[test]
fn tampered_blob_found_early_is_a_digest_mismatch() {
    let Some((ctx, reg)) = store_with_busybox() else { return };
    let blob = top_layer_digest(&reg, "hostile-tampered-early");
    assert_refused(&ctx, &reg, "hostile-tampered-early", &[&blob, "digest mismatch"]);
}

/// The registry has half the blob and says so in Content-Length.
#[test]
fn truncated_blob_is_reported() {
    let Some((ctx, reg)) = store_with_busybox() else { return };
    let blob = top_layer_digest(&reg, "hostile-truncated");
    assert_refused(&ctx, &reg, "hostile-truncated", &[&blob, "truncated"]);
}

#[test]
fn missing_blob_is_named() {
    let Some((ctx, reg)) = store_with_busybox() else { return };
    let blob = top_layer_digest(&reg, "hostile-missing-blob");
    assert_refused(&ctx, &reg, "hostile-missing-blob", &[&blob, "not found"]);
}

/// From an empty store the busybox layer of hostile-tampered downloads fine beside the broken
/// one; the pull fails, so the good layer must not stay either.
#[test]
fn failed_pull_keeps_no_layer_of_the_image() {
    let Some((ctx, reg)) = setup() else { return };
    let blob = top_layer_digest(&reg, "hostile-tampered");
    assert_refused(&ctx, &reg, "hostile-tampered", &[&blob, "digest mismatch"]);
}

/// A host that does not resolve fails at once, naming the host: no retries of a DNS answer.
#[test]
fn unknown_registry_host_fails_fast() {
    let Some((ctx, _reg)) = setup() else { return };
    let host = "no-such-host.invalid";
    // The resolver's own time for the same question is the floor.
    let t = Instant::now();
    let _ = std::process::Command::new("getent").args(["hosts", host]).output();
    let resolver = t.elapsed();
    let t = Instant::now();
    let out = assert_pull_refused(&ctx, &format!("{host}/x"), &[host]);
    let took = t.elapsed();
    let bound = resolver * 2 + Duration::from_millis(1500);
    assert!(took < bound, "rl took {took:?} (the resolver answers in {resolver:?}; allowed {bound:?})\n{out}");
}

/// Concurrent pulls of one image into one store all succeed and keep one copy of each layer.
#[test]
fn parallel_pulls_of_one_image_share_each_layer() {
    let Some((ctx, reg)) = setup() else { return };
    let image = format!("{reg}/test/layered");
    let pulls: Vec<Running> = (0..4)
        .map(|_| {
            let mut c = ctx.rl();
            c.args(["pull", &image]);
            Running::spawn(c, false)
        })
        .collect();
    let outs: Vec<Out> = pulls.into_iter().map(Running::finish).collect();
    for out in &outs {
        out.assert_ok();
    }
    assert_same_layers(&layer_trees(&ctx), &reference_layers(&image), "each layer once, complete");
    let images = names(&ctx.store.join("images"));
    assert_eq!(images.len(), 2, "one image and tags.json: {images:?}");
    assert_eq!(names(&ctx.store.join("tmp")), Vec::<String>::new(), "nothing left in tmp/");
    ctx.run_cmd_in_image(&["--rm", "--pull=never"], &image, &["cat", "/data/keep"]).assert_ok();
}

/// Concurrent pulls of images that share the busybox layer (zstd's is the same tar compressed
/// another way, so the same diff id): one copy of it, and every name in tags.json.
#[test]
fn parallel_pulls_of_images_sharing_a_layer() {
    let Some((ctx, reg)) = setup() else { return };
    let images: Vec<String> =
        ["busybox", "layered", "entrypoint", "zstd"].iter().map(|n| format!("{reg}/test/{n}")).collect();
    let pulls: Vec<Running> = images
        .iter()
        .map(|i| {
            let mut c = ctx.rl();
            c.args(["pull", i]);
            Running::spawn(c, false)
        })
        .collect();
    for out in pulls.into_iter().map(Running::finish) {
        out.assert_ok();
    }
    let mut want = BTreeSet::new();
    for i in &images {
        want.extend(reference_layers(i));
    }
    let want: Vec<_> = want.into_iter().collect();
    assert_same_layers(&layer_trees(&ctx), &want, "each layer once, complete");
    let tags = fs::read_to_string(ctx.store.join("images/tags.json")).expect("tags.json");
    for i in &images {
        assert!(tags.contains(&format!("{i}:latest")), "tags.json names {i}:latest\n{tags}");
    }
    assert_eq!(names(&ctx.store.join("tmp")), Vec::<String>::new(), "nothing left in tmp/");
}

/// Bytes in the files of `tmp/` entries not in `old`, and whether there is any such entry.
fn staged(tmp: &Path, old: &[String]) -> (bool, u64) {
    fn bytes(p: &Path) -> u64 {
        match fs::symlink_metadata(p) {
            Ok(md) if md.is_dir() => {
                fs::read_dir(p).map(|rd| rd.flatten().map(|e| bytes(&e.path())).sum()).unwrap_or(0)
            }
            Ok(md) => md.size(),
            Err(_) => 0,
        }
    }
    let new: Vec<PathBuf> = names(tmp).into_iter().filter(|n| !old.contains(n)).map(|n| tmp.join(n)).collect();
    (!new.is_empty(), new.iter().map(PathBuf::as_path).map(bytes).sum())
}

/// `rl pull` of a 48 MiB layer killed with SIGKILL: first as soon as a staging directory
/// exists, then after a random number of bytes has landed in it, then as soon as a layer is
/// stored. The next pull completes and every layer in the store is whole.
#[test]
fn kill_9_mid_pull_leaves_no_half_layer() {
    let Some((ctx, reg)) = setup() else { return };
    let image = format!("{reg}/test/hostile-big");
    let mut seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1);
    // splitmix64: well mixed even from neighbouring seeds.
    let mut next = move || {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let tmp = ctx.store.join("tmp");
    let layers = ctx.store.join("layers");
    // Rounds 0-3 kill rl while it stages; round 4 once a layer of it is in layers/ (if that
    // moment comes before the pull ends).
    for round in 0..5 {
        let threshold = if round == 0 { 0 } else { next() % (44 << 20) };
        let (old, old_layers) = (names(&tmp), names(&layers));
        let mut c = ctx.rl();
        c.args(["pull", &image]);
        let mut r = Running::spawn(c, false);
        let reached = poll_until(|| {
            let now = match round {
                4 => names(&layers).len() > old_layers.len(),
                _ => matches!(staged(&tmp, &old), (true, n) if n >= threshold),
            };
            now || r.child.try_wait().ok().flatten().is_some()
        });
        assert!(reached, "no staging directory in {} within the timeout\n{}", tmp.display(), r.dump());
        // try_wait keeps the status it reaped: a finished rl is not signalled (its pid is free).
        if r.child.try_wait().ok().flatten().is_none() {
            r.signal(Signal::SIGKILL);
        }
        let out = r.finish();
        let killed = signal_of(&out.status) == Some(Signal::SIGKILL as i32);
        assert!(killed || out.code() == Some(0), "rl was killed or had finished\n{out}");
        let when = if round == 4 { "a layer stored".to_string() } else { format!("{threshold} bytes staged") };
        say(&format!("round {round}: at {when}: {}", if killed { "killed" } else { "rl had finished" }));
        assert!(poll_until(|| ctx.leftover_processes().is_empty()), "left running: {:?}", ctx.leftover_processes());
    }
    let out = rl(&ctx, &["pull", &image]);
    out.assert_ok();
    assert_same_layers(&layer_trees(&ctx), &reference_layers(&image), "after the killed pulls");
    let run = ctx.run_cmd_in_image(&["--rm", "--pull=never"], &image, &["cat", "/small/a", "/small/b"]);
    run.assert_ok();
    assert_eq!(run.stdout, "a\nb\n", "{run}");
    let left = names(&tmp);
    if !left.is_empty() {
        say(&format!("note: the killed pulls left {} staging entries in tmp/: {left:?}", left.len()));
    }
}
