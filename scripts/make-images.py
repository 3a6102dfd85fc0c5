#!/usr/bin/env python3
"""scripts/make-images.py [--debian] [--only NAME[,NAME...]] OUT

Build the OCI image layouts rl's tests pull (tests/fixtures/README.md describes each image):
OUT/<name>/{oci-layout,index.json,blobs/sha256/...}. Nothing is committed: the images are
made at test time from what the host has (busybox-static; mmdebstrap for --debian) and
served by a real registry on 127.0.0.1 (scripts/registry.sh seed).

Output is deterministic for a given host busybox (and zlib/zstd): every tar entry is built
in memory with a fixed mtime, explicit uid/gid/mode and no user or group names, entries are
sorted by path, gzip headers carry no name or time, and JSON is written with sorted keys.
Runs as any user; needs only the Python standard library and the `zstd` program.

Prints one line per image: NAME DIGEST SIZE, where DIGEST is the digest of the manifest (the
image index for multiarch) and SIZE the bytes of every blob the image references, itself
included.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time

MTIME = 1704067200  # 2024-01-01T00:00:00Z
CREATED = "2024-01-01T00:00:00Z"
STD_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = {
    "tar": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
REF_NAME = "org.opencontainers.image.ref.name"

PASSWD = b"""root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
"""
GROUP = b"""root:x:0:
wheel:x:10:user
audio:x:29:user
user:x:1000:
nogroup:x:65534:
"""

# GOARCH names (what OCI platforms use) for the machines Python reports.
GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64", "riscv64": "riscv64",
          "ppc64le": "ppc64le", "s390x": "s390x"}


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


def warn(msg):
    print(msg, file=sys.stderr)


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------------
# Layers


class Layer:
    """An in-memory tar layer: entries are added in any order and written sorted by path."""

    def __init__(self):
        self.entries = {}  # path -> (TarInfo, bytes or None)

    def _info(self, path, kind, mode, uid, gid):
        path = path.strip("/")
        if path in self.entries:
            die(f"internal: duplicate layer entry {path}")
        ti = tarfile.TarInfo(path)
        ti.type = kind
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.mtime = MTIME
        return ti

    def dir(self, path, mode=0o755, uid=0, gid=0):
        self.entries[path.strip("/")] = (self._info(path, tarfile.DIRTYPE, mode, uid, gid), None)
        return self

    def file(self, path, data, mode=0o644, uid=0, gid=0):
        ti = self._info(path, tarfile.REGTYPE, mode, uid, gid)
        ti.size = len(data)
        self.entries[path.strip("/")] = (ti, data)
        return self

    def symlink(self, path, target):
        ti = self._info(path, tarfile.SYMTYPE, 0o777, 0, 0)
        ti.linkname = target
        self.entries[path.strip("/")] = (ti, None)
        return self

    def tar(self):
        buf = io.BytesIO()
        # PAX only adds an extended header when a field does not fit ustar, so ids and names
        # here come out as plain ustar records.
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            # By path components, so a directory precedes its contents and "a/b" sorts with "a".
            for path in sorted(self.entries, key=lambda p: p.split("/")):
                ti, data = self.entries[path]
                tf.addfile(ti, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


def compress(tar, how):
    if how == "tar":
        return tar
    if how == "gzip":
        return gzip.compress(tar, compresslevel=6, mtime=0)
    if how == "zstd":
        if shutil.which("zstd") is None:
            die("`zstd` missing: apt-get install zstd")
        return subprocess.run(["zstd", "-q", "-c", "-19", "--no-check"], input=tar,
                              stdout=subprocess.PIPE, check=True).stdout
    die(f"internal: unknown compression {how}")


def is_static_elf(path):
    """True when the ELF file at PATH has no PT_INTERP (program interpreter) header."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:4] != b"\x7fELF":
            return False
        bits64, little = head[4] == 2, head[5] == 1
        end = "<" if little else ">"
        if bits64:
            phoff, = struct.unpack(end + "Q", head[32:40])
            phentsize, phnum = struct.unpack(end + "HH", head[54:58])
        else:
            phoff, = struct.unpack(end + "I", head[28:32])
            phentsize, phnum = struct.unpack(end + "HH", head[42:46])
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    for i in range(phnum):
        p_type, = struct.unpack(end + "I", table[i * phentsize:i * phentsize + 4])
        if p_type == 3:  # PT_INTERP
            return False
    return True


def busybox_layer(busybox):
    if not os.access(busybox, os.X_OK):
        die(f"`{busybox}` missing: apt-get install busybox-static")
    if not is_static_elf(busybox):
        die(f"`{busybox}` is dynamically linked: apt-get install busybox-static")
    with open(busybox, "rb") as f:
        binary = f.read()
    applets = subprocess.run([busybox, "--list"], stdout=subprocess.PIPE, check=True,
                             text=True).stdout.split()
    layer = Layer()
    for d in ("bin", "dev", "etc", "home", "usr", "var"):
        layer.dir(d)
    layer.dir("proc", 0o555).dir("sys", 0o555).dir("root", 0o700).dir("tmp", 0o1777)
    layer.dir("home/user", 0o755, 1000, 1000)
    layer.file("bin/busybox", binary, 0o755)
    for applet in sorted(set(applets)):
        if applet != "busybox" and "/" not in applet:
            layer.symlink(f"bin/{applet}", "/bin/busybox")
    layer.file("etc/passwd", PASSWD).file("etc/group", GROUP)
    version = subprocess.run([busybox], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True).stdout.splitlines()
    return layer.tar(), (version[0] if version else "busybox")


def layered_layer2():
    layer = Layer()
    layer.dir("bin").dir("etc").dir("data").dir("data/dir").dir("opt").dir("opt/old")
    layer.file("data/keep", b"keep\n")
    layer.file("data/gone", b"gone\n")
    layer.file("data/dir/a", b"a\n")
    layer.file("opt/old/x", b"x\n")
    layer.file("etc/highuid", b"owned by 70000:70000\n", 0o644, 70000, 70000)
    layer.file("bin/suid-test", b"#!/bin/sh\nid\n", 0o4755)
    return layer.tar()


def layered_layer3():
    layer = Layer()
    layer.dir("data").dir("opt").dir("opt/old")
    layer.file("data/.wh.gone", b"")
    layer.file("data/.wh.dir", b"")
    layer.file("opt/old/.wh..wh..opq", b"")
    layer.file("opt/old/new", b"new\n")
    return layer.tar()


# ---------------------------------------------------------------------------------------------
# Layouts


class Layout:
    """An OCI image layout under DIR being written."""

    def __init__(self, root):
        self.root = root
        if os.path.lexists(root):
            if not os.path.isfile(os.path.join(root, "oci-layout")):
                die(f"`{root}` exists and is not an OCI layout; refusing to overwrite it")
            shutil.rmtree(root)
        os.makedirs(os.path.join(root, "blobs", "sha256"))
        self.blobs = {}  # digest -> size

    def blob(self, data, media_type, **extra):
        digest = sha256(data)
        path = os.path.join(self.root, "blobs", "sha256", digest.split(":", 1)[1])
        if digest not in self.blobs:
            with open(path, "wb") as f:
                f.write(data)
            self.blobs[digest] = len(data)
        desc = {"mediaType": media_type, "digest": digest, "size": len(data)}
        desc.update(extra)
        return desc

    def image(self, layers, config, history, arch=None, variant=None):
        """Write LAYERS ([(tar, compression)]) and the config and manifest; return the
        manifest descriptor (with its platform)."""
        arch = arch or host_arch()
        descs, diff_ids = [], []
        for tar, how in layers:
            diff_ids.append(sha256(tar))
            descs.append(self.blob(compress(tar, how), MT_LAYER[how]))
        cfg = {
            "created": CREATED,
            "architecture": arch,
            "os": "linux",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }
        if variant:
            cfg["variant"] = variant
        if sum(1 for h in history if not h.get("empty_layer")) != len(layers):
            die("internal: history does not match the layers")
        manifest = {
            "schemaVersion": 2,
            "mediaType": MT_MANIFEST,
            "config": self.blob(canonical_json(cfg), MT_CONFIG),
            "layers": descs,
        }
        platform_ = {"architecture": arch, "os": "linux"}
        if variant:
            platform_["variant"] = variant
        return self.blob(canonical_json(manifest), MT_MANIFEST, platform=platform_)

    def index(self, manifests):
        """Write an image index over MANIFESTS; return its descriptor."""
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests}
        return self.blob(canonical_json(index), MT_INDEX)

    def finish(self, top):
        """Point index.json at TOP (tagged `latest`); return (digest, total size)."""
        top = dict(top)
        top.pop("platform", None)  # the index.json entry names the image, not a platform
        top["annotations"] = {REF_NAME: "latest"}
        with open(os.path.join(self.root, "oci-layout"), "wb") as f:
            f.write(canonical_json({"imageLayoutVersion": "1.0.0"}))
        index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [top]}
        with open(os.path.join(self.root, "index.json"), "wb") as f:
            f.write(canonical_json(index))
        return top["digest"], sum(self.blobs.values())


def host_arch():
    machine = platform.machine()
    if machine not in GOARCH:
        die(f"unknown machine `{machine}`")
    return GOARCH[machine]


def hist(created_by, empty=False, comment=None):
    h = {"created": CREATED, "created_by": created_by}
    if comment:
        h["comment"] = comment
    if empty:
        h["empty_layer"] = True
    return h


def busybox_config(**extra):
    cfg = {"Cmd": ["sh"], "Env": [STD_PATH]}
    cfg.update(extra)
    return cfg


def build_busybox(out, bb):
    tar, version = bb
    lay = Layout(os.path.join(out, "busybox"))
    top = lay.image([(tar, "gzip")], busybox_config(),
                    [hist("ADD busybox-static /bin (+ applet links, /etc/passwd, /etc/group)",
                          comment=version),
                     hist('CMD ["sh"]', empty=True)])
    return lay.finish(top)


def build_layered(out, bb):
    tar, version = bb
    lay = Layout(os.path.join(out, "layered"))
    config = {"Cmd": ["sh"], "Env": [STD_PATH, "LAYERED=1"], "WorkingDir": "/data",
              "User": "", "StopSignal": "SIGUSR1"}
    history = [
        hist("ADD busybox-static /bin (+ applet links, /etc/passwd, /etc/group)",
             comment=version),
        hist("ENV LAYERED=1", empty=True),
        hist("ADD /data /opt/old/x /etc/highuid (70000:70000) /bin/suid-test (4755)"),
        hist("RUN rm /data/gone; rm -r /data/dir; rm -r /opt/old/*; echo new >/opt/old/new"),
        hist("WORKDIR /data", empty=True),
        hist("STOPSIGNAL SIGUSR1", empty=True),
        hist('CMD ["sh"]', empty=True),
    ]
    top = lay.image([(tar, "gzip"), (layered_layer2(), "gzip"), (layered_layer3(), "gzip")],
                    config, history)
    return lay.finish(top)


def build_zstd(out, bb):
    tar, version = bb
    lay = Layout(os.path.join(out, "zstd"))
    marker = Layer().file("zstd-marker", b"zstd\n").tar()
    top = lay.image([(tar, "zstd"), (marker, "tar")], busybox_config(),
                    [hist("ADD busybox-static /bin (+ applet links, /etc/passwd, /etc/group)",
                          comment=version),
                     hist("ADD zstd-marker /zstd-marker"),
                     hist('CMD ["sh"]', empty=True)])
    return lay.finish(top)


def build_entrypoint(out, bb):
    tar, version = bb
    lay = Layout(os.path.join(out, "entrypoint"))
    config = busybox_config(Entrypoint=["/bin/echo", "from-entrypoint"], Cmd=["default-cmd"])
    top = lay.image([(tar, "gzip")], config,
                    [hist("ADD busybox-static /bin (+ applet links, /etc/passwd, /etc/group)",
                          comment=version),
                     hist('ENTRYPOINT ["/bin/echo","from-entrypoint"]', empty=True),
                     hist('CMD ["default-cmd"]', empty=True)])
    return lay.finish(top)


def build_multiarch(out, bb):
    tar, version = bb
    lay = Layout(os.path.join(out, "multiarch"))
    native = host_arch()
    manifests = [lay.image([(tar, "gzip")], busybox_config(),
                           [hist("ADD busybox-static /bin (+ applet links, /etc/passwd, "
                                 "/etc/group)", comment=version),
                            hist('CMD ["sh"]', empty=True)])]
    # Tiny images for the other platforms: never run, only selected (or not) by platform.
    for arch, variant in (("amd64", None), ("arm64", "v8"), ("riscv64", None)):
        if arch == native:
            continue
        name = arch + (f"/{variant}" if variant else "")
        tiny = Layer().file("arch", f"{name}\n".encode()).tar()
        manifests.append(lay.image([(tiny, "gzip")], {"Cmd": ["/arch"], "Env": [STD_PATH]},
                                   [hist(f"ADD arch /arch ({name})")], arch, variant))
    return lay.finish(lay.index(manifests))


def debian_sources():
    """The host's enabled apt sources that serve bookworm, as files for mmdebstrap."""
    files = []
    if os.path.isfile("/etc/apt/sources.list"):
        files.append("/etc/apt/sources.list")
    d = "/etc/apt/sources.list.d"
    if os.path.isdir(d):
        files += [os.path.join(d, n) for n in sorted(os.listdir(d))
                  if n.endswith((".list", ".sources"))]
    picked = []
    for path in files:
        with open(path, errors="replace") as f:
            text = f.read()
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if any("bookworm" in ln for ln in lines):
            picked.append(path)
    return picked


def build_debian(out):
    if shutil.which("mmdebstrap") is None:
        warn("debian: skipped: `mmdebstrap` missing (apt-get install mmdebstrap)")
        return None
    mirrors = [os.environ["RL_DEBIAN_MIRROR"]] if os.environ.get("RL_DEBIAN_MIRROR") \
        else debian_sources()
    if not mirrors:
        warn("debian: skipped: no apt source for bookworm in /etc/apt/sources.list*; "
             "set RL_DEBIAN_MIRROR")
        return None
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(MTIME))
    with tempfile.TemporaryDirectory(prefix="rl-debian-") as tmp:
        rootfs = os.path.join(tmp, "rootfs.tar")
        log = os.path.join(tmp, "mmdebstrap.log")
        # No /dev entries (an unprivileged extractor cannot mknod them; the runtime provides
        # /dev) and fixed /etc/hostname and /etc/resolv.conf instead of copies of the host's.
        cmd = ["mmdebstrap", "--variant=minbase", "--skip=output/dev",
               "--customize-hook=echo debian >\"$1/etc/hostname\"; : >\"$1/etc/resolv.conf\"; chmod 0644 \"$1/etc/hostname\" \"$1/etc/resolv.conf\"",
               "bookworm", rootfs] + mirrors
        started = time.monotonic()
        with open(log, "wb") as logf:
            rc = subprocess.run(cmd, env=env, stdout=logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL).returncode
        if rc != 0:
            with open(log, errors="replace") as f:
                tail = f.read().splitlines()[-15:]
            warn(f"debian: skipped: mmdebstrap failed (exit {rc}); its last lines:")
            for ln in tail:
                warn(f"  {ln}")
            return None
        warn(f"debian: mmdebstrap took {time.monotonic() - started:.0f} s")
        with open(rootfs, "rb") as f:
            tar = f.read()
    lay = Layout(os.path.join(out, "debian"))
    top = lay.image([(tar, "gzip")], {"Cmd": ["bash"], "Env": [STD_PATH]},
                    [hist("mmdebstrap --variant=minbase bookworm", comment=" ".join(mirrors)),
                     hist('CMD ["bash"]', empty=True)])
    return lay.finish(top)


IMAGES = {
    "busybox": build_busybox,
    "layered": build_layered,
    "zstd": build_zstd,
    "multiarch": build_multiarch,
    "entrypoint": build_entrypoint,
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", metavar="OUT", help="directory to create OUT/<name>/ layouts in")
    ap.add_argument("--debian", action="store_true",
                    help="also build `debian` (mmdebstrap bookworm minbase; needs the mirror)")
    ap.add_argument("--only", metavar="NAMES",
                    help="comma-separated subset of: " + ",".join(list(IMAGES) + ["debian"]))
    ap.add_argument("--busybox", default=os.environ.get("RL_BUSYBOX", "/bin/busybox"),
                    help="static busybox to put in the images (default $RL_BUSYBOX or "
                         "/bin/busybox)")
    args = ap.parse_args()

    wanted = list(IMAGES) + (["debian"] if args.debian else [])
    if args.only:
        wanted = [n for n in args.only.split(",") if n]
        for n in wanted:
            if n not in IMAGES and n != "debian":
                die(f"unknown image `{n}`")
    os.makedirs(args.out, exist_ok=True)

    bb = busybox_layer(args.busybox) if any(n in IMAGES for n in wanted) else None
    for name in wanted:
        result = build_debian(args.out) if name == "debian" else IMAGES[name](args.out, bb)
        if result:
            digest, size = result
            print(f"{name} {digest} {size}", flush=True)


if __name__ == "__main__":
    main()
