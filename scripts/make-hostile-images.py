#!/usr/bin/env python3
"""scripts/make-hostile-images.py [--busybox PATH] OUT
   scripts/make-hostile-images.py --forget-faults STORAGE OUT
   scripts/make-hostile-images.py --apply-faults STORAGE OUT

Build the hostile OCI image layouts that tests/image_hostile.rs pulls (tests/fixtures/README.md,
"Hostile images", describes each): OUT/hostile-<name>/{oci-layout,index.json,blobs/sha256/...},
seeded as test/hostile-<name> by scripts/seed-hostile.sh. Layers whose names climb out of the
layer, symlinks and hardlinks that lead outside, devices, a wrong diff id; and blobs that are
fine in the layout but that the seed script breaks in the registry's storage afterwards
(a flipped byte, a truncated file, a deleted file), because a registry will not accept a blob
whose digest is wrong.

The layouts are written exactly like scripts/make-images.py writes its own (this script
imports it): fixed mtimes, numeric owners, deterministic gzip and JSON. What differs is the tar
writer: entries go out in the order given and with the names given, unchecked, since the
point is names and orders a well-behaved writer never produces. "Random" content comes from a
seeded generator, so it too is the same on every build.

OUT/faults.json lists the registry faults: [{"image", "digest", "fault", ...}]. With
--forget-faults, remove those blobs from the registry's STORAGE directory (its
`rootdirectory`), so that seeding uploads them intact again; with --apply-faults, break them
there after seeding. Both need only the layouts in OUT and run as the storage's owner.

Prints one line per image: NAME DIGEST SIZE, as make-images.py does.
"""

import argparse
import importlib.util
import io
import json
import os
import random
import shutil
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # no scripts/__pycache__ in the checkout
_spec = importlib.util.spec_from_file_location("make_images", os.path.join(HERE, "make-images.py"))
mi = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mi)

# A diff id no layer has: recognisable in an error message, and fixed so tests can name it.
WRONG_DIFF_ID = "sha256:" + "d1ffd1ff" * 8
# Host paths that hostile entries aim at. Tests create (and own) the /tmp ones to watch them.
OWNED_FILE = "rl-hostile-owned-file"
CHMOD_TARGET = "/tmp/rl-hostile-chmod-target"
VICTIM = "rl-hostile-victim"


class RawLayer:
    """A tar layer written entry by entry in the order given, names as given (`../x`,
    duplicates, a name under a symlink): what make-images.Layer refuses to write."""

    def __init__(self):
        self.items = []  # (TarInfo, bytes or None)

    def _info(self, name, kind, mode, uid=0, gid=0):
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = mode
        ti.uid, ti.gid = uid, gid
        ti.uname = ti.gname = ""
        ti.mtime = mi.MTIME
        return ti

    def dir(self, name, mode=0o755):
        self.items.append((self._info(name, tarfile.DIRTYPE, mode), None))
        return self

    def file(self, name, data, mode=0o644):
        ti = self._info(name, tarfile.REGTYPE, mode)
        ti.size = len(data)
        self.items.append((ti, data))
        return self

    def symlink(self, name, target):
        ti = self._info(name, tarfile.SYMTYPE, 0o777)
        ti.linkname = target
        self.items.append((ti, None))
        return self

    def hardlink(self, name, target):
        ti = self._info(name, tarfile.LNKTYPE, 0o644)
        ti.linkname = target
        self.items.append((ti, None))
        return self

    def device(self, name, kind, major, minor, mode=0o666):
        ti = self._info(name, kind, mode)
        ti.devmajor, ti.devminor = major, minor
        self.items.append((ti, None))
        return self

    def tar(self):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for ti, data in self.items:
                tf.addfile(ti, io.BytesIO(data) if data is not None else None)
        return buf.getvalue()


def noise(seed, size):
    """SIZE bytes that do not compress (gzip stores them), the same on every build."""
    return random.Random(seed).randbytes(size)


def noise_layer(seed, size, path):
    """A layer of one file of noise: a blob no other image shares, so breaking it in the
    registry breaks only this image."""
    return mi.Layer().dir(os.path.dirname(path)).file(path, noise(seed, size)).tar()


def image(out, name, layers, created_by, config=None, diff_ids=None):
    """Write OUT/NAME with LAYERS ([(tar, compression)]) and return (digest, size, manifest).
    DIFF_IDS, when given, replaces the config's true diff ids."""
    lay = mi.Layout(os.path.join(out, name))
    descs, true_ids = [], []
    for tar, how in layers:
        true_ids.append(mi.sha256(tar))
        descs.append(lay.blob(mi.compress(tar, how), mi.MT_LAYER[how]))
    arch = mi.host_arch()
    cfg = {
        "created": mi.CREATED,
        "architecture": arch,
        "os": "linux",
        "config": config or mi.busybox_config(),
        "rootfs": {"type": "layers", "diff_ids": diff_ids or true_ids},
        "history": [mi.hist(c) for c in created_by],
    }
    if len(created_by) != len(layers):
        mi.die("internal: history does not match the layers")
    manifest = {
        "schemaVersion": 2,
        "mediaType": mi.MT_MANIFEST,
        "config": lay.blob(mi.canonical_json(cfg), mi.MT_CONFIG),
        "layers": descs,
    }
    top = lay.blob(mi.canonical_json(manifest), mi.MT_MANIFEST,
                   platform={"architecture": arch, "os": "linux"})
    digest, size = lay.finish(top)
    return digest, size, manifest


BUSYBOX = "ADD busybox-static /bin (+ applet links, /etc/passwd, /etc/group)"


def build_all(out, bb_tar):
    """Yield (name, digest, size) per image; collect the registry faults in FAULTS."""
    faults = []
    ok = b"a harmless file before the hostile entry\n"

    # Names that climb out of the layer. The small one fails before the download ends; the
    # big one fails on its first entry while megabytes are still to come.
    yield "hostile-dotdot", image(out, "hostile-dotdot", [(
        RawLayer().file("ok", ok).file("../../escape", b"escaped\n").tar(), "gzip")],
        ["ADD ../../escape"])
    yield "hostile-dotdot-big", image(out, "hostile-dotdot-big", [(
        RawLayer().file("../../escape", b"escaped\n").dir("big")
        .file("big/noise", noise(7, 4 << 20)).tar(), "gzip")],
        ["ADD ../../escape, then 4 MiB"])

    # A symlink to a host directory, then an entry through it.
    yield "hostile-abs-symlink-parent", image(out, "hostile-abs-symlink-parent", [(
        RawLayer().file("ok", ok).symlink("a", "/tmp").file(f"a/{OWNED_FILE}", b"owned\n")
        .tar(), "gzip")], [f"ln -s /tmp a; ADD a/{OWNED_FILE}"])

    # Hardlinks to host files: by climbing, and through a symlink.
    yield "hostile-hardlink-out", image(out, "hostile-hardlink-out", [(
        RawLayer().file("ok", ok).hardlink("passwd", "../../../etc/passwd").tar(), "gzip")],
        ["ln ../../../etc/passwd passwd"])
    yield "hostile-hardlink-via-symlink", image(out, "hostile-hardlink-via-symlink", [(
        RawLayer().file("ok", ok).symlink("s", "/etc").hardlink("passwd", "s/passwd").tar(),
        "gzip")], ["ln -s /etc s; ln s/passwd passwd"])

    # A whiteout and an opaque marker reached through a symlink to the host's /tmp.
    yield "hostile-whiteout-through-symlink", image(out, "hostile-whiteout-through-symlink", [(
        RawLayer().file("ok", ok).symlink("w", "/tmp").file(f"w/.wh.{VICTIM}", b"").tar(),
        "gzip")], [f"ln -s /tmp w; rm w/{VICTIM}"])
    yield "hostile-opaque-through-symlink", image(out, "hostile-opaque-through-symlink", [(
        RawLayer().file("ok", ok).symlink("o", "/tmp").file("o/.wh..wh..opq", b"").tar(),
        "gzip")], ["ln -s /tmp o; opaque o"])

    # Later entries replace earlier ones; no mode may land on what a symlink pointed at.
    # All legal tar: the pull succeeds and the layer holds the last entry of each name.
    yield "hostile-chmod-through-symlink", image(out, "hostile-chmod-through-symlink", [(
        RawLayer()
        .symlink("l", "/etc/passwd").dir("l", 0o777)
        .symlink("t", CHMOD_TARGET).file("t", b"replaced\n", 0o777)
        .dir("d", 0o777).symlink("d", CHMOD_TARGET)
        .tar(), "gzip")], ["symlinks replaced by 0777 entries of the same names"])

    # Devices: skipped with a warning, the rest of the layer applies.
    devices = (RawLayer().dir("opt").file("opt/kept", b"kept\n")
               .device("opt/char-1-3", tarfile.CHRTYPE, 1, 3)
               .device("opt/block-7-0", tarfile.BLKTYPE, 7, 0, 0o660).tar())
    yield "hostile-device", image(out, "hostile-device", [(bb_tar, "gzip"), (devices, "gzip")],
                                  [BUSYBOX, "mknod opt/char-1-3 c 1 3; mknod opt/block-7-0 b 7 0"])

    # A layer whose blob is right but whose diff id in the config is not.
    marker = mi.Layer().file("diffid-marker", b"the config lies about me\n").tar()
    yield "hostile-diffid", image(out, "hostile-diffid", [(marker, "gzip")],
                                  ["ADD diffid-marker"], diff_ids=[WRONG_DIFF_ID])

    # Registry faults: busybox plus a layer of noise no other image has; the seed script
    # breaks that blob in the registry's storage.
    def broken(name, seed, size, fault, **extra):
        layers = [(bb_tar, "gzip"), (noise_layer(seed, size, f"noise/{name}"), "gzip")]
        digest, total, manifest = image(out, name, layers, [BUSYBOX, f"ADD noise/{name}"])
        blob = manifest["layers"][-1]
        faults.append(dict(image=name, digest=blob["digest"], size=blob["size"], fault=fault,
                           **extra))
        return digest, total
    # A flipped byte in the middle of stored (incompressible) data: gzip notices only at its
    # CRC, after the last byte, so the download ends and its digest is what is wrong.
    yield "hostile-tampered", broken("hostile-tampered", 1, 1 << 20, "flip-middle")
    # An invalid deflate block type in the first byte after the gzip header: the unpacker
    # fails at once while 2 MiB are still to be sent.
    yield "hostile-tampered-early", broken("hostile-tampered-early", 2, 2 << 20, "flip-early")
    yield "hostile-truncated", broken("hostile-truncated", 3, 1 << 20, "truncate")
    yield "hostile-missing-blob", broken("hostile-missing-blob", 4, 256 << 10, "delete")

    # Not hostile: big enough that a pull lasts long enough to be killed in the middle.
    yield "hostile-big", image(out, "hostile-big", [
        (bb_tar, "gzip"),
        (noise_layer(5, 48 << 20, "big/noise"), "gzip"),
        (mi.Layer().dir("small").file("small/a", b"a\n").file("small/b", b"b\n").tar(), "gzip"),
    ], [BUSYBOX, "ADD big/noise (48 MiB)", "ADD small/a small/b"])

    with open(os.path.join(out, "faults.json"), "w") as f:
        json.dump(faults, f, indent=1, sort_keys=True)
        f.write("\n")


def blob_path(storage, digest):
    """Where docker-registry's filesystem driver keeps a blob."""
    algo, hexd = digest.split(":", 1)
    return os.path.join(storage, "docker", "registry", "v2", "blobs", algo, hexd[:2], hexd, "data")


def read_faults(out):
    path = os.path.join(out, "faults.json")
    if not os.path.isfile(path):
        mi.die(f"no {path}: build the hostile images into {out} first")
    with open(path) as f:
        return json.load(f)


def forget_faults(storage, out):
    for f in read_faults(out):
        d = os.path.dirname(blob_path(storage, f["digest"]))
        if os.path.isdir(d):
            shutil.rmtree(d)
            print(f"{f['image']}: removed {f['digest']} from the registry storage")


def apply_faults(storage, out):
    for f in read_faults(out):
        path = blob_path(storage, f["digest"])
        if not os.path.isfile(path):
            mi.die(f"{f['image']}: no blob {path}: seed the hostile images first")
        with open(path, "rb") as fh:
            if mi.sha256(fh.read()) != f["digest"]:
                mi.die(f"{f['image']}: {path} is not the seeded blob (broken already? "
                       "--forget-faults and seed again)")
        if f["fault"] == "delete":
            os.unlink(path)
            what = "deleted"
        elif f["fault"] == "truncate":
            os.truncate(path, f["size"] // 2)
            what = f"truncated to {f['size'] // 2} of {f['size']} bytes"
        else:
            # gzip.compress writes a 10-byte header (no name, no extra field), then deflate:
            # bits 1-2 of its first byte are the first block's type, and 3 is invalid.
            at, mask = (f["size"] // 2, 0x01) if f["fault"] == "flip-middle" else (10, 0x06)
            with open(path, "r+b") as fh:
                fh.seek(at)
                b = fh.read(1)[0]
                fh.seek(at)
                fh.write(bytes([b ^ mask if f["fault"] == "flip-middle" else b | mask]))
            what = f"byte {at} changed"
        print(f"{f['image']}: {f['digest']} {what}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", metavar="OUT", help="directory of the OUT/hostile-<name>/ layouts")
    ap.add_argument("--busybox", default=os.environ.get("RL_BUSYBOX", "/bin/busybox"),
                    help="static busybox for the images that run (default $RL_BUSYBOX or "
                         "/bin/busybox)")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--forget-faults", metavar="STORAGE",
                      help="remove the blobs to break from the registry storage STORAGE")
    mode.add_argument("--apply-faults", metavar="STORAGE",
                      help="break the blobs listed in OUT/faults.json in STORAGE")
    args = ap.parse_args()
    if args.forget_faults:
        return forget_faults(args.forget_faults, args.out)
    if args.apply_faults:
        return apply_faults(args.apply_faults, args.out)
    os.makedirs(args.out, exist_ok=True)
    bb_tar, _version = mi.busybox_layer(args.busybox)
    for name, (digest, size, *_rest) in build_all(args.out, bb_tar):
        print(f"{name} {digest} {size}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
