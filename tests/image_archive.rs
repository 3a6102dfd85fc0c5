//! `rl save` and `rl load` with real images from the test registry: round trips in both formats
//! (two images in one archive, layers with whiteouts and opaque directories), archives skopeo
//! wrote loaded and archives rl wrote read by skopeo, and bad archives (not a tar, a missing
//! blob, a tampered layer, a member named `../…`) refused with a clear error and the store as
//! it was: same images and names, same layer and image directories, no staging leftovers.
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn rl(ctx: &Ctx, args: &[&str]) -> Out {
    ctx.rl_out(args, None)
}

fn rl_stdin(ctx: &Ctx, args: &[&str], stdin: &[u8]) -> Out {
    ctx.rl_out(args, Some(stdin))
}

/// Every name in `rl images --format json`, sorted.
fn names(ctx: &Ctx) -> Vec<String> {
    let out = rl(ctx, &["images", "--format", "json"]);
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let mut names: Vec<String> = v
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["Names"].as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_str().map(String::from))
        .collect();
    names.sort();
    names
}

/// What a failed load must not change.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    images: String,
    layers: Vec<String>,
    records: Vec<String>,
    tmp: Vec<String>,
}

fn snapshot(ctx: &Ctx) -> Snapshot {
    let out = rl(ctx, &["images", "--format", "json"]);
    out.assert_ok();
    Snapshot {
        images: out.stdout,
        layers: ctx.store_entries("layers"),
        records: ctx.store_entries("images"),
        tmp: ctx.store_entries("tmp"),
    }
}

fn pull(ctx: &Ctx, image: &str) {
    rl(ctx, &["pull", "-q", image]).assert_ok();
}

/// Checks, in a container of the loaded layered image, that what later layers deleted is gone
/// and what they kept or added is there.
fn check_layered(ctx: &Ctx, image: &str) {
    let script = "pwd; ls /data; ls /opt/old; test ! -e /data/gone && test ! -e /data/dir && echo gone; \
                  stat -c %a /bin/suid-test";
    let run = ctx.run_cmd_in_image(&["--rm", "--pull=never"], image, &["sh", "-c", script]);
    run.assert_ok();
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), ["/data", "keep", "new", "gone", "4755"], "{run}");
}

fn skopeo_ok(args: &[&str]) -> String {
    let out = output(
        {
            let mut c = Command::new("skopeo");
            c.args(args);
            c
        },
        None,
    );
    out.assert_ok();
    out.stdout
}

fn round_trip(format: &str) {
    let Some((ctx, reg)) = registry_ctx() else { return };
    if !require(which("skopeo").is_some(), "skopeo is not installed") {
        return;
    }
    let busybox = format!("{reg}/test/busybox:latest");
    let layered = format!("{reg}/test/layered:latest");
    pull(&ctx, &busybox);
    pull(&ctx, &layered);
    let file = ctx.dir.join(format!("images.{format}.tar"));
    let f = file.to_string_lossy().into_owned();
    rl(&ctx, &["save", "--format", format, "-o", &f, &busybox, &layered]).assert_ok();
    let beside: Vec<_> = std::fs::read_dir(&ctx.dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!beside.iter().any(|n| n.to_string_lossy().contains("rl-save")), "no temp file left: {beside:?}");

    // skopeo reads what rl wrote, each image by its name.
    for (name, layers) in [(&busybox, 1), (&layered, 3)] {
        let v: serde_json::Value = serde_json::from_str(&skopeo_ok(&["inspect", &format!("{format}:{f}:{name}")]))
            .unwrap_or_else(|e| panic!("skopeo inspect {name}: {e}"));
        assert_eq!(v["Layers"].as_array().map(Vec::len), Some(layers), "{v}");
    }

    rl(&ctx, &["rmi", &busybox, &layered]).assert_ok();
    assert_eq!(names(&ctx), Vec::<String>::new());
    assert_eq!(ctx.store_entries("layers"), Vec::<String>::new());
    let load = if format == "oci-archive" {
        // From stdin, gzip-compressed.
        let gz = Command::new("gzip").arg("-c").arg(&file).output().expect("run gzip");
        assert!(gz.status.success());
        rl_stdin(&ctx, &["load"], &gz.stdout)
    } else {
        rl(&ctx, &["load", "-i", &f])
    };
    load.assert_ok();
    assert_eq!(
        load.stdout.lines().collect::<Vec<_>>(),
        [format!("Loaded image: {busybox}"), format!("Loaded image: {layered}")]
    );
    assert_eq!(names(&ctx), [busybox.clone(), layered.clone()]);
    assert_eq!(ctx.store_entries("layers").len(), 3, "the shared layer once");
    assert_eq!(ctx.store_entries("tmp"), Vec::<String>::new(), "no staging leftovers");
    check_layered(&ctx, &layered);
    ctx.run_cmd_in_image(&["--rm", "--pull=never"], &busybox, &["echo", "ok"]).assert_ok();

    // Loading again changes nothing but is checked all the same.
    let before = snapshot(&ctx);
    rl(&ctx, &["load", "-q", "-i", &f]).assert_ok();
    assert_eq!(snapshot(&ctx).layers, before.layers);
    assert_eq!(names(&ctx), [busybox, layered]);
}

#[test]
fn round_trip_docker_archive() {
    round_trip("docker-archive");
}

#[test]
fn round_trip_oci_archive() {
    round_trip("oci-archive");
}

#[test]
fn loads_archives_skopeo_wrote() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    if !require(which("skopeo").is_some(), "skopeo is not installed") {
        return;
    }
    let copy = |image: &str, dest: String| {
        skopeo_ok(&["copy", "-q", "--src-tls-verify=false", &format!("docker://{reg}/{image}"), &dest]);
    };
    let docker = ctx.dir.join("skopeo-docker.tar");
    let oci = ctx.dir.join("skopeo-oci.tar");
    let zstd = ctx.dir.join("skopeo-zstd.tar");
    copy("test/busybox", format!("docker-archive:{}:skopeo/busybox:d1", docker.display()));
    copy("test/layered", format!("oci-archive:{}:skopeo/layered:o1", oci.display()));
    // An OCI layout keeps the registry's zstd layer as it is.
    copy("test/zstd", format!("oci-archive:{}:skopeo/zstd:z1", zstd.display()));
    for (file, name) in [
        (&docker, "docker.io/skopeo/busybox:d1"),
        (&oci, "docker.io/skopeo/layered:o1"),
        (&zstd, "docker.io/skopeo/zstd:z1"),
    ] {
        let out = rl(&ctx, &["load", "-i", &file.to_string_lossy()]);
        out.assert_ok();
        assert_eq!(out.stdout_trim(), format!("Loaded image: {name}"), "{out}");
    }
    check_layered(&ctx, "skopeo/layered:o1");
    let run = ctx.run_cmd_in_image(&["--rm", "--pull=never"], "skopeo/zstd:z1", &["cat", "/zstd-marker"]);
    run.assert_ok();
    assert_eq!(run.stdout_trim(), "zstd", "{run}");
    ctx.run_cmd_in_image(&["--rm", "--pull=never"], "skopeo/busybox:d1", &["true"]).assert_ok();
}

/// Tar members: (name, content).
type Members = Vec<(String, Vec<u8>)>;

/// The members of a tar file, in order.
fn read_tar(path: &Path) -> Members {
    let mut a = tar::Archive::new(std::fs::File::open(path).unwrap());
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            (name, data)
        })
        .collect()
}

/// Writes `members` as a tar of regular files (names as given, `..` too).
fn write_tar(path: &Path, members: &[(String, Vec<u8>)]) {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        let raw = &mut h.as_gnu_mut().unwrap().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    std::fs::write(path, b.into_inner().unwrap()).unwrap();
}

/// The member holding the top layer of the only image of a saved archive.
fn top_layer(members: &[(String, Vec<u8>)], oci: bool) -> String {
    let json = |name: &str| -> serde_json::Value {
        let data = &members.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no {name}")).1;
        serde_json::from_slice(data).unwrap()
    };
    if oci {
        let index = json("index.json");
        let digest = index["manifests"][0]["digest"].as_str().unwrap().replace("sha256:", "blobs/sha256/");
        let manifest = json(&digest);
        let layers = manifest["layers"].as_array().unwrap();
        layers.last().unwrap()["digest"].as_str().unwrap().replace("sha256:", "blobs/sha256/")
    } else {
        let m = json("manifest.json");
        m[0]["Layers"].as_array().unwrap().last().unwrap().as_str().unwrap().to_string()
    }
}

#[test]
fn bad_archives_leave_the_store_unchanged() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let busybox = format!("{reg}/test/busybox:latest");
    let layered = format!("{reg}/test/layered:latest");
    pull(&ctx, &busybox);
    pull(&ctx, &layered);
    let save = |format: &str| -> PathBuf {
        let p = ctx.dir.join(format!("good.{format}.tar"));
        rl(&ctx, &["save", "--format", format, "-o", &p.to_string_lossy(), &layered]).assert_ok();
        p
    };
    let (docker, oci) = (save("docker-archive"), save("oci-archive"));
    // busybox stays: layered's bottom layer is in the store, its two others are not.
    rl(&ctx, &["rmi", &layered]).assert_ok();
    let before = snapshot(&ctx);
    assert_eq!(before.layers.len(), 1);

    let mut cases: Vec<(&str, PathBuf, &str)> = Vec::new();
    let plain = ctx.dir.join("not-a-tar");
    std::fs::write(&plain, b"hello, not an archive\n").unwrap();
    cases.push(("not a tar", plain, "not a tar archive"));
    let empty = ctx.dir.join("empty.tar");
    write_tar(&empty, &[("README".to_string(), b"hi".to_vec())]);
    cases.push(("no manifest", empty, "no manifest.json or index.json"));

    for (oci_format, good) in [(false, &docker), (true, &oci)] {
        let members = read_tar(good);
        let top = top_layer(&members, oci_format);
        let variant = |tag: &str, edit: &dyn Fn(&mut Members)| -> PathBuf {
            let mut m = members.clone();
            edit(&mut m);
            let p = ctx.dir.join(format!("{tag}-{}.tar", if oci_format { "oci" } else { "docker" }));
            write_tar(&p, &m);
            p
        };
        let missing = variant("missing", &|m| m.retain(|(n, _)| *n != top));
        cases.push(("missing blob", missing, "missing"));
        // The top layer adds /opt/old/new with "new\n": its content changes, its tar stays valid.
        let tampered = variant("tampered", &|m| {
            let data = &mut m.iter_mut().find(|(n, _)| *n == top).unwrap().1;
            let at = data.windows(4).position(|w| w == b"new\n").expect("the file's content in the layer");
            data[at..at + 3].copy_from_slice(b"NEW");
        });
        cases.push(("tampered layer", tampered, if oci_format { "digest mismatch" } else { "image config says" }));
        let escaping = variant("escape", &|m| m.insert(0, ("../escaped".to_string(), b"x".to_vec())));
        cases.push(("member ../", escaping, "leaves the archive"));
    }

    for (what, file, needle) in &cases {
        let out = rl(&ctx, &["load", "-i", &file.to_string_lossy()]);
        out.assert_error(needle);
        assert!(out.stderr.contains(&*file.to_string_lossy()), "{what}: the error names the file\n{out}");
        assert_eq!(snapshot(&ctx), before, "{what}: the store is unchanged\n{out}");
    }
    assert!(!ctx.dir.parent().unwrap().join("escaped").exists());

    // The good archives still load, after all that.
    rl(&ctx, &["load", "-i", &oci.to_string_lossy()]).assert_ok();
    check_layered(&ctx, &layered);
}

#[test]
fn save_errors_are_clear_and_write_nothing() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    pull(&ctx, &format!("{reg}/test/busybox"));
    let file = ctx.dir.join("out.tar");
    let f = file.to_string_lossy().into_owned();
    let out = rl(&ctx, &["save", "-o", &f, &format!("{reg}/test/busybox"), "no-such-image"]);
    out.assert_error("no-such-image");
    assert!(out.stderr.contains("hint:"), "{out}");
    rl(&ctx, &["save", "--format", "tarball", "-o", &f, &format!("{reg}/test/busybox")]).assert_error("tarball");
    let nowhere = ctx.dir.join("no/such/dir/out.tar");
    rl(&ctx, &["save", "-o", &nowhere.to_string_lossy(), &format!("{reg}/test/busybox")])
        .assert_error(&nowhere.parent().unwrap().to_string_lossy());
    assert!(!file.exists());
    let left: Vec<_> = std::fs::read_dir(&ctx.dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().contains("rl-save")), "{left:?}");
    assert_eq!(ctx.store_entries("tmp"), Vec::<String>::new(), "no staging leftovers");

    // To stdout (a file here), by id: a nameless image, loaded back as such from stdin.
    let id = rl(&ctx, &["images", "-q"]).stdout_trim().to_string();
    let piped = ctx.dir.join("stdout.tar");
    let mut c = ctx.rl();
    c.args(["save", &id]).stdout(std::fs::File::create(&piped).unwrap());
    let st = c.status().expect("run rl save");
    assert!(st.success(), "rl save to stdout: {st}");
    rl(&ctx, &["rmi", &format!("{reg}/test/busybox")]).assert_ok();
    let out = rl_stdin(&ctx, &["load"], &std::fs::read(&piped).unwrap());
    out.assert_ok();
    assert!(out.stdout_trim().starts_with("Loaded image ID: sha256:"), "{out}");
    assert_eq!(names(&ctx), Vec::<String>::new());
    assert_eq!(rl(&ctx, &["images", "-q"]).stdout.lines().count(), 1);
}
