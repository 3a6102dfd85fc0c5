#!/usr/bin/env bash
# scripts/demo.sh — build rl, install it, and run one container in a busybox root filesystem.
#
# As a normal user: installs ~/.local/bin/rl and runs the container as you.
# As root: installs the missing packages, /usr/local/bin/rl, creates the unprivileged user
# `rltest` exactly as scripts/test.sh does, and runs the container as `rltest` — rl itself
# never needs root.
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
cd "$REPO"
# shellcheck source=scripts/lib-host.sh
. scripts/lib-host.sh

DEMO_PACKAGES=(uidmap fuse-overlayfs slirp4netns busybox-static)
# Single quotes: $(hostname) runs inside the container.
DEMO_CMD='echo hello from $(hostname); id; cat /proc/self/uid_map'

main() {
  local user dest work missing rc=0
  work=$(mktemp -d "${TMPDIR:-/tmp}/rl-demo.XXXXXX")
  # shellcheck disable=SC2064 # expand $work now
  trap "rm -rf --one-file-system '$work'" EXIT
  chmod 0755 "$work"

  if [ "$(id -u)" = 0 ]; then
    step "preparing the host (packages, user $RL_TEST_USER)"
    host_install_packages "$work/apt.log" "${DEMO_PACKAGES[@]}"
    host_create_users
    host_prepare_devices
    user=$RL_TEST_USER
    dest=/usr/local/bin/rl
  else
    missing=$(host_missing_packages "${DEMO_PACKAGES[@]}" | tr '\n' ' ')
    [ -z "$missing" ] ||
      die "missing packages: ${missing% }; run: sudo apt-get install -y ${missing% } (or run this script with sudo)"
    user=$(id -un)
    dest=$HOME/.local/bin/rl
  fi

  host_find_cargo
  step "cargo build --release"
  quiet "$work/build.log" "${CARGO[@]}" build --release >>"$work/build.log"
  step "installing $dest"
  install -D -m 0755 "${CARGO_TARGET_DIR:-target}/release/rl" "$dest"
  case ":$PATH:" in
    *":$(dirname "$dest"):"*) ;;
    *) echo "note: $(dirname "$dest") is not in your PATH; add it to run \`rl\` by name" ;;
  esac

  step "making a busybox rootfs in $work/rootfs"
  scripts/make-fixtures.sh "$work/rootfs" "$user"

  cd "$work" # rltest cannot enter the checkout
  step "rl run --rm --rootfs $work/rootfs sh -c '$DEMO_CMD'"
  if [ "$(id -u)" = 0 ]; then
    runuser -u "$user" -- env -i HOME="$(getent passwd "$user" | cut -d: -f6)" USER="$user" \
      LOGNAME="$user" PATH=/usr/local/bin:/usr/bin:/bin \
      XDG_RUNTIME_DIR="$(host_runtime_dir "$user")" \
      "$dest" run --rm --rootfs "$work/rootfs" sh -c "$DEMO_CMD" || rc=$?
  else
    "$dest" run --rm --rootfs "$work/rootfs" sh -c "$DEMO_CMD" || rc=$?
  fi
  return "$rc"
}

main "$@"
