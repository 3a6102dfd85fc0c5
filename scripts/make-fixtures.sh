#!/usr/bin/env bash
# scripts/make-fixtures.sh DEST OWNER — build the busybox root filesystem rl's tests and demo
# run in, from the host's busybox-static (Debian/Ubuntu package `busybox-static`).
# Fixtures are made at test time and never committed. The whole tree belongs to OWNER: the
# rootfs a user passes to `rl run --rootfs` is their own directory, and inside the container
# rl's id map shows OWNER as root.
set -euo pipefail

die() { printf 'error: %s\n' "$*" >&2; exit 1; }

[ $# -eq 2 ] || die "usage: $0 DEST OWNER"
dest=$1
owner=$2
busybox=${RL_BUSYBOX:-/bin/busybox}

id -u "$owner" >/dev/null 2>&1 || die "no such user \`$owner\`"
[ -x "$busybox" ] || die "\`$busybox\` missing: sudo apt-get install busybox-static"
# A dynamically linked busybox (package `busybox`) would need the host's libc inside the rootfs.
if ldd "$busybox" >/dev/null 2>&1; then
  die "\`$busybox\` is dynamically linked: sudo apt-get install busybox-static"
fi

# Rebuild from scratch, but only ever delete a directory this script made.
if [ -e "$dest" ]; then
  if grep -qx 'ID=rl-busybox-fixture' "$dest/etc/os-release" 2>/dev/null; then
    rm -rf --one-file-system "$dest"
  elif [ -n "$(ls -A "$dest" 2>/dev/null)" ]; then
    die "\`$dest\` exists and is not an rl fixture; refusing to overwrite it"
  fi
fi

mkdir -p "$dest"
cd "$dest"
mkdir -p bin sbin etc proc sys dev tmp root home/user var run usr/bin usr/sbin
chmod 0755 . bin sbin etc proc sys dev home home/user var run usr usr/bin usr/sbin
chmod 1777 tmp
chmod 0700 root

install -m 0755 "$busybox" bin/busybox
# `--list-full` prints install paths such as usr/bin/wget; every applet becomes a symlink to
# /bin/busybox, which resolves inside the container. Names that already exist (bin/busybox
# itself) are skipped, as is linuxrc, which would sit in the root directory.
while read -r applet; do
  case $applet in
    bin/* | sbin/* | usr/bin/* | usr/sbin/*) ;;
    *) continue ;;
  esac
  [ -e "$applet" ] || [ -L "$applet" ] || ln -s /bin/busybox "$applet"
done < <("$busybox" --list-full)

cat >etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
user:x:1000:1000:user:/home/user:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >etc/group <<'EOF'
root:x:0:
wheel:x:10:user
user:x:1000:
audio:x:29:user
nogroup:x:65534:
EOF
cat >etc/os-release <<'EOF'
NAME="rl busybox fixture"
ID=rl-busybox-fixture
EOF
chmod 0644 etc/passwd etc/group etc/os-release

# -h: change the applet symlinks themselves, never the host's /bin/busybox they point to.
chown -hR "$owner:$(id -gn "$owner")" .
