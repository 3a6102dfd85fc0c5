#!/bin/sh
# scripts/vm/init.sh — /init of the test VM scripts/vm.sh boots; busybox sh, run as PID 1.
#
#   /init                    in the initramfs: copy it to a tmpfs and switch_root there, because
#                            pivot_root (which rl's containers do) fails on the initramfs itself
#   /init stage2             the real init: devices, modules, cgroup2 delegation, the tests
#   /init as-rltest ARGS...  join /rl/runner, then `env -i ARGS...` as rltest
#
# scripts/vm.sh staged /vm/tests.list (names in /vm/tests), /vm/env (KEY=VAL lines), /vm/args
# (one test argument a line) and /vm/modules. Serial ports: ttyS0 console, ttyS1 the tests'
# output, ttyS2 one "exit NAME STATUS" line per executable and "done" at the end.
set -u

OUT=/dev/ttyS1
STATUS=/dev/ttyS2
RLTEST=1001
CG=/sys/fs/cgroup
TEST_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# log MESSAGE: to the console, with the seconds since boot.
log() { echo "vm init: [$(cut -d' ' -f1 /proc/uptime)] $*" >/dev/console; }

# fail MESSAGE: say it everywhere the host looks, then stop the VM.
fail() {
  echo "error: vm init: $*" >/dev/console
  echo "error: vm init: $*" >"$OUT"
  echo "fail $*" >"$STATUS"
  sync
  poweroff -f
  sleep 60
}

stage1() {
  mount -t proc proc /proc
  mount -t sysfs sysfs /sys
  mount -t devtmpfs devtmpfs /dev
  mkdir /newroot
  mount -t tmpfs -o mode=0755 rl-root /newroot || fail "mount tmpfs /newroot"
  for entry in /*; do
    case $entry in
      /newroot | /proc | /sys | /dev) mkdir -p "/newroot$entry" ;;
      *) cp -a "$entry" /newroot/ || fail "copy $entry to the tmpfs root" ;;
    esac
  done
  for m in /proc /sys /dev; do mount --move "$m" "/newroot$m"; done
  # switch_root empties the initramfs, freeing its memory, and execs stage 2 as PID 1.
  exec switch_root /newroot /init stage2
}

setup_system() {
  mkdir -p /dev/pts /dev/shm
  mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
  mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm
  mount -t tmpfs -o mode=0755,nosuid,nodev run /run
  [ -e /dev/fd ] || ln -s /proc/self/fd /dev/fd
  chmod 1777 /tmp
  # Raw: no \r added before each \n on the way to the host.
  stty -F "$OUT" raw -echo
  stty -F "$STATUS" raw -echo

  # The kernel's request_module runs /sbin/modprobe (busybox) too, with these modules.dep.
  modules=$(tr '\n' ' ' </vm/modules)
  # shellcheck disable=SC2086 # one module a word
  modprobe -a $modules || fail "modprobe $modules"
  chmod 0666 /dev/fuse /dev/net/tun || fail "chmod /dev/fuse /dev/net/tun"
  ip link set lo up || fail "ip link set lo up"
  hostname rl-vm
  # Debian's switch; left alone when the kernel command line sets it.
  if [ -e /proc/sys/kernel/unprivileged_userns_clone ] && ! grep -q unprivileged_userns_clone /proc/cmdline; then
    echo 1 >/proc/sys/kernel/unprivileged_userns_clone
  fi

  if [ -b /dev/vda ]; then
    mount -t ext4 -o noinit_itable /dev/vda /var/tmp || fail "mount the scratch disk /dev/vda on /var/tmp"
    chmod 1777 /var/tmp
  fi
}

# setup_cgroup: a pure cgroup v2 hierarchy, /rl delegated to rltest as systemd delegates
# user@.service: the directory and its procs, subtree_control and threads files are the user's.
# rltest's processes live in /rl/runner, so rl can make siblings of it under /rl and move
# processes between them (the common ancestor's cgroup.procs is the user's).
setup_cgroup() {
  mount -t cgroup2 -o nsdelegate cgroup2 "$CG" || fail "mount cgroup2 on $CG"
  echo "+cpuset +cpu +io +memory +pids" >"$CG/cgroup.subtree_control" ||
    fail "enable controllers in $CG/cgroup.subtree_control (available: $(cat "$CG/cgroup.controllers"))"
  mkdir -p "$CG/rl/runner"
  for d in "$CG/rl" "$CG/rl/runner"; do
    chown "$RLTEST:$RLTEST" "$d" "$d/cgroup.procs" "$d/cgroup.subtree_control" "$d/cgroup.threads" ||
      fail "delegate $d"
  done
}

setup_user() {
  chown -R "$RLTEST:$RLTEST" /home/rltest
  chmod 0755 /home/rltest
  # As logind makes it.
  mkdir -p /run/user/$RLTEST
  mount -t tmpfs -o mode=0700,uid=$RLTEST,gid=$RLTEST,size=10%,nosuid,nodev tmpfs-rl-$RLTEST /run/user/$RLTEST
  mkdir -p /var/tmp/rltest
  chown $RLTEST:$RLTEST /var/tmp/rltest
  chmod 0700 /var/tmp/rltest
  chown -hR $RLTEST:$RLTEST /vm/fixtures/busybox
}

# as_rltest ARGS...: in /rl/runner, as rltest, `env -i ARGS...`.
as_rltest() {
  echo $$ >"$CG/rl/runner/cgroup.procs" || exit 125
  # `--`: busybox su would take the test's --options for its own.
  exec su -s /bin/sh -c 'exec env -i "$@"' -- rltest sh "$@"
}

stage2() {
  exec </dev/null >/dev/console 2>&1
  # shellcheck disable=SC3040 # busybox sh has it
  set -o pipefail
  log "stage 2"
  setup_system
  setup_cgroup
  setup_user
  log "ready"

  # What the tests will see, on the host's stdout.
  # shellcheck disable=SC2016 # expanded by rltest's shell
  /init as-rltest PATH=$TEST_PATH TMPDIR=/var/tmp/rltest /bin/sh -c '
    echo "vm: kernel $(uname -r); $(id -un) uid $(id -u) in cgroup $(cat /proc/self/cgroup);" \
      "/sys/fs/cgroup/rl/cgroup.controllers: $(cat /sys/fs/cgroup/rl/cgroup.controllers);" \
      "TMPDIR on $(stat -f -c %T "$TMPDIR"); user.max_user_namespaces=$(cat /proc/sys/user/max_user_namespaces)"' \
    2>&1 | cat >"$OUT"

  while read -r name; do
    set -- HOME=/home/rltest USER=rltest LOGNAME=rltest PATH=$TEST_PATH \
      XDG_RUNTIME_DIR=/run/user/$RLTEST TMPDIR=/var/tmp/rltest RL_BIN=/usr/local/bin/rl \
      RL_TEST_ROOTFS=/vm/fixtures/busybox RL_TEST_REQUIRE=1 RUST_BACKTRACE=1 RL_TEST_VM=1
    while IFS= read -r kv; do set -- "$@" "$kv"; done </vm/env
    set -- "$@" "/vm/tests/$name" --test-threads=2 --show-output
    while IFS= read -r arg; do set -- "$@" "$arg"; done </vm/args
    echo "vm: running $name" >"$OUT"
    log "running $name"
    # Through a pipe, not the tty: libtest would colour a terminal's output.
    /init as-rltest "$@" </dev/null 2>&1 | cat >"$OUT"
    echo "exit $name $?" >"$STATUS"
  done </vm/tests.list

  # No process of a container may outlive the tests. Empty leaves may stay: those of containers
  # whose watcher a test killed with SIGKILL (`rl rm` removes them, and the tests' stores are
  # deleted without it).
  busy="" empty=0
  for leaf in "$CG"/rl/rl-*; do
    [ -d "$leaf" ] || continue
    if grep -qx 'populated 1' "$leaf/cgroup.events"; then busy="$busy ${leaf##*/}"; else empty=$((empty + 1)); fi
  done
  echo "vm: after the tests: $empty empty container cgroup(s) of killed watchers" >"$OUT"
  if [ -n "$busy" ]; then
    echo "vm: container cgroups with processes after the tests:$busy" >"$OUT"
    echo "exit leftover-processes 1" >"$STATUS"
  fi

  log "done"
  echo "done" >"$STATUS"
  sync
  poweroff -f
  sleep 60
}

case ${1:-} in
  stage2) stage2 ;;
  as-rltest) shift; as_rltest "$@" ;;
  *) stage1 ;;
esac
