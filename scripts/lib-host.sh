# shellcheck shell=bash disable=SC2034 # variables here are used by the scripts that source it
# scripts/lib-host.sh — shell functions shared by scripts/test.sh and scripts/demo.sh.
# Sourced, never run. Every function is idempotent: it brings the host to the state a stock
# Debian/Ubuntu install has (packages, a normal user with subordinate ids, a logind-style
# runtime directory) and changes nothing that is already right.

RL_TEST_USER=rltest    # an ordinary user with a 65536-id subordinate range
RL_NOSUBID_USER=rltest2 # an ordinary user with no subordinate range at all
RL_TEST_SUBIDS=200000-265535

# What the tests use now, then what later issues (images, registry, benchmarks) need.
RL_TEST_PACKAGES=(uidmap slirp4netns fuse-overlayfs passt busybox-static bubblewrap util-linux
  procps iproute2 keyutils ca-certificates curl jq
  docker-registry skopeo mmdebstrap podman runc hyperfine apache2-utils zstd openssl python3)

step() { printf '==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# quiet LOG CMD...: run CMD with its stderr appended to LOG (the caller decides where stdout
# goes); on failure show the end of LOG so the cause is on screen.
quiet() {
  local log=$1; shift
  if ! "$@" 2>>"$log"; then
    printf 'error: `%s` failed; last lines of %s:\n' "$*" "$log" >&2
    tail -n 60 "$log" >&2
    return 1
  fi
}

# host_missing_packages PKG...: print the packages dpkg does not have installed.
host_missing_packages() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}

# host_install_packages LOG PKG...: apt-get update and install only when something is missing,
# so a prepared host needs no network.
host_install_packages() {
  local log=$1; shift
  local missing
  mapfile -t missing < <(host_missing_packages "$@")
  ((${#missing[@]} > 0)) || return 0
  step "installing ${missing[*]}"
  quiet "$log" apt-get update >>"$log"
  DEBIAN_FRONTEND=noninteractive quiet "$log" \
    apt-get install -y --no-install-recommends "${missing[@]}" >>"$log"
}

# host_has_subids FILE USER: does FILE (/etc/subuid or /etc/subgid) have a line for USER?
# shadow's tools accept the user's name or numeric uid in the first field.
host_has_subids() {
  local uid
  uid=$(id -u "$2") || return 1
  grep -qE "^($2|$uid):" "$1" 2>/dev/null
}

# host_create_users: rltest gets a subordinate range (unless useradd already gave one, as
# Debian's does when login.defs sets SUB_UID_COUNT); rltest2 must have none, so any range
# useradd added for it is deleted.
host_create_users() {
  local u f uid
  for u in "$RL_TEST_USER" "$RL_NOSUBID_USER"; do
    id -u "$u" >/dev/null 2>&1 || useradd -m -s /bin/sh "$u"
  done
  touch /etc/subuid /etc/subgid
  if ! host_has_subids /etc/subuid "$RL_TEST_USER"; then
    usermod --add-subuids "$RL_TEST_SUBIDS" "$RL_TEST_USER"
  fi
  if ! host_has_subids /etc/subgid "$RL_TEST_USER"; then
    usermod --add-subgids "$RL_TEST_SUBIDS" "$RL_TEST_USER"
  fi
  uid=$(id -u "$RL_NOSUBID_USER")
  for f in /etc/subuid /etc/subgid; do
    if host_has_subids "$f" "$RL_NOSUBID_USER"; then
      sed -i -E "/^($RL_NOSUBID_USER|$uid):/d" "$f"
    fi
  done
}

# host_prepare_devices: a stock udev makes these 0666; minimal hosts and VMs leave them 0600.
host_prepare_devices() {
  [ -e /dev/fuse ] || mknod -m 0666 /dev/fuse c 10 229
  mkdir -p /dev/net
  [ -e /dev/net/tun ] || mknod -m 0666 /dev/net/tun c 10 200
  chmod 0666 /dev/fuse /dev/net/tun
}

# host_runtime_dir USER [fresh]: make /run/user/<uid> as systemd-logind does — a tmpfs owned by
# the user, mode 0700 — and print its path. With "fresh", a leftover one is remounted empty so
# every test run starts like a new login.
host_runtime_dir() {
  local user=$1 fresh=${2:-} uid gid dir
  uid=$(id -u "$user")
  gid=$(id -g "$user")
  dir=/run/user/$uid
  install -d -m 0755 /run/user
  if mountpoint -q "$dir"; then
    [ "$fresh" = fresh ] || { echo "$dir"; return; }
    umount -l "$dir"
  elif [ -d "$dir" ]; then
    rm -rf --one-file-system "$dir"
  fi
  install -d -m 0700 -o "$user" -g "$gid" "$dir"
  mount -t tmpfs -o "mode=0700,uid=$uid,gid=$gid,size=10%,nosuid,nodev" "tmpfs-rl-$uid" "$dir"
  echo "$dir"
}

# host_find_cargo: set CARGO to a command running cargo. Under `sudo` root usually has no
# toolchain; then use the invoking user's rustup install, run as that user.
host_find_cargo() {
  local home=${HOME:-/root} h
  PATH="$PATH:$home/.cargo/bin"
  if command -v cargo >/dev/null; then
    CARGO=(cargo)
    return
  fi
  if [ "$(id -u)" = 0 ] && [ -n "${SUDO_USER:-}" ]; then
    h=$(getent passwd "$SUDO_USER" | cut -d: -f6)
    if [ -x "$h/.cargo/bin/cargo" ]; then
      CARGO=(runuser -u "$SUDO_USER" -- env "HOME=$h" "PATH=$h/.cargo/bin:$PATH" cargo)
      return
    fi
  fi
  die "cargo not found in PATH or ~/.cargo/bin: install Rust with rustup (https://rustup.rs)"
}

# host_problems USER: print one line per host fact that stops USER from running rootless
# containers, each naming the distro-notes section with the fix. Prints nothing on a good host.
host_problems() {
  local user=$1 notes=distro-notes/debian.md f v path
  grep -qi ubuntu /etc/os-release 2>/dev/null && notes=distro-notes/ubuntu.md
  for f in newuidmap newgidmap; do
    path=$(command -v "$f" 2>/dev/null || echo "/usr/bin/$f")
    if ! [ -x "$path" ]; then
      echo "$f not installed, see $notes#newuidmap-missing"
    elif ! [ -u "$path" ] && ! getcap "$path" 2>/dev/null | grep -q cap_set; then
      echo "$f is neither setuid nor has file capabilities, see $notes#newuidmap-not-setuid"
    fi
  done
  for f in /etc/subuid /etc/subgid; do
    host_has_subids "$f" "$user" ||
      echo "no subordinate ids for $user in $f, see $notes#no-subordinate-ids"
  done
  v=$(cat /proc/sys/user/max_user_namespaces 2>/dev/null || echo 0)
  [ "$v" -gt 0 ] ||
    echo "user namespaces disabled (user.max_user_namespaces=$v), see $notes#user-namespaces-disabled"
  v=$(cat /proc/sys/kernel/unprivileged_userns_clone 2>/dev/null || echo 1)
  [ "$v" = 1 ] ||
    echo "user namespaces disabled (kernel.unprivileged_userns_clone=$v), see $notes#user-namespaces-disabled"
  v=$(cat /proc/sys/kernel/apparmor_restrict_unprivileged_userns 2>/dev/null || echo 0)
  [ "$v" = 0 ] ||
    echo "AppArmor restricts unprivileged user namespaces, see $notes#apparmor-restricts-unprivileged-user-namespaces"
  if [ "$(id -un)" = "$user" ] && ! { [ -r /dev/fuse ] && [ -w /dev/fuse ]; }; then
    echo "/dev/fuse not accessible (fuse-overlayfs cannot run), see $notes#dev-fuse-not-accessible"
  fi
}
