#!/usr/bin/env bash
# scripts/vm.sh — run rl's test executables in a qemu VM that boots Debian's own kernel with a
# pure cgroup v2 hierarchy, for the tests a host cannot run (CI's host has a hybrid cgroup
# layout with no v2 controllers, so resource limits cannot be tested there).
#
#   scripts/vm.sh prepare CACHE_DIR
#   scripts/vm.sh run CACHE_DIR --rl RL_BIN --rootfs BUSYBOX_ROOTFS_DIR --tests "EXE..." \
#       [--env KEY=VAL]... [--append "KERNEL ARGS"] [--timeout SECONDS] -- [TEST ARGS]
#
# `prepare` installs qemu (as root, only when missing) and puts the kernel that
# `linux-image-amd64` depends on in CACHE_DIR: vmlinuz and only the modules the VM loads, with
# a modules.dep of their own, taken from the package with `apt-get download` and `dpkg-deb -x`
# (nothing is installed on the host). With the kernel cached it does no network I/O.
#
# `run` needs no root and never touches the host's network. It builds an uncompressed initramfs
# (busybox, rl, the test executables, newuidmap/newgidmap, slirp4netns, pasta, fuse-overlayfs,
# each with the shared libraries `ldd` names, and the busybox rootfs) and boots it under TCG —
# the CI host has /dev/kvm but no vmx/svm. scripts/vm/init.sh is the guest's /init: it moves the
# root to a tmpfs (pivot_root, which rl needs, fails on the initramfs), mounts cgroup2 with
# nsdelegate, enables cpuset cpu io memory pids and delegates /rl the way systemd delegates
# user@.service, mounts a fresh ext4 scratch disk at /var/tmp for the tests' TMPDIR, then runs
# each executable as the unprivileged `rltest` (uid 1001, subids 200000:65536) in /rl/runner:
#   EXE --test-threads=2 --show-output TEST ARGS...
# Serial ports: ttyS0 is the console (kept in a log, shown on failure), ttyS1 carries the tests'
# output to this script's stdout as it happens, ttyS2 the guest's "exit NAME STATUS" lines and
# a final "done", so a VM that crashed or hung is told apart from a test that failed.
#
# Paths inside the VM: rl is /usr/local/bin/rl, the executables /vm/tests/NAME, the rootfs
# /vm/fixtures/busybox (owned by rltest), TMPDIR /var/tmp/rltest, XDG_RUNTIME_DIR /run/user/1001.
set -euo pipefail

VM_DIR=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)/vm
# shellcheck source=scripts/lib-host.sh
. "$VM_DIR/../lib-host.sh"

# The modules the guest loads (modprobe pulls in their dependencies): overlay and fuse for the
# rootfs, tun veth bridge for networks, virtio and ext4 for the scratch disk, whose
# metadata_csum wants crc32c.
VM_MODULES=(overlay fuse tun veth bridge virtio_pci virtio_blk ext4 crc32c_generic)
# Helpers rl runs, and the util-linux tools the tests run where busybox's applets lack options
# (`setsid --ctty`, `nsenter --preserve-credentials`), copied with their libraries when the
# host has them.
VM_HELPERS=(newuidmap newgidmap slirp4netns pasta fuse-overlayfs fusermount3 setsid nsenter unshare)
VM_PACKAGES=(qemu-system-x86 busybox-static e2fsprogs xz-utils)
BUSYBOX=${RL_BUSYBOX:-/bin/busybox}

usage() {
  cat >&2 <<'EOF'
usage: scripts/vm.sh prepare CACHE_DIR
       scripts/vm.sh run CACHE_DIR --rl RL_BIN --rootfs BUSYBOX_ROOTFS_DIR --tests "EXE..."
           [--env KEY=VAL]... [--append "KERNEL ARGS"] [--timeout SECONDS] -- [TEST ARGS]
EOF
  exit 2
}

# now: seconds since the epoch with milliseconds, for the timings printed on the way.
now() { date +%s.%N | cut -c1-14; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

# kernel_package: the versioned image package linux-image-amd64 depends on, from apt's lists.
kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

# shellcheck disable=SC2094 # `quiet LOG CMD >>LOG`: both only append to LOG
prepare() {
  local cache=$1 log pkg deb tmp new release
  mkdir -p "$cache"
  cache=$(cd "$cache" && pwd)
  log=$cache/prepare.log
  : >"$log"
  if [ -n "$(host_missing_packages "${VM_PACKAGES[@]}")" ]; then
    [ "$(id -u)" = 0 ] || die "missing $(host_missing_packages "${VM_PACKAGES[@]}" | xargs); run \`$0 prepare\` as root"
    # Without recommends (GUI, block drivers, firmware: ~100 MB). qemu-system-x86 needs no
    # qemu-utils, so bookworm's 7.2 installs beside a qemu-utils from backports (CI has 10.x).
    host_install_packages "$log" "${VM_PACKAGES[@]}"
  fi

  pkg=$(kernel_package)
  if [ -z "$pkg" ] && ! [ -f "$cache/kernel/package" ]; then
    step "apt-get update (apt knows no linux-image-amd64)"
    quiet "$log" apt-get update >>"$log"
    pkg=$(kernel_package)
    [ -n "$pkg" ] || die "apt-cache knows no linux-image-amd64 package; is Debian main in apt's sources?"
  fi
  # An unknown package name (no apt lists) keeps whatever kernel is cached.
  if [ -f "$cache/kernel/package" ] && { [ -z "$pkg" ] || [ "$(cat "$cache/kernel/package")" = "$pkg" ]; }; then
    echo "vm: kernel $(cat "$cache/kernel/package") cached in $cache/kernel"
    return 0
  fi

  local t0
  deb=$(ls "$cache/$pkg"_*.deb 2>/dev/null || true)
  if [ -z "$deb" ]; then
    step "apt-get download $pkg"
    t0=$(now)
    rm -f "$cache"/linux-image-*.deb
    # apt-get download cannot drop to _apt in a root-owned directory; it says so and goes on.
    if ! (cd "$cache" && apt-get download "$pkg") >>"$log" 2>&1; then
      # The lists may name a version the mirror has replaced.
      quiet "$log" apt-get update >>"$log"
      pkg=$(kernel_package)
      (cd "$cache" && quiet "$log" apt-get download "$pkg" >>"$log")
    fi
    deb=$(ls "$cache/$pkg"_*.deb)
    echo "vm: downloaded ${deb##*/} in $(since "$t0")"
  fi

  step "extracting vmlinuz and ${#VM_MODULES[@]} modules with their dependencies"
  t0=$(now)
  tmp=$(mktemp -d "$cache/extract.XXXXXX")
  new=$cache/kernel.new
  rm -rf "$new"
  # shellcheck disable=SC2064 # expand now: both are local
  trap "rm -rf '$tmp' '$new'" EXIT
  dpkg-deb -x "$deb" "$tmp"
  release=$(cd "$tmp/lib/modules" && ls)
  [ -f "$tmp/boot/vmlinuz-$release" ] || die "${deb##*/} has no boot/vmlinuz-$release"
  local mods=$tmp/lib/modules/$release dest=$new/modules/lib/modules/$release
  # The package ships no modules.dep (its postinst runs depmod, ~12 s over 4000 modules): follow
  # each module's `depends=` in its .modinfo instead, then let busybox's depmod index the few.
  local -A path_of=() taken=()
  local ko name todo=("${VM_MODULES[@]}") deps
  while read -r ko; do
    name=${ko##*/}
    name=${name%.ko}
    path_of[${name//-/_}]=${ko#"$mods"/}
  done < <(find "$mods/kernel" -name '*.ko')
  while ((${#todo[@]} > 0)); do
    name=${todo[0]//-/_}
    todo=("${todo[@]:1}")
    [ -z "${taken[$name]:-}" ] || continue
    taken[$name]=1
    ko=${path_of[$name]:-}
    [ -n "$ko" ] || die "module $name is not in ${deb##*/} (built in? see boot/config-$release)"
    mkdir -p "$dest/${ko%/*}"
    cp "$mods/$ko" "$dest/$ko"
    IFS=, read -r -a deps < <(tr '\0' '\n' <"$mods/$ko" | sed -n '/^depends=/ { s///p; q }') || true
    todo+=("${deps[@]}")
  done
  cp "$mods/modules.builtin" "$mods/modules.order" "$dest/"
  "$BUSYBOX" depmod -b "$new/modules" "$release"
  cp "$tmp/boot/vmlinuz-$release" "$new/vmlinuz"
  cp "$tmp/boot/config-$release" "$new/config"
  # The ELF kernel inside the bzImage: qemu boots it at its PVH entry, which skips the ~4 s
  # the bzImage's own xz decompression takes under TCG. The first xz magic that decompresses
  # is the payload; without one (another compression) the VM boots vmlinuz.
  local off
  if grep -qx 'CONFIG_PVH=y' "$new/config"; then
    while IFS=: read -r off _; do
      if xz -dc --single-stream <(tail -c +$((off + 1)) "$new/vmlinuz") >"$new/vmlinux" 2>/dev/null &&
        [ "$(head -c 4 "$new/vmlinux" | tail -c 3)" = ELF ]; then
        break
      fi
      rm -f "$new/vmlinux"
    done < <(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$new/vmlinuz")
  fi
  echo "$release" >"$new/release"
  echo "$pkg" >"$new/package"
  rm -rf "$tmp" "$cache/kernel"
  mv "$new" "$cache/kernel"
  trap - EXIT
  echo "vm: kernel $release in $cache/kernel ($(du -sh "$cache/kernel/modules" | cut -f1) of modules," \
    "$([ -f "$cache/kernel/vmlinux" ] && echo "PVH vmlinux" || echo "bzImage only")) in $(since "$t0")"
}

# stage_file SRC DEST: copy SRC (following symlinks, keeping its mode) to DEST in the stage,
# replacing a busybox applet link there rather than writing through it.
stage_file() {
  mkdir -p "$STAGE/$(dirname "$2")"
  rm -f "$STAGE/$2"
  cp -L --preserve=mode "$1" "$STAGE/$2"
}

# stage_exe SRC DEST: stage_file, plus the loader and libraries `ldd` names, at their host paths.
stage_exe() {
  local lib
  stage_file "$1" "$2"
  # Static executables and scripts: ldd fails and prints nothing that starts with a path.
  while read -r lib; do
    [ -e "$STAGE/$lib" ] || stage_file "$lib" "$lib"
  done < <(ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
}

# build_stage: the guest's root filesystem, in $STAGE.
build_stage() {
  local applet h f exe name release
  release=$(cat "$CACHE/kernel/release")
  # Debian's merged /usr, so ldd's /lib/x86_64-linux-gnu and /lib64 paths resolve.
  mkdir -p "$STAGE"/usr/{bin,sbin,lib,lib64} "$STAGE"/{dev,proc,sys,run,tmp,root,etc,mnt,var/tmp,home/rltest} \
    "$STAGE"/usr/local/bin "$STAGE"/vm/{tests,fixtures}
  ln -s usr/bin "$STAGE/bin"
  ln -s usr/sbin "$STAGE/sbin"
  ln -s usr/lib "$STAGE/lib"
  ln -s usr/lib64 "$STAGE/lib64"
  chmod 1777 "$STAGE/tmp" "$STAGE/var/tmp"
  chmod 0700 "$STAGE/root"

  install -m 0755 "$BUSYBOX" "$STAGE/usr/bin/busybox"
  while read -r applet; do
    case $applet in
      bin/* | sbin/* | usr/bin/* | usr/sbin/*) ;;
      *) continue ;;
    esac
    [ -e "$STAGE/$applet" ] || [ -L "$STAGE/$applet" ] || ln -s /bin/busybox "$STAGE/$applet"
  done < <("$BUSYBOX" --list-full)

  for h in "${VM_HELPERS[@]}"; do
    f=$(command -v "$h" 2>/dev/null) || { echo "vm: warning: $h not on this host, not in the VM" >&2; continue; }
    # Keeps newuidmap's setuid bit; cpio -R 0:0 makes it root's.
    stage_exe "$f" "/usr/bin/$h"
  done
  # glibc's NSS modules are dlopened, so ldd never names them.
  f=/lib/x86_64-linux-gnu/libnss_files.so.2
  if [ -e "$f" ]; then stage_file "$f" "$f"; fi

  stage_exe "$RL_BIN" /usr/local/bin/rl
  for exe in "${TESTS[@]}"; do
    name=${exe##*/}
    [ -e "$STAGE/vm/tests/$name" ] && die "two test executables are named \`$name\`"
    stage_exe "$exe" "/vm/tests/$name"
    echo "$name" >>"$STAGE/vm/tests.list"
  done
  # The guest chowns it to rltest: the archive makes every file root's.
  cp -a "$ROOTFS" "$STAGE/vm/fixtures/busybox"

  mkdir -p "$STAGE/lib/modules"
  cp -a "$CACHE/kernel/modules/lib/modules/$release" "$STAGE/lib/modules/"
  printf '%s\n' "${VM_MODULES[@]}" >"$STAGE/vm/modules"
  if ((${#ENVS[@]} > 0)); then printf '%s\n' "${ENVS[@]}"; fi >"$STAGE/vm/env"
  if ((${#TEST_ARGS[@]} > 0)); then printf '%s\n' "${TEST_ARGS[@]}"; fi >"$STAGE/vm/args"
  install -m 0755 "$VM_DIR/init.sh" "$STAGE/init"

  cat >"$STAGE/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
rltest:x:1001:1001:rl tests:/home/rltest:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
  cat >"$STAGE/etc/group" <<'EOF'
root:x:0:
rltest:x:1001:
nogroup:x:65534:
EOF
  echo 'rltest:200000:65536' >"$STAGE/etc/subuid"
  echo 'rltest:200000:65536' >"$STAGE/etc/subgid"
  printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n' >"$STAGE/etc/nsswitch.conf"
  printf '127.0.0.1\tlocalhost\n127.0.1.1\trl-vm\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$STAGE/etc/hosts"
  echo rl-vm >"$STAGE/etc/hostname"
  # The VM has only loopback: a local resolver's address, as systemd-resolved hosts have, is
  # one rl can still connect a UDP socket to.
  echo 'nameserver 127.0.0.53' >"$STAGE/etc/resolv.conf"
  echo 'ID=rl-test-vm' >"$STAGE/etc/os-release"
}

run() {
  CACHE=$1
  shift
  RL_BIN='' ROOTFS='' TESTS=() ENVS=() APPEND='' TIMEOUT=300 TEST_ARGS=()
  local tests_arg=
  while (($# > 0)); do
    case $1 in
      --rl) RL_BIN=${2:?--rl needs a path}; shift 2 ;;
      --rootfs) ROOTFS=${2:?--rootfs needs a directory}; shift 2 ;;
      --tests) tests_arg=${2:?--tests needs executables}; shift 2 ;;
      --env) ENVS+=("${2:?--env needs KEY=VAL}"); shift 2 ;;
      --append) APPEND=${2?--append needs kernel arguments}; shift 2 ;;
      --timeout) TIMEOUT=${2:?--timeout needs seconds}; shift 2 ;;
      --) shift; TEST_ARGS=("$@"); break ;;
      *) usage ;;
    esac
  done
  local kernel=$CACHE/kernel/vmlinux
  [ -f "$kernel" ] || kernel=$CACHE/kernel/vmlinuz
  [ -f "$kernel" ] || die "no kernel in \`$CACHE/kernel\`: run \`$0 prepare $CACHE\` first"
  [ -f "$RL_BIN" ] || die "--rl \`$RL_BIN\` is not a file"
  [ -x "$ROOTFS/bin/busybox" ] || die "--rootfs \`$ROOTFS\` is not a busybox rootfs"
  read -r -a TESTS <<<"$tests_arg"
  ((${#TESTS[@]} > 0)) || die "--tests names no executables"
  local t
  for t in "${TESTS[@]}"; do [ -x "$t" ] || die "test executable \`$t\` is not executable"; done
  for t in "${ENVS[@]}"; do [[ $t == [A-Za-z_]*=* ]] || die "--env \`$t\` is not KEY=VAL"; done
  [[ $TIMEOUT =~ ^[0-9]+$ ]] || die "--timeout \`$TIMEOUT\` is not a number of seconds"
  # The guest reads env and arguments one per line.
  for t in "${ENVS[@]}" "${TEST_ARGS[@]}"; do
    [[ $t != *$'\n'* ]] || die "an --env value or test argument holds a newline"
  done
  command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: run \`$0 prepare $CACHE\` as root"

  CACHE=$(cd "$CACHE" && pwd)
  local work t0 t_start rc=0
  t_start=$(now)
  work=$(mktemp -d "$CACHE/run.XXXXXX")
  # shellcheck disable=SC2064 # expand now: $work is local
  trap "rm -rf '$work'" EXIT
  STAGE=$work/stage
  t0=$(now)
  build_stage
  # newc keeps modes (setuid newuidmap); -R 0:0 makes every file root's, so no root is needed.
  (cd "$STAGE" && find . -mindepth 1 | "$BUSYBOX" cpio -o -H newc -R 0:0 2>/dev/null) >"$work/initrd.cpio"
  rm -rf "$STAGE"
  echo "vm: initramfs $(du -h "$work/initrd.cpio" | cut -f1) built in $(since "$t0")"

  # A sparse scratch disk for TMPDIR: overlayfs in a user namespace keeps its whiteouts and
  # opaque marks in user.* xattrs, which tmpfs lacks before Linux 6.6.
  truncate -s 16G "$work/scratch.img"
  mkfs.ext4 -q -F -O ^has_journal -E lazy_itable_init=1,nodiscard "$work/scratch.img" ||
    die "mkfs.ext4 $work/scratch.img failed"

  : >"$work/status"
  t0=$(now)
  echo "vm: booting $(cat "$CACHE/kernel/release") (tcg, timeout $TIMEOUT s)"
  timeout -k 10 "$TIMEOUT" qemu-system-x86_64 -accel tcg,thread=multi -M q35 -smp 2 -m 2048 \
    -display none -no-reboot -nodefaults \
    -kernel "$kernel" -initrd "$work/initrd.cpio" \
    -append "console=ttyS0 quiet panic=-1 rdinit=/init $APPEND" \
    -serial "file:$work/console.log" -serial stdio -serial "file:$work/status" \
    -drive "file=$work/scratch.img,if=virtio,format=raw,cache=unsafe" </dev/null || rc=$?

  local failed=0 vm_failed=0 name status
  while read -r t name status; do
    case $t in
      exit) [ "$status" = 0 ] || { echo "error: $name exited with status $status in the VM" >&2; failed=1; } ;;
      fail) echo "error: the VM's init failed: $name $status" >&2; vm_failed=1 ;;
    esac
  done <"$work/status"
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    echo "error: the VM timed out after $TIMEOUT s (qemu killed)" >&2
    vm_failed=1
  elif [ "$rc" != 0 ]; then
    echo "error: qemu exited with status $rc" >&2
    vm_failed=1
  elif ! grep -qx 'done' "$work/status"; then
    echo "error: the VM stopped before its init finished (crash or panic)" >&2
    vm_failed=1
  fi
  echo "vm: VM ran $(since "$t0"), $(since "$t_start") in all"
  if [ "$vm_failed" = 1 ]; then
    cp "$work/console.log" "$CACHE/console-failed.log"
    echo "vm: last lines of the console ($CACHE/console-failed.log):" >&2
    tail -n 40 "$work/console.log" | sed 's/^/  | /' >&2
  fi
  ((failed == 0 && vm_failed == 0))
}

case ${1:-} in
  prepare) [ $# -eq 2 ] || usage; prepare "$2" ;;
  run) [ $# -ge 2 ] || usage; shift; run "$@" ;;
  *) usage ;;
esac
