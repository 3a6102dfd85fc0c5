//! Real layers applied into temp directories, with archives built in memory; hostile names are
//! written into raw header fields because `tar::Builder` refuses them.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::{unpack, Options, Report};
use crate::sys;

/// A layer built entry by entry.
#[derive(Default)]
struct Layer(Vec<u8>);

impl Layer {
    fn header(kind: EntryType, name: &str, size: u64) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        h.set_uid(0);
        h.set_gid(0);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h
    }

    fn push(&mut self, mut h: Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().div_ceil(512) * 512, 0);
        self
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> &mut Self {
        let mut h = Self::header(EntryType::Regular, name, data.len() as u64);
        h.set_mode(mode);
        self.push(h, data)
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        let mut h = Self::header(EntryType::Directory, name, 0);
        h.set_mode(mode);
        self.push(h, b"")
    }

    fn link(&mut self, kind: EntryType, name: &str, target: &str) -> &mut Self {
        let mut h = Self::header(kind, name, 0);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        self.push(h, b"")
    }

    /// A PAX header describing the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (key, value) in records {
            let rest = key.len() + value.len() + 3; // ' ', '=', '\n'
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {key}=").as_bytes());
            body.extend_from_slice(value);
            body.push(b'\n');
        }
        let h = Self::header(EntryType::XHeader, "PaxHeader", body.len() as u64);
        self.push(h, &body)
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = self.0.clone();
        out.extend_from_slice(&[0; 1024]);
        out
    }
}

/// A temp directory holding `layer/` (the destination) and `outside/` (what must stay intact).
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let base = std::env::temp_dir().join(format!("rl-unpack-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        fs::create_dir_all(base.join("layer")).unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        fs::write(base.join("outside/secret"), b"secret").unwrap();
        Scratch(base)
    }

    fn layer(&self) -> PathBuf {
        self.0.join("layer")
    }

    fn outside(&self) -> PathBuf {
        self.0.join("outside")
    }

    /// Everything outside the layer directory, with contents.
    fn snapshot(&self) -> BTreeSet<(PathBuf, Vec<u8>)> {
        let mut seen = BTreeSet::new();
        for e in fs::read_dir(&self.0).unwrap().chain(fs::read_dir(self.outside()).unwrap()) {
            let p = e.unwrap().path();
            seen.insert((p.clone(), fs::read(&p).unwrap_or_default()));
        }
        seen
    }

    fn unpack(&self, layer: &Layer) -> anyhow::Result<Report> {
        unpack(&layer.bytes()[..], &self.layer(), &opts())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn opts() -> Options {
    Options { max_uid: 65536, max_gid: 65536, apply_owners: false }
}

fn err_text(r: anyhow::Result<Report>) -> String {
    format!("{:#}", r.expect_err("layer should be refused"))
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

#[test]
fn regular_files_keep_mode_and_setuid() {
    let s = Scratch::new("files");
    let r = s.unpack(Layer::default().file("bin/su", 0o4755, b"#!/bin/sh\n").file("etc/motd", 0o640, b"hi")).unwrap();
    let su = s.layer().join("bin/su");
    assert_eq!(fs::read(&su).unwrap(), b"#!/bin/sh\n");
    assert_eq!(fs::metadata(&su).unwrap().permissions().mode() & 0o7777, 0o4755);
    assert_eq!(fs::metadata(s.layer().join("etc/motd")).unwrap().permissions().mode() & 0o7777, 0o640);
    assert_eq!(fs::metadata(s.layer().join("bin")).unwrap().permissions().mode() & 0o7777, 0o755);
    assert_eq!((r.files, r.bytes), (2, 12));
}

#[test]
fn directories_get_mode_and_are_reused() {
    let s = Scratch::new("dirs");
    let mut l = Layer::default();
    l.dir("./", 0o755).dir("srv/", 0o700).file("srv/a", 0o644, b"a").dir("srv", 0o750).dir("tmp/", 0o1777);
    s.unpack(&l).unwrap();
    assert_eq!(fs::metadata(s.layer().join("srv")).unwrap().permissions().mode() & 0o7777, 0o750);
    assert_eq!(fs::read(s.layer().join("srv/a")).unwrap(), b"a");
    assert_eq!(fs::metadata(s.layer().join("tmp")).unwrap().permissions().mode() & 0o7777, 0o1777);
}

#[test]
fn symlink_target_is_kept_verbatim() {
    let s = Scratch::new("symlink");
    let l = Layer::default().link(EntryType::Symlink, "etc/mtab", "/proc/self/mounts").bytes();
    unpack(&l[..], &s.layer(), &opts()).unwrap();
    assert_eq!(fs::read_link(s.layer().join("etc/mtab")).unwrap(), Path::new("/proc/self/mounts"));
}

#[test]
fn hardlink_shares_the_inode() {
    let s = Scratch::new("hardlink");
    s.unpack(Layer::default().file("bin/a", 0o755, b"x").link(EntryType::Link, "bin/b", "/bin/a")).unwrap();
    let (a, b) = (fs::metadata(s.layer().join("bin/a")).unwrap(), fs::metadata(s.layer().join("bin/b")).unwrap());
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
}

#[test]
fn whiteout_becomes_a_0_0_char_device() {
    let s = Scratch::new("whiteout");
    let mut l = Layer::default();
    l.file("a/f", 0o644, b"x").file("a/.wh.f", 0o644, b"").file(".wh.gone", 0o644, b"");
    match s.unpack(&l) {
        Err(e) if format!("{e:#}").contains("Operation not permitted") => {
            return eprintln!("skipped: mknod of a 0/0 whiteout refused for this user: {e:#}");
        }
        r => r.unwrap(),
    };
    for name in ["a/f", "gone"] {
        let m = fs::symlink_metadata(s.layer().join(name)).unwrap();
        assert!(m.file_type().is_char_device(), "{name}");
        assert_eq!(m.rdev(), 0, "{name}");
    }
    assert!(!s.layer().join(".wh.gone").exists());
    assert!(err_text(s.unpack(Layer::default().file("x/.wh...", 0o644, b""))).contains("whiteout names no file"));
    let r = s.unpack(Layer::default().file(".wh..wh.plnk", 0o644, b"")).unwrap();
    assert!(r.warnings[0].contains("aufs"), "{:?}", r.warnings);
}

#[test]
fn opaque_marker_sets_both_xattrs_and_keeps_same_layer_entries() {
    let s = Scratch::new("opaque");
    if !user_xattrs_work(&s.layer()) {
        return;
    }
    let mut l = Layer::default();
    l.dir("d", 0o755).file("d/early", 0o644, b"1").file("d/.wh..wh..opq", 0o644, b"").file("d/late", 0o644, b"2");
    s.unpack(&l).unwrap();
    let d = s.layer().join("d");
    for x in ["user.overlay.opaque", "user.fuseoverlayfs.opaque"] {
        assert_eq!(sys::lget_xattr(&d, x).unwrap(), b"y", "{x}");
    }
    assert!(d.join("early").exists() && d.join("late").exists());
    assert!(!d.join(".wh..wh..opq").exists());
}

#[test]
fn dotdot_names_are_refused_and_absolute_names_stripped() {
    let s = Scratch::new("dotdot");
    let before = s.snapshot();
    for name in ["../x", "/abs/../../x", "a/../../outside/secret"] {
        let text = err_text(s.unpack(Layer::default().file(name, 0o644, b"pwned")));
        assert!(text.contains(&format!("layer entry `{name}`: path escapes the layer")), "{text}");
    }
    let text = err_text(s.unpack(Layer::default().link(EntryType::Link, "h", "../../etc/passwd")));
    assert!(text.contains("hardlink target `../../etc/passwd`: path escapes the layer"), "{text}");
    assert_eq!(s.snapshot(), before);
    s.unpack(Layer::default().file("/etc/hostname", 0o644, b"box").file("./a/./b/../c", 0o644, b"c")).unwrap();
    assert_eq!(fs::read(s.layer().join("etc/hostname")).unwrap(), b"box");
    assert!(s.layer().join("a/c").exists());
}

#[test]
fn symlinked_parent_never_leads_outside() {
    let s = Scratch::new("parent");
    let before = s.snapshot();
    let outside = s.outside();
    let abs = outside.to_str().unwrap();
    for (link, target) in [("a", abs), ("b", "../outside"), ("c", "/")] {
        let mut l = Layer::default();
        l.link(EntryType::Symlink, link, target).file(&format!("{link}/secret"), 0o644, b"pwned");
        let text = err_text(s.unpack(&l));
        assert!(text.contains("path escapes the layer"), "{text}");
        fs::remove_file(s.layer().join(link)).unwrap();
    }
    // A hardlink through such a symlink, and a file over a symlink, stay inside too.
    let mut l = Layer::default();
    l.link(EntryType::Symlink, "p", abs).link(EntryType::Link, "h", "p/secret");
    assert!(err_text(s.unpack(&l)).contains("path escapes the layer"));
    let secret = outside.join("secret");
    s.unpack(Layer::default().link(EntryType::Symlink, "z", secret.to_str().unwrap()).file("z", 0o644, b"new"))
        .unwrap();
    assert_eq!(fs::read(s.layer().join("z")).unwrap(), b"new");
    assert_eq!(s.snapshot(), before);
    // A symlink that stays inside the layer is followed.
    s.unpack(Layer::default().dir("sub", 0o755).link(EntryType::Symlink, "in", "sub").file("in/f", 0o644, b"f"))
        .unwrap();
    assert!(s.layer().join("sub/f").is_file());
}

#[test]
fn hardlink_to_an_escaping_symlink_links_the_symlink() {
    let s = Scratch::new("linksym");
    let before = s.snapshot();
    let secret = s.outside().join("secret");
    let mut l = Layer::default();
    l.link(EntryType::Symlink, "s", secret.to_str().unwrap()).link(EntryType::Link, "h", "s");
    s.unpack(&l).unwrap();
    let h = fs::symlink_metadata(s.layer().join("h")).unwrap();
    assert!(h.file_type().is_symlink());
    assert_eq!(h.ino(), fs::symlink_metadata(s.layer().join("s")).unwrap().ino());
    assert_ne!(h.ino(), fs::metadata(&secret).unwrap().ino());
    assert_eq!(s.snapshot(), before);
}

#[test]
fn devices_are_skipped_and_reported_fifos_made() {
    let s = Scratch::new("devices");
    let mut null = Layer::header(EntryType::Char, "dev/null", 0);
    null.set_device_major(1).unwrap();
    null.set_device_minor(3).unwrap();
    let mut fifo = Layer::header(EntryType::Fifo, "run/ctl", 0);
    fifo.set_mode(0o620);
    let r = s
        .unpack(
            Layer::default().push(null, b"").push(Layer::header(EntryType::Block, "dev/sda", 0), b"").push(fifo, b""),
        )
        .unwrap();
    assert_eq!(r.skipped_devices, ["dev/null", "dev/sda"]);
    assert!(!s.layer().join("dev").exists());
    let m = fs::symlink_metadata(s.layer().join("run/ctl")).unwrap();
    assert!(m.file_type().is_fifo());
    assert_eq!(m.permissions().mode() & 0o7777, 0o620);
}

#[test]
fn truncated_and_hostile_streams_give_clean_errors() {
    let s = Scratch::new("truncated");
    let full = Layer::default().file("big", 0o644, &[7; 1000]).bytes();
    let text = format!("{:#}", unpack(&full[..512 + 600], &s.layer(), &opts()).unwrap_err());
    assert!(text.contains("layer entry `big`: archive ends inside the file (600 of 1000 bytes)"), "{text}");
    assert!(unpack(&full[..300], &s.layer(), &opts()).is_err());
    // Cut anywhere: an error or a shorter layer, never a panic.
    let mut l = Layer::default();
    l.pax(&[("SCHILY.xattr.user.a", b"1")]).file("a/b", 0o644, &[1; 700]).link(EntryType::Link, "c", "a/b");
    let bytes = l.dir("d", 0o755).bytes();
    for cut in (0..bytes.len()).step_by(97) {
        let _ = unpack(&bytes[..cut], &s.layer(), &opts());
    }
    let mut huge = Layer::header(EntryType::Regular, "huge", 1 << 40);
    huge.set_cksum();
    let mut bytes = huge.as_bytes().to_vec();
    bytes.extend_from_slice(&[1; 4096]);
    assert!(format!("{:#}", unpack(&bytes[..], &s.layer(), &opts()).unwrap_err()).contains("archive ends inside"));
    let mut l = Layer::default();
    l.pax(&[("path", b"a\0b")]).file("x", 0o644, b"");
    assert!(err_text(s.unpack(&l)).contains("NUL"));
    let mut l = Layer::default();
    l.link(EntryType::Symlink, "f", "x").link(EntryType::Link, "f/y", "x");
    assert!(err_text(s.unpack(&l)).contains("layer entry `f/y`: `f` is a dangling symlink"));
    let text = err_text(s.unpack(Layer::default().file("g", 0o644, b"").file("g/y", 0o644, b"")));
    assert!(text.contains("layer entry `g/y`: `g` is not a directory"), "{text}");
}

#[test]
fn owners_above_the_range_are_remapped() {
    let s = Scratch::new("owners");
    let mut h = Layer::header(EntryType::Regular, "far", 0);
    h.set_uid(70_000);
    h.set_gid(100);
    let mut near = Layer::header(EntryType::Regular, "near", 0);
    near.set_uid(5);
    let r = s.unpack(Layer::default().push(h, b"").push(near, b"")).unwrap();
    assert_eq!(r.remapped_owners, 1);
}

#[test]
fn pax_xattrs_are_filtered() {
    let s = Scratch::new("xattrs");
    if !user_xattrs_work(&s.layer()) {
        return;
    }
    let mut l = Layer::default();
    l.pax(&[
        ("SCHILY.xattr.user.foo", b"bar"),
        ("SCHILY.xattr.trusted.a", b"1"),
        ("SCHILY.xattr.user.overlay.redirect", b"/x"),
    ]);
    l.file("f", 0o444, b"")
        .pax(&[("SCHILY.xattr.trusted.b", b"2"), ("SCHILY.xattr.security.selinux", b"s0")])
        .dir("d", 0o755);
    let r = s.unpack(&l).unwrap();
    let f = s.layer().join("f");
    assert_eq!(sys::lget_xattr(&f, "user.foo").unwrap(), b"bar");
    assert!(sys::lget_xattr(&f, "user.overlay.redirect").is_err());
    assert_eq!(r.warnings.len(), 3, "{:?}", r.warnings); // trusted.* once, selinux, overlay
                                                         // File capabilities (CAP_NET_RAW, v2): kept as root; a warning, not an error, otherwise.
    let mut cap = Vec::new();
    for word in [0x0200_0001u32, 1 << 13, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    let r =
        s.unpack(Layer::default().pax(&[("SCHILY.xattr.security.capability", &cap)]).file("ping", 0o755, b"")).unwrap();
    let set = sys::lget_xattr(&s.layer().join("ping"), "security.capability").is_ok();
    assert!(set || r.warnings.iter().any(|w| w.contains("file capabilities dropped")), "{:?}", r.warnings);
}

#[test]
fn times_are_applied_to_files_dirs_and_symlinks() {
    let s = Scratch::new("times");
    let mut d = Layer::header(EntryType::Directory, "d", 0);
    d.set_mtime(1_500_000_000);
    d.set_mode(0o755);
    let mut l = Layer::default();
    l.push(d, b"").file("d/f", 0o644, b"f").link(EntryType::Symlink, "d/l", "f");
    l.pax(&[("mtime", b"1234567890.5")]).file("precise", 0o644, b"");
    s.unpack(&l).unwrap();
    let mtime = |p: &str| {
        let m = fs::symlink_metadata(s.layer().join(p)).unwrap();
        (m.mtime(), m.mtime_nsec(), m.atime())
    };
    assert_eq!(mtime("d"), (1_500_000_000, 0, 1_500_000_000));
    assert_eq!(mtime("d/f").0, 1_600_000_000);
    assert_eq!(mtime("d/l").0, 1_600_000_000);
    assert_eq!(mtime("precise"), (1_234_567_890, 500_000_000, 1_234_567_890));
}

#[test]
fn later_entries_replace_earlier_ones() {
    let s = Scratch::new("replace");
    let mut l = Layer::default();
    l.file("x", 0o644, b"x").dir("x", 0o755).file("x/in", 0o644, b"in");
    l.dir("y", 0o755).file("y/c", 0o644, b"c").file("y", 0o600, b"now a file");
    l.file("l1", 0o644, b"1").link(EntryType::Link, "l2", "l1").file("l2", 0o644, b"2");
    s.unpack(&l).unwrap();
    assert!(s.layer().join("x/in").is_file());
    assert_eq!(fs::read(s.layer().join("y")).unwrap(), b"now a file");
    assert_eq!(fs::read(s.layer().join("l1")).unwrap(), b"1");
    assert_eq!(fs::read(s.layer().join("l2")).unwrap(), b"2");
}

#[test]
fn components_normalise_names() {
    let ok = |raw: &str| super::show(&super::components(raw.as_bytes()).unwrap());
    assert_eq!(ok("/usr//bin/./env"), "usr/bin/env");
    assert_eq!(ok("./"), ".");
    assert_eq!(ok("a/b/../c/"), "a/c");
    for bad in ["..", "a/../..", "/../etc", "a\0b"] {
        assert!(super::components(bad.as_bytes()).is_err(), "{bad:?}");
    }
}
