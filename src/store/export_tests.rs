//! Trees built in temp directories, exported, read back with the `tar` crate and unpacked again
//! with [`crate::store::unpack::unpack`] into a fresh directory to compare.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{mknod, Mode, SFlag, UtimensatFlags};
use tar::EntryType;

use super::{export, Exact, Options, Summary};
use crate::store::unpack;
use crate::sys;

/// A temp directory holding `src/` (what is exported) and `dst/` (where it is unpacked again).
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let base = std::env::temp_dir().join(format!("rl-export-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("src")).unwrap();
        fs::create_dir_all(base.join("dst")).unwrap();
        Scratch(base)
    }

    fn src(&self) -> PathBuf {
        self.0.join("src")
    }

    fn dst(&self) -> PathBuf {
        self.0.join("dst")
    }

    fn file(&self, rel: &str, mode: u32, data: &[u8]) -> PathBuf {
        let p = self.src().join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn dir(&self, rel: &str, mode: u32) -> PathBuf {
        let p = self.src().join(rel);
        fs::create_dir_all(&p).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn export(&self, opts: &Options) -> (Vec<u8>, Summary) {
        let mut out = Vec::new();
        let summary = export(&self.src(), &mut out, opts).unwrap();
        (out, summary)
    }

    fn unpack(&self, tar: &[u8]) -> unpack::Report {
        let opts = unpack::Options { max_uid: 65536, max_gid: 65536, apply_owners: false };
        unpack::unpack(tar, &self.dst(), &opts).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn user_xattrs_work(dir: &Path) -> bool {
    let probe = dir.join("xattr-probe");
    fs::write(&probe, b"").unwrap();
    let ok = sys::lset_xattr(&probe, "user.rl-probe", b"1").is_ok();
    fs::remove_file(&probe).unwrap();
    if !ok {
        eprintln!("skipped: user.* xattrs unsupported on {}", dir.display());
    }
    ok
}

fn whiteout_device(p: &Path) -> bool {
    match mknod(p, SFlag::S_IFCHR, Mode::empty(), 0) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("skipped: mknod 0/0 `{}`: {e} (needs Linux 5.8)", p.display());
            false
        }
    }
}

/// One archive entry as read back: name, type, mode, owner, size, link target, PAX records.
#[derive(Debug)]
struct Seen {
    name: String,
    kind: EntryType,
    mode: u32,
    owner: (u64, u64),
    size: u64,
    link: Option<String>,
    pax: Vec<(String, Vec<u8>)>,
}

fn entries(tar: &[u8]) -> Vec<Seen> {
    let mut seen = Vec::new();
    let mut archive = tar::Archive::new(tar);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let pax = match e.pax_extensions().unwrap() {
            Some(exts) => {
                exts.map(|x| x.unwrap()).map(|x| (x.key().unwrap().to_owned(), x.value_bytes().to_vec())).collect()
            }
            None => Vec::new(),
        };
        let h = e.header();
        assert_eq!(h.username_bytes(), Some(&b""[..]), "uname of {:?}", e.path());
        assert_eq!(h.groupname_bytes(), Some(&b""[..]), "gname of {:?}", e.path());
        seen.push(Seen {
            name: String::from_utf8_lossy(&e.path_bytes()).into_owned(),
            kind: h.entry_type(),
            mode: h.mode().unwrap(),
            owner: (h.uid().unwrap(), h.gid().unwrap()),
            size: h.size().unwrap(),
            link: e.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned()),
            pax,
        });
    }
    seen
}

fn names(tar: &[u8]) -> Vec<String> {
    entries(tar).into_iter().map(|e| e.name).collect()
}

/// One entry of a tree: type letter, permission bits, mtime, symlink target, content, and the
/// `user.test` xattr.
#[derive(Debug, PartialEq)]
struct Node(char, u32, i64, Option<PathBuf>, Vec<u8>, Option<Vec<u8>>);

/// What a tree holds, entry by entry, and which names share an inode.
#[derive(Debug, PartialEq)]
struct Tree {
    nodes: BTreeMap<PathBuf, Node>,
    links: BTreeSet<BTreeSet<PathBuf>>,
}

fn tree(root: &Path) -> Tree {
    fn walk(root: &Path, dir: &Path, t: &mut Tree, inodes: &mut BTreeMap<u64, BTreeSet<PathBuf>>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let m = fs::symlink_metadata(&p).unwrap();
            let ft = m.file_type();
            let kinds = [(ft.is_dir(), 'd'), (ft.is_symlink(), 'l'), (ft.is_fifo(), 'p'), (ft.is_char_device(), 'c')];
            let kind = kinds.iter().find(|k| k.0).map_or('f', |k| k.1);
            let target = ft.is_symlink().then(|| fs::read_link(&p).unwrap());
            let content = if ft.is_file() { fs::read(&p).unwrap() } else { Vec::new() };
            let xattr = sys::lget_xattr(&p, "user.test").ok();
            t.nodes.insert(rel.clone(), Node(kind, m.mode() & 0o7777, m.mtime(), target, content, xattr));
            if !ft.is_dir() && m.nlink() > 1 {
                inodes.entry(m.ino()).or_default().insert(rel);
            }
            if ft.is_dir() {
                walk(root, &p, t, inodes);
            }
        }
    }
    let mut t = Tree { nodes: BTreeMap::new(), links: BTreeSet::new() };
    let mut inodes = BTreeMap::new();
    walk(root, root, &mut t, &mut inodes);
    t.links = inodes.into_values().collect();
    t
}

const LONG_DIR: &str =
    "a-directory-name-long-enough/that-with-its-file/the-name-overflows-the-ustar-field/of-a-hundred-bytes";

/// Files with modes, symlinks, a hardlink pair, nested and long names, a FIFO.
fn build(s: &Scratch) {
    s.file("bin/su", 0o4755, b"#!/bin/sh\n");
    s.file("bin/sgid", 0o2711, b"g");
    s.file("etc/motd", 0o640, b"hello\n");
    s.file("a/b/c/deep", 0o600, b"deep");
    s.file(&format!("{LONG_DIR}/file"), 0o644, b"long");
    s.dir("tmp", 0o1777);
    s.dir("a/b", 0o750);
    s.dir("empty", 0o700);
    let one = s.file("data/one", 0o644, b"same inode");
    fs::hard_link(&one, s.src().join("data/two")).unwrap();
    symlink("../etc/motd", s.src().join("bin/motd")).unwrap();
    symlink("/etc/passwd", s.src().join("abs")).unwrap();
    symlink(format!("/{LONG_DIR}/{LONG_DIR}"), s.src().join("long-target")).unwrap();
    let fifo = s.src().join("run-pipe");
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
    fs::set_permissions(&fifo, fs::Permissions::from_mode(0o620)).unwrap();
    settle(&s.src(), &mut 1_600_000_000);
}

/// Gives every entry below `dir` its own whole-second mtime, children before their directory
/// (adding an entry changes the directory's mtime). GNU tar compares nanoseconds when an entry
/// has a PAX header; the archive keeps seconds only.
fn settle(dir: &Path, next: &mut i64) {
    let mut children: Vec<PathBuf> = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    children.sort();
    for p in children {
        if fs::symlink_metadata(&p).unwrap().is_dir() {
            settle(&p, next);
        }
        let t = nix::sys::time::TimeSpec::new(*next, 0);
        nix::sys::stat::utimensat(AT_FDCWD, &p, &t, &t, UtimensatFlags::NoFollowSymlink).unwrap();
        *next += 1;
    }
}

#[test]
fn round_trip_through_unpack() {
    let s = Scratch::new("roundtrip");
    build(&s);
    let xattrs = user_xattrs_work(&s.src());
    if xattrs {
        sys::lset_xattr(&s.src().join("etc/motd"), "user.test", b"1").unwrap();
        sys::lset_xattr(&s.src().join("a"), "user.test", b"dir").unwrap();
    }
    let _socket = std::os::unix::net::UnixListener::bind(s.src().join("sock")).unwrap();
    let (tar, summary) = s.export(&Options::default());
    let report = s.unpack(&tar);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);

    fs::remove_file(s.src().join("sock")).unwrap();
    let (src, dst) = (tree(&s.src()), tree(&s.dst()));
    assert_eq!(src, dst);
    assert!(src.links.iter().any(|l| l.len() == 2 && l.contains(Path::new("data/two"))), "{:?}", src.links);
    if xattrs {
        assert_eq!(dst.nodes[Path::new("etc/motd")].5.as_deref(), Some(&b"1"[..]));
        assert_eq!(dst.nodes[Path::new("a")].5.as_deref(), Some(&b"dir"[..]));
    }
    assert_eq!(summary.entries, u64::try_from(src.nodes.len()).unwrap());
    assert_eq!(summary.bytes, 10 + 1 + 6 + 4 + 4 + 10);
    assert_eq!(summary.warnings, ["skipped socket `sock`"]);
}

#[test]
fn headers_are_sorted_numeric_and_minimal() {
    let s = Scratch::new("headers");
    build(&s);
    let (tar, _) = s.export(&Options::default());
    let seen = entries(&tar);
    let got: Vec<&str> = seen.iter().map(|e| e.name.as_str()).collect();
    let long = format!("{LONG_DIR}/file");
    let mut long_dirs: Vec<String> = LONG_DIR.match_indices('/').map(|(i, _)| format!("{}/", &LONG_DIR[..i])).collect();
    long_dirs.extend([format!("{LONG_DIR}/"), long.clone()]);
    let want = [
        "a/ a/b/ a/b/c/ a/b/c/deep",
        &long_dirs.join(" "),
        "abs bin/ bin/motd bin/sgid bin/su data/ data/one data/two empty/ etc/ etc/motd long-target run-pipe tmp/",
    ];
    assert_eq!(got.join(" "), want.join(" "));
    let by_name = |n: &str| seen.iter().find(|e| e.name == n).unwrap();
    let uid = u64::from(nix::unistd::getuid().as_raw());
    let gid = u64::from(nix::unistd::getgid().as_raw());
    for e in &seen {
        assert_eq!(e.owner, (uid, gid), "{}", e.name);
        let keys: Vec<&str> = e.pax.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.iter().all(|k| ["path", "linkpath"].contains(k) || k.starts_with("SCHILY.xattr.")), "{keys:?}");
    }
    assert_eq!((by_name("bin/su").kind, by_name("bin/su").mode), (EntryType::Regular, 0o4755));
    assert_eq!(by_name("bin/sgid").mode, 0o2711);
    assert_eq!((by_name("tmp/").kind, by_name("tmp/").mode), (EntryType::Directory, 0o1777));
    assert_eq!(by_name("run-pipe").kind, EntryType::Fifo);
    assert_eq!(by_name("bin/motd").link.as_deref(), Some("../etc/motd"));
    let two = by_name("data/two");
    assert_eq!((two.kind, two.link.as_deref(), two.size), (EntryType::Link, Some("data/one"), 0));
    assert_eq!(by_name("data/one").kind, EntryType::Regular);
    assert!(by_name(&long).pax.iter().any(|(k, v)| k == "path" && v == long.as_bytes()));
    let target = format!("/{LONG_DIR}/{LONG_DIR}");
    assert!(by_name("long-target").pax.iter().any(|(k, v)| k == "linkpath" && v == target.as_bytes()));
}

#[test]
fn exporting_twice_gives_the_same_bytes() {
    let s = Scratch::new("determinism");
    build(&s);
    let (first, _) = s.export(&Options::default());
    let (second, _) = s.export(&Options::default());
    assert!(first == second, "two exports of one tree differ");
    assert_eq!(first.len() % 512, 0);
}

#[test]
fn whiteouts_and_opaque_directories_become_oci_markers() {
    let s = Scratch::new("whiteouts");
    if !user_xattrs_work(&s.src()) || !whiteout_device(&s.src().join("gone")) {
        return;
    }
    fs::hard_link(s.src().join("gone"), s.src().join("gone-too")).unwrap();
    s.file("d/kept", 0o644, b"k");
    assert!(whiteout_device(&s.src().join("d/removed")));
    sys::lset_xattr(&s.src().join("d"), "user.overlay.opaque", b"y").unwrap();
    s.file("x/plain", 0o644, b"p");
    sys::lset_xattr(&s.src().join("x"), "user.overlay.opaque", b"x").unwrap();
    let (tar, summary) = s.export(&Options::default());
    let seen = entries(&tar);
    let got: Vec<&str> = seen.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(got, ["d/", "d/.wh..wh..opq", "d/kept", "d/.wh.removed", ".wh.gone", ".wh.gone-too", "x/", "x/plain"]);
    for e in seen.iter().filter(|e| e.name.contains(".wh.")) {
        assert_eq!((e.kind, e.mode, e.owner, e.size), (EntryType::Regular, 0, (0, 0), 0), "{}", e.name);
    }
    assert!(seen.iter().all(|e| e.pax.is_empty()), "overlay xattrs must not be exported");
    assert_eq!((summary.entries, summary.bytes), (8, 2));

    s.unpack(&tar);
    for gone in ["gone", "gone-too", "d/removed"] {
        let m = fs::symlink_metadata(s.dst().join(gone)).unwrap();
        assert!(m.file_type().is_char_device() && m.rdev() == 0, "{gone}");
    }
    assert_eq!(sys::lget_xattr(&s.dst().join("d"), "user.overlay.opaque").unwrap(), b"y");
    assert!(sys::lget_xattr(&s.dst().join("x"), "user.overlay.opaque").is_err());
    assert_eq!(fs::read(s.dst().join("d/kept")).unwrap(), b"k");
}

#[test]
fn an_opaque_marker_file_is_written_once() {
    let s = Scratch::new("marker");
    s.file("e/.wh..wh..opq", 0o644, b"");
    s.file("e/-dash", 0o644, b"");
    s.file("e/.wh.old", 0o644, b"");
    let (tar, _) = s.export(&Options::default());
    assert_eq!(names(&tar), ["e/", "e/.wh..wh..opq", "e/-dash", "e/.wh.old"]);
}

#[test]
fn skip_empty_leaves_out_only_empty_files() {
    let s = Scratch::new("skip");
    s.file("etc/hosts", 0o644, b"");
    s.file("etc/hostname", 0o644, b"box\n");
    s.file("etc/resolv.conf", 0o644, b"");
    s.file("etc/empty", 0o644, b"");
    let skip = ["etc/hosts", "etc/hostname", "/etc/resolv.conf"];
    let opts = Options { skip_empty: skip.iter().map(|p| p.to_string()).collect() };
    let (tar, summary) = s.export(&opts);
    assert_eq!(names(&tar), ["etc/", "etc/empty", "etc/hostname"]);
    assert_eq!((summary.entries, summary.bytes), (3, 4));
    let (all, _) = s.export(&Options::default());
    assert_eq!(names(&all), ["etc/", "etc/empty", "etc/hostname", "etc/hosts", "etc/resolv.conf"]);
}

#[test]
fn overlay_redirects_refuse_the_export() {
    let s = Scratch::new("redirect");
    if !user_xattrs_work(&s.src()) {
        return;
    }
    s.dir("a/moved", 0o755);
    sys::lset_xattr(&s.src().join("a/moved"), "user.overlay.redirect", b"/old").unwrap();
    let err = export(&s.src(), Vec::new(), &Options::default()).unwrap_err();
    let text = format!("{err:#}");
    assert!(text.starts_with("export `a/moved`: has `user.overlay.redirect`"), "{text}");
}

#[test]
fn a_missing_directory_is_named() {
    let err = export(Path::new("/nonexistent/rl-export"), Vec::new(), &Options::default()).unwrap_err();
    assert_eq!(format!("{err:#}"), "open directory `/nonexistent/rl-export`: No such file or directory");
}

#[test]
fn a_file_that_shrinks_is_an_error_not_a_short_entry() {
    let mut exact = Exact { inner: &b"abc"[..], left: 5 };
    let mut out = Vec::new();
    let err = std::io::copy(&mut exact, &mut out).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    let mut exact = Exact { inner: &b"abcdef"[..], left: 4 };
    out.clear();
    std::io::copy(&mut exact, &mut out).unwrap();
    assert_eq!(out, b"abcd");
}

#[test]
fn names_need_not_be_utf8() {
    let s = Scratch::new("bytes");
    let name = std::ffi::OsStr::from_bytes(b"caf\xe9");
    fs::write(s.src().join(name), b"x").unwrap();
    symlink(name, s.src().join("link")).unwrap();
    let (tar, _) = s.export(&Options::default());
    s.unpack(&tar);
    assert_eq!(tree(&s.src()), tree(&s.dst()));
}

#[test]
fn gnu_tar_finds_no_difference_from_the_tree() {
    let s = Scratch::new("gnutar");
    build(&s);
    let (tar, _) = s.export(&Options::default());
    let archive = s.0.join("layer.tar");
    fs::write(&archive, &tar).unwrap();
    let out = match std::process::Command::new("tar").arg("-tf").arg(&archive).output() {
        Ok(out) => out,
        Err(e) => return eprintln!("skipped: run `tar`: {e}"),
    };
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().collect::<Vec<_>>(), names(&tar));
    // --compare checks type, mode, owner, mtime, size, content and link targets.
    let out =
        std::process::Command::new("tar").arg("--compare").arg("-f").arg(&archive).arg("-C").arg(s.src()).output();
    let out = out.unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
