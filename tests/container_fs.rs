//! Filesystems in and out of containers, with images from the test registry: `rl commit` of a
//! container that deleted and added files (the new image shows both, with one layer more),
//! `rl export` → `rl import` round trips, `rl cp` both ways on a stopped container (owners on
//! both sides), symlink escapes through cp in both directions checked from the host side too,
//! and clear errors (missing path, running container, container made from a rootfs dir).
mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use common::*;

fn rl(ctx: &Ctx, args: &[&str]) -> Out {
    ctx.rl_out(args, None)
}

fn rl_stdin(ctx: &Ctx, args: &[&str], stdin: &[u8]) -> Out {
    ctx.rl_out(args, Some(stdin))
}

/// A stopped container named `name` made from `image` by running `script`.
fn container(ctx: &Ctx, image: &str, name: &str, script: &str) {
    ctx.run_cmd_in_image(&["--name", name], image, &["sh", "-c", script]).assert_ok();
}

/// Runs `script` in a fresh `--rm` container of `image` and returns its stdout lines.
fn lines_of(ctx: &Ctx, image: &str, script: &str) -> Vec<String> {
    let out = ctx.run_cmd_in_image(&["--rm", "--pull=never"], image, &["sh", "-c", script]);
    out.assert_ok();
    out.stdout.lines().map(String::from).collect()
}

fn layers(ctx: &Ctx, image: &str) -> usize {
    let out = rl(ctx, &["image", "inspect", image]);
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{out}"));
    let v = if v.is_array() { v[0].clone() } else { v };
    v["RootFS"]["Layers"].as_array().map(Vec::len).unwrap_or_else(|| panic!("no RootFS.Layers\n{out}"))
}

/// Entry names of a tar file, via the tar crate.
fn tar_names(bytes: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(bytes);
    a.entries().unwrap().map(|e| String::from_utf8_lossy(&e.unwrap().path_bytes()).into_owned()).collect()
}

#[test]
fn commit_keeps_deletions_and_additions() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let layered = format!("{reg}/test/layered:latest");
    rl(&ctx, &["pull", "-q", &layered]).assert_ok();
    let before = layers(&ctx, &layered);
    // A deleted file (a whiteout), an added one, and a directory emptied and refilled (opaque).
    container(
        &ctx,
        &layered,
        "c1",
        "rm /data/keep && echo added >/data/added && rm -r /opt/old && mkdir /opt/old && echo fresh >/opt/old/f",
    );
    let out = rl(&ctx, &["commit", "-m", "my change", "-c", "ENV COMMITTED=yes", "c1", "local/committed:v1"]);
    out.assert_ok();
    assert!(out.stdout_trim().starts_with("sha256:"), "prints the image id\n{out}");
    let image = "local/committed:v1";
    assert_eq!(layers(&ctx, image), before + 1);
    let got = lines_of(
        &ctx,
        image,
        "test ! -e /data/keep && echo keep-gone; cat /data/added; ls /opt/old; echo $COMMITTED $LAYERED; pwd",
    );
    assert_eq!(got, ["keep-gone", "added", "f", "yes 1", "/data"]);
    let hist = rl(&ctx, &["history", "--no-trunc", image]);
    hist.assert_ok();
    assert!(hist.stdout.contains("my change"), "the message is in the history\n{hist}");
    // The base image is untouched.
    assert_eq!(lines_of(&ctx, &layered, "cat /data/keep; test -e /data/added || echo no-added"), ["keep", "no-added"]);
}

#[test]
fn commit_refuses_a_rootfs_container() {
    let Some(ctx) = Ctx::with_subids() else { return };
    ctx.run(&["--name", "r1"], &["true"]).assert_ok();
    rl(&ctx, &["commit", "r1", "x/y"]).assert_error("not an image").assert_code(125);
    rl(&ctx, &["commit", "nosuch", "x/y"]).assert_error("container `nosuch`: no such container");
}

#[test]
fn export_import_round_trip() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let busybox = format!("{reg}/test/busybox:latest");
    rl(&ctx, &["pull", "-q", &busybox]).assert_ok();
    container(&ctx, &busybox, "e1", "echo hello >/hello && rm /etc/group && mkdir -p /srv/deep && touch /srv/deep/x");
    let file = ctx.dir.join("e1.tar");
    let f = file.to_string_lossy().into_owned();
    rl(&ctx, &["export", "-o", &f, "e1"]).assert_ok();
    let bytes = std::fs::read(&file).unwrap();
    let names = tar_names(&bytes);
    for want in ["hello", "bin/busybox", "srv/deep/x", "etc/passwd"] {
        assert!(names.iter().any(|n| n == want), "export has `{want}`: {names:?}");
    }
    for unwanted in ["etc/group", "etc/hosts"] {
        assert!(!names.iter().any(|n| n == unwanted), "export has no `{unwanted}`: {names:?}");
    }
    assert!(!names.iter().any(|n| n.contains(".wh.")), "no whiteouts in a merged export: {names:?}");
    // The same bytes on stdout: the export is deterministic.
    let piped = Command::new(rl_bin())
        .arg("--root")
        .arg(&ctx.store)
        .arg("--runroot")
        .arg(&ctx.runroot)
        .args(["export", "e1"])
        .output()
        .unwrap();
    assert!(piped.status.success(), "{}", String::from_utf8_lossy(&piped.stderr));
    assert!(piped.stdout == bytes, "export to stdout differs from export -o");

    let out =
        rl(&ctx, &["import", "-c", "CMD [\"sh\"]", "-c", "ENV IMPORTED=1", "-m", "from e1", &f, "local/imported"]);
    out.assert_ok();
    assert_eq!(layers(&ctx, "local/imported:latest"), 1);
    let got = lines_of(
        &ctx,
        "local/imported",
        "cat /hello; test ! -e /etc/group && echo group-gone; ls /srv/deep; echo $IMPORTED; stat -c %u /bin/busybox",
    );
    assert_eq!(got, ["hello", "group-gone", "x", "1", "0"]);

    // Compressed, from stdin, without a name: the same layer, the id printed.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &bytes).unwrap();
    let out = rl_stdin(&ctx, &["import", "-"], &gz.finish().unwrap());
    out.assert_ok();
    let id = out.stdout_trim().to_string();
    assert!(id.starts_with("sha256:"), "{out}");
    assert_eq!(lines_of(&ctx, &id, "cat /hello"), ["hello"]);

    // Not a tar: a clear error, and no image.
    let junk = ctx.dir.join("junk");
    std::fs::write(&junk, vec![b'x'; 2000]).unwrap();
    rl(&ctx, &["import", &junk.to_string_lossy(), "local/junk"]).assert_error("not a tar archive");
    rl(&ctx, &["image", "inspect", "local/junk"]).assert_code(125);
}

#[test]
fn cp_out_and_in_on_a_stopped_container() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let busybox = format!("{reg}/test/busybox:latest");
    rl(&ctx, &["pull", "-q", &busybox]).assert_ok();
    container(
        &ctx,
        &busybox,
        "p1",
        "mkdir -p /srv/d/sub && echo one >/srv/d/f && echo two >/srv/d/sub/g && ln -s f /srv/d/link && \
         chown 1234:1234 /srv/d/f && chmod 600 /srv/d/f",
    );
    // Out: a directory (to a new path), a file into an existing directory, a directory's contents.
    let out_dir = ctx.dir.join("out");
    rl(&ctx, &["cp", "p1:/srv/d", &out_dir.to_string_lossy()]).assert_ok();
    assert_eq!(std::fs::read_to_string(out_dir.join("f")).unwrap(), "one\n");
    assert_eq!(std::fs::read_to_string(out_dir.join("sub/g")).unwrap(), "two\n");
    assert_eq!(std::fs::read_link(out_dir.join("link")).unwrap(), Path::new("f"));
    let meta = std::fs::metadata(out_dir.join("f")).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (uid(), 0o600), "copied out: the user's, mode kept");
    let into = ctx.mkdir("into");
    rl(&ctx, &["cp", "p1:/srv/d/f", &into.to_string_lossy()]).assert_ok();
    assert_eq!(std::fs::read_to_string(into.join("f")).unwrap(), "one\n");
    let contents = ctx.dir.join("contents");
    rl(&ctx, &["cp", "p1:/srv/d/.", &contents.to_string_lossy()]).assert_ok();
    assert!(contents.join("sub/g").is_file() && contents.join("f").is_file());
    // To stdout: a tar with the base name on top.
    let tar = Command::new(rl_bin())
        .arg("--root")
        .arg(&ctx.store)
        .arg("--runroot")
        .arg(&ctx.runroot)
        .args(["cp", "p1:/srv/d", "-"])
        .output()
        .unwrap();
    assert!(tar.status.success(), "{}", String::from_utf8_lossy(&tar.stderr));
    assert_eq!(tar_names(&tar.stdout), ["d/", "d/f", "d/link", "d/sub/", "d/sub/g"]);

    // In: a file to a new name, a directory into an existing one, with -a, and a tar on stdin.
    let src = ctx.mkdir("src");
    std::fs::write(src.join("file"), "from host\n").unwrap();
    std::fs::create_dir(src.join("dir")).unwrap();
    std::fs::write(src.join("dir/inner"), "inner\n").unwrap();
    rl(&ctx, &["cp", &src.join("file").to_string_lossy(), "p1:/tmp/renamed"]).assert_ok();
    rl(&ctx, &["cp", &src.join("dir").to_string_lossy(), "p1:/srv"]).assert_ok();
    rl(&ctx, &["cp", "-a", &src.join("file").to_string_lossy(), "p1:/srv/kept"]).assert_ok();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(6);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, "streamed", &b"piped\n"[..]).unwrap();
    rl_stdin(&ctx, &["cp", "-", "p1:/srv"], &b.into_inner().unwrap()).assert_ok();
    // Nothing was written into an image layer.
    for layer in std::fs::read_dir(ctx.store.join("layers")).unwrap().flatten() {
        assert!(!layer.path().join("tmp/renamed").exists(), "a layer dir was written: {}", layer.path().display());
    }
    // Seen from inside, through a commit of the container.
    rl(&ctx, &["commit", "p1", "local/p1"]).assert_ok();
    let got = lines_of(
        &ctx,
        "local/p1",
        "cat /tmp/renamed /srv/dir/inner /srv/streamed; stat -c %u:%g /tmp/renamed /srv/dir/inner /srv/kept",
    );
    let keep = format!("{}:{}", uid(), gid());
    assert_eq!(got, ["from host", "inner", "piped", "0:0", "0:0", keep.as_str()]);
}

#[test]
fn cp_symlinks_stay_inside_the_container() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let busybox = format!("{reg}/test/busybox:latest");
    rl(&ctx, &["pull", "-q", &busybox]).assert_ok();
    // A host directory and a file the container's symlinks name by their host paths.
    let host = ctx.mkdir("host");
    std::fs::write(host.join("secret"), "host secret\n").unwrap();
    let h = host.to_string_lossy().into_owned();
    container(
        &ctx,
        &busybox,
        "s1",
        &format!(
            "ln -s / /escape && ln -s ../../../../../../.. /up && ln -s {h}/secret /abs && ln -s {h} /hostdir && \
             mkdir -p {h} && echo container secret >{h}/secret"
        ),
    );
    for src in [format!("s1:/escape{h}/secret"), format!("s1:/up{h}/secret"), "s1:/hostdir/secret".to_string()] {
        let dest = ctx.dir.join("got");
        let _ = std::fs::remove_file(&dest);
        rl(&ctx, &["cp", &src, &dest.to_string_lossy()]).assert_ok();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "container secret\n", "{src}");
    }
    // -L follows a final symlink, inside; without it the link itself is copied.
    let dest = ctx.dir.join("followed");
    rl(&ctx, &["cp", "-L", "s1:/abs", &dest.to_string_lossy()]).assert_ok();
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "container secret\n");
    let dest = ctx.dir.join("link");
    rl(&ctx, &["cp", "s1:/abs", &dest.to_string_lossy()]).assert_ok();
    assert_eq!(std::fs::read_link(&dest).unwrap(), host.join("secret"));

    // Writes through the same links land in the container, never on the host.
    let src = ctx.dir.join("payload");
    std::fs::write(&src, "payload\n").unwrap();
    let s = src.to_string_lossy().into_owned();
    rl(&ctx, &["cp", &s, &format!("s1:/escape{h}/w1")]).assert_ok();
    rl(&ctx, &["cp", &s, "s1:/hostdir/w2"]).assert_ok();
    rl(&ctx, &["cp", &s, "s1:/hostdir"]).assert_ok();
    for name in ["w1", "w2", "payload"] {
        assert!(!host.join(name).exists(), "`{name}` appeared on the host");
        let dest = ctx.dir.join(format!("back-{name}"));
        rl(&ctx, &["cp", &format!("s1:{h}/{name}"), &dest.to_string_lossy()]).assert_ok();
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "payload\n", "{name} is in the container");
    }
    assert_eq!(std::fs::read_to_string(host.join("secret")).unwrap(), "host secret\n");
    // A tar stream whose entries climb out, or go through a link, is refused.
    for (name, link) in [("../../../x-escaped", None), ("hostdir/x-escaped", None), ("l", Some(h.as_str()))] {
        let mut b = tar::Builder::new(Vec::new());
        let mut hd = tar::Header::new_gnu();
        match link {
            Some(target) => {
                hd.set_entry_type(tar::EntryType::Symlink);
                hd.set_size(0);
                b.append_link(&mut hd, name, target).unwrap();
                let mut hd = tar::Header::new_gnu();
                hd.set_size(2);
                hd.set_mode(0o644);
                b.append_data(&mut hd, "l/x-escaped", &b"x\n"[..]).unwrap();
            }
            None => {
                hd.set_size(2);
                hd.set_mode(0o644);
                hd.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
                hd.set_cksum();
                b.append(&hd, &b"x\n"[..]).unwrap();
            }
        }
        let out = rl_stdin(&ctx, &["cp", "-", "s1:/"], &b.into_inner().unwrap());
        out.assert_code(125);
        assert!(!host.join("x-escaped").exists(), "{name}: a file appeared on the host\n{out}");
        assert!(!ctx.dir.join("x-escaped").exists(), "{name}: a file appeared on the host\n{out}");
    }
}

#[test]
fn cp_errors_are_clear() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let busybox = format!("{reg}/test/busybox:latest");
    rl(&ctx, &["pull", "-q", &busybox]).assert_ok();
    container(&ctx, &busybox, "x1", "true");
    let dest = ctx.dir.join("nothing");
    let out = rl(&ctx, &["cp", "x1:/no/such/file", &dest.to_string_lossy()]);
    out.assert_error("/no/such/file").assert_error("No such file or directory").assert_error("x1");
    assert!(!dest.exists());
    let missing = ctx.dir.join("missing-src");
    rl(&ctx, &["cp", &missing.to_string_lossy(), "x1:/tmp"]).assert_error("missing-src");
    rl(&ctx, &["cp", "nosuch:/etc", "."]).assert_error("container `nosuch`: no such container");
    rl(&ctx, &["cp", "a", "b"]).assert_error("CONTAINER:PATH");
    let file = ctx.dir.join("f");
    std::fs::write(&file, "f").unwrap();
    rl(&ctx, &["cp", &file.to_string_lossy(), "x1:/no/such/dir/f"]).assert_error("/no/such/dir");
}

#[test]
fn cp_and_export_with_a_running_container() {
    let Some((ctx, reg)) = registry_ctx() else { return };
    let busybox = format!("{reg}/test/busybox:latest");
    rl(&ctx, &["pull", "-q", &busybox]).assert_ok();
    let host = ctx.mkdir("host");
    let h = host.to_string_lossy().into_owned();
    let mut c = ctx.rl();
    // The container waits for a line on stdin, then shows what was copied in meanwhile.
    let script =
        format!("echo made >/made && ln -s / /escape && mkdir -p {h} && echo ready && read line && cat /in {h}/in");
    c.args(["run", "-i", "--name", "busy", &busybox, "sh", "-c", &script]);
    let mut run = Running::spawn(c, true);
    run.wait_for_line("ready");
    let running = || {
        ctx.containers()
            .iter()
            .any(|d| std::fs::read_to_string(d.join("state.json")).is_ok_and(|s| s.contains("\"running\"")))
    };
    assert!(poll_until(running), "the container never ran\n{}", run.dump());

    let dest = ctx.dir.join("made");
    rl(&ctx, &["cp", "busy:/made", &dest.to_string_lossy()]).assert_ok();
    assert_eq!(std::fs::read_to_string(&dest).unwrap(), "made\n");
    let src = ctx.dir.join("in");
    std::fs::write(&src, "copied in\n").unwrap();
    rl(&ctx, &["cp", &src.to_string_lossy(), "busy:/in"]).assert_ok();
    rl(&ctx, &["cp", &src.to_string_lossy(), &format!("busy:/escape{h}/in")]).assert_ok();
    assert!(!host.join("in").exists(), "a file appeared on the host");
    let tar = ctx.dir.join("busy.tar");
    rl(&ctx, &["export", "-o", &tar.to_string_lossy(), "busy"]).assert_ok();
    let names = tar_names(&std::fs::read(&tar).unwrap());
    assert!(names.iter().any(|n| n == "made") && names.iter().any(|n| n == "in"), "{names:?}");
    assert!(!names.iter().any(|n| n.starts_with("proc/") && n.len() > 5), "/proc is left out: {names:?}");
    rl(&ctx, &["commit", "busy"]).assert_error("running");

    run.feed_stdin(b"go\n".to_vec());
    let out = run.finish();
    out.assert_ok();
    assert_eq!(out.stdout.lines().collect::<Vec<_>>(), ["ready", "copied in", "copied in"], "{out}");
    assert!(ctx.leftover_processes().is_empty(), "{:?}", ctx.leftover_processes());
}
