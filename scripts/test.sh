#!/usr/bin/env bash
# scripts/test.sh — the test command of rl; CI runs it as root through .ci/run.
#
# As root it prepares the host the way a stock Debian is (packages, an unprivileged user
# `rltest` with subordinate ids, `rltest2` without), checks formatting and lints, builds,
# stages everything in /var/tmp/rl-test and runs every test executable as `rltest` with
# RL_TEST_REQUIRE=1 (a test that would skip fails instead), then the `nosubid_` tests as
# `rltest2`. As a normal user it touches nothing on the host: it builds and runs the tests as
# you, and tests this host cannot run print `skipped: <reason>`.
#
# Environment every test executable gets (README.md "Tests" documents the contract):
#   RL_BIN          the release `rl` binary to run
#   RL_TEST_ROOTFS  a busybox root filesystem (read it, never write it: it may be shared)
#   RL_TEST_REQUIRE 1 under root-driven CI: missing host support is a failure, not a skip
#   RL_TEST_NOSUBID 1 when the user deliberately has no /etc/subuid entry (`nosubid_*` tests)
#   HOME USER LOGNAME PATH XDG_RUNTIME_DIR TMPDIR RUST_BACKTRACE=1
set -euo pipefail

REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)
cd "$REPO"
# shellcheck source=scripts/lib-host.sh
. scripts/lib-host.sh

STD_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# A skip line, bare or prefixed with the test's name (tests/common's `say`).
SKIP_RE='^([^ ]+: )?skipped: '
PASSED=0 FAILED=0 SKIPPED=0 BAD_RUNS=0
TEST_NAMES=() TEST_EXES=()

# fresh_stage DIR: recreate the staging directory; unmount anything a crashed run left inside.
fresh_stage() {
  local dir=$1 mnt
  if [ -e "$dir" ]; then
    awk -v d="$dir" 'index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r |
      while read -r mnt; do umount -l "$mnt" || true; done
    rm -rf --one-file-system "$dir"
  fi
  mkdir -p "$dir"/{bin,tests,fixtures,tmp,logs}
  chmod 0755 "$dir" "$dir"/{bin,tests,fixtures,tmp,logs}
  LOGS=$dir/logs
}

# cargo_json LOG JSON ARGS...: run cargo with machine-readable artifacts on stdout (to JSON) and
# rendered compiler diagnostics on stderr (to LOG, shown on failure).
cargo_json() {
  local log=$1 json=$2; shift 2
  quiet "$log" "${CARGO[@]}" "$@" --message-format=json-render-diagnostics >"$json"
}

check_and_build() {
  step "cargo fmt --check"
  "${CARGO[@]}" fmt --check || die "cargo fmt --check: the code above is not formatted; run \`cargo fmt\`"
  step "cargo clippy --release --all-targets -- -D warnings"
  quiet "$LOGS/clippy.log" "${CARGO[@]}" clippy --release --all-targets -- -D warnings
  step "cargo build --release"
  cargo_json "$LOGS/build.log" "$LOGS/build.json" build --release
  RL=$(jq -r 'select(.reason == "compiler-artifact" and .target.name == "rl"
      and .executable != null) | .executable' "$LOGS/build.json" | tail -n 1)
  [ -x "$RL" ] || die "cargo build produced no \`rl\` executable (see $LOGS/build.json)"
  step "cargo test --no-run --release"
  cargo_json "$LOGS/build.log" "$LOGS/tests.json" test --no-run --release
  local name exe
  while IFS=$'\t' read -r name exe; do
    TEST_NAMES+=("$name")
    TEST_EXES+=("$exe")
  done < <(jq -r 'select(.reason == "compiler-artifact" and .executable != null
      and .profile.test == true) | "\(.target.kind[0])-\(.target.name)\t\(.executable)"' \
    "$LOGS/tests.json" | sort)
  ((${#TEST_EXES[@]} > 0)) || die "cargo test --no-run built no test executables"
}

# run_one LOG CMD...: run one test executable, show and keep its output, add up the results
# from libtest's "test result: ok. 12 passed; 0 failed; ..." lines and the tests' skip lines.
run_one() {
  local log=$1 rc=0 p f s; shift
  "$@" 2>&1 | tee "$log" || rc=$?
  read -r p f < <(awk '/^test result:/ { for (i = 2; i <= NF; i++) {
      if ($i == "passed;") p += $(i - 1); if ($i == "failed;") f += $(i - 1) } }
      END { print p + 0, f + 0 }' "$log")
  s=$(grep -cE "$SKIP_RE" "$log" || true)
  # A binary that dies before its summary (signal, abort) still counts as a failure.
  if [ "$rc" -ne 0 ]; then
    BAD_RUNS=$((BAD_RUNS + 1))
    if [ "$f" -eq 0 ]; then
      echo "error: ${log##*/} shows a test executable that exited with status $rc" >&2
      f=1
    fi
  fi
  PASSED=$((PASSED + p)) FAILED=$((FAILED + f)) SKIPPED=$((SKIPPED + s))
}

# start_registry: test images built offline (scripts/make-images.py) served by Debian's
# docker-registry on 127.0.0.1; sets RL_TEST_REGISTRY and stops the registry when the script
# exits. Without the tools (a user's host) the image tests skip and say why.
start_registry() {
  local top port=${RL_REGISTRY_PORT:-5055}
  top=$(pwd)
  RL_TEST_REGISTRY= RL_TEST_AUTH_REGISTRY= RL_TEST_AUTH_CREDS=
  if ! command -v docker-registry >/dev/null || ! command -v skopeo >/dev/null; then
    echo "skipped: image tests: docker-registry or skopeo not installed"
    return 0
  fi
  step "test images and a registry on 127.0.0.1:$port"
  # The Debian minbase image (mmdebstrap, ~20 s) is a real distribution: glibc, dpkg, users.
  quiet "$LOGS/images.log" python3 scripts/make-images.py --debian "$STAGE/images" >>"$LOGS/images.log"
  quiet "$LOGS/registry.log" scripts/registry.sh start "$STAGE/registry" "$port" >>"$LOGS/registry.log"
  # shellcheck disable=SC2064 # expand now: the script cds away later
  trap "'$top/scripts/registry.sh' stop '$STAGE/registry' >/dev/null 2>&1 || true" EXIT
  quiet "$LOGS/registry.log" scripts/registry.sh seed "$STAGE/registry" "$port" "$STAGE/images" \
    >>"$LOGS/registry.log"
  # Hostile images (escaping entries, tampered, truncated and missing blobs), broken as root here.
  quiet "$LOGS/registry.log" scripts/seed-hostile.sh "$STAGE/registry" "$port" "$STAGE/hostile-images" \
    >>"$LOGS/registry.log"
  RL_TEST_REGISTRY=127.0.0.1:$port
  # A second registry that wants a password (Basic auth), for login and credential tests.
  local auth_port=$((port + 2)) creds=rltest:rl-test-password
  quiet "$LOGS/registry.log" scripts/registry.sh start "$STAGE/registry-auth" "$auth_port" --auth basic \
    --creds "$creds" >>"$LOGS/registry.log"
  # shellcheck disable=SC2064 # expand now: the script cds away later
  trap "'$top/scripts/registry.sh' stop '$STAGE/registry' >/dev/null 2>&1 || true;
        '$top/scripts/registry.sh' stop '$STAGE/registry-auth' >/dev/null 2>&1 || true" EXIT
  quiet "$LOGS/registry.log" scripts/registry.sh seed "$STAGE/registry-auth" "$auth_port" "$STAGE/images" \
    --creds "$creds" >>"$LOGS/registry.log"
  RL_TEST_AUTH_REGISTRY=127.0.0.1:$auth_port
  RL_TEST_AUTH_CREDS=$creds
}

# suite_as USER EXTRA_ENV... -- TEST_ARGS...: run every staged executable as USER in a clean,
# login-like environment.
suite_as() {
  local user=$1 home tmp run i; shift
  local extra=()
  while [ "$1" != -- ]; do extra+=("$1"); shift; done
  shift
  home=$(getent passwd "$user" | cut -d: -f6)
  tmp=$STAGE/tmp/$user
  install -d -m 0700 -o "$user" -g "$(id -g "$user")" "$tmp"
  run=$(host_runtime_dir "$user" fresh)
  local env=(HOME="$home" USER="$user" LOGNAME="$user" PATH="$STD_PATH"
    XDG_RUNTIME_DIR="$run" TMPDIR="$tmp" RL_BIN="$STAGE/bin/rl"
    RL_TEST_ROOTFS="$STAGE/fixtures/$user/busybox" RL_TEST_REQUIRE=1 RUST_BACKTRACE=1 "${extra[@]}")
  for i in "${!TEST_EXES[@]}"; do
    step "${TEST_NAMES[$i]} as $user $*"
    run_one "$LOGS/$user-${TEST_NAMES[$i]}.log" runuser -u "$user" -- \
      env -i "${env[@]}" "${TEST_EXES[$i]}" --test-threads=2 --show-output "$@"
  done
}

root_main() {
  STAGE=/var/tmp/rl-test
  fresh_stage "$STAGE"
  step "preparing the host (packages, users $RL_TEST_USER and $RL_NOSUBID_USER, devices)"
  host_install_packages "$LOGS/apt.log" "${RL_TEST_PACKAGES[@]}"
  host_create_users
  host_prepare_devices
  host_problems "$RL_TEST_USER" | sed 's/^/warning: /'
  host_find_cargo
  check_and_build

  step "staging in $STAGE"
  install -m 0755 "$RL" "$STAGE/bin/rl"
  local i
  for i in "${!TEST_EXES[@]}"; do
    install -m 0755 "${TEST_EXES[$i]}" "$STAGE/tests/${TEST_NAMES[$i]}"
    TEST_EXES[i]=$STAGE/tests/${TEST_NAMES[$i]}
  done
  # Each user passes a rootfs of their own, as `rl run --rootfs` users do: another user's files
  # have no mapping in their namespace.
  local u
  for u in "$RL_TEST_USER" "$RL_NOSUBID_USER"; do
    install -d -m 0755 "$STAGE/fixtures/$u"
    scripts/make-fixtures.sh "$STAGE/fixtures/$u/busybox" "$u"
  done

  start_registry
  cd "$STAGE" # the test users cannot enter the checkout
  suite_as "$RL_TEST_USER" RL_TEST_REGISTRY="$RL_TEST_REGISTRY" RL_TEST_AUTH_REGISTRY="$RL_TEST_AUTH_REGISTRY" \
    RL_TEST_AUTH_CREDS="$RL_TEST_AUTH_CREDS" -- --skip nosubid_ --skip vm_ --skip nouserns_
  # A running container of the test user for the second user to fail to reach.
  local other=$STAGE/privacy other_pid
  install -d -m 0755 -o "$RL_TEST_USER" "$other"
  other_pid=$(as_test_user "$STAGE/bin/rl" --root "$other/store" --runroot "$other/run" run -d --name secret \
    --rootfs "$STAGE/fixtures/$RL_TEST_USER/busybox" sleep 3600 >/dev/null &&
    as_test_user "$STAGE/bin/rl" --root "$other/store" --runroot "$other/run" inspect secret | jq -r '.[0].State.Pid') ||
    die "start the test user's container for the privacy test"
  suite_as "$RL_NOSUBID_USER" RL_TEST_NOSUBID=1 RL_TEST_OTHER_ROOT="$other/store" RL_TEST_OTHER_RUNROOT="$other/run" \
    RL_TEST_OTHER_PID="$other_pid" -- nosubid_
  as_test_user "$STAGE/bin/rl" --root "$other/store" --runroot "$other/run" rm -f secret >/dev/null || true
  vm_stage
}

# vm_stage: the tests this host's kernel cannot run, in qemu VMs booting Debian's own kernel
# (scripts/vm.sh): the limit tests (`vm_*`) and the core `rl run` tests on a pure cgroup v2
# hierarchy delegated to the test user, then one boot with user namespaces disabled.
vm_stage() {
  local cache=/var/cache/rl-vm limits=$STAGE/tests/test-limits
  # Twice what the boot with every executable needs here (about two minutes), for a loaded host.
  local vm=("$REPO/scripts/vm.sh" run "$cache" --timeout 600 --rl "$STAGE/bin/rl"
    --rootfs "$STAGE/fixtures/$RL_TEST_USER/busybox")
  step "a VM with Debian's kernel: prepare (qemu, the kernel package)"
  quiet "$LOGS/vm-prepare.log" "$REPO/scripts/vm.sh" prepare "$cache" >>"$LOGS/vm-prepare.log"
  # The core container tests too, on a second distro kernel with a leaf per container.
  local core=() t
  for t in run_basic run_process run_isolation run_cleanup exec lifecycle; do core+=("$STAGE/tests/test-$t"); done
  step "test-limits vm_ and the core tests (${core[*]##*/}) in the VM (delegated cgroup v2)"
  run_one "$LOGS/vm-cgroup2.log" "${vm[@]}" --tests "$limits ${core[*]}" -- --skip nodeleg_ --skip nouserns_ --skip nosubid_
  step "test-limits nouserns_ in the VM booted with user.max_user_namespaces=0"
  run_one "$LOGS/vm-nouserns.log" "${vm[@]}" --tests "$limits" --env RL_TEST_NOUSERNS=1 \
    --append "sysctl.user.max_user_namespaces=0" -- nouserns_
}

# as_test_user CMD...: CMD as the test user in a login-like environment.
as_test_user() {
  local home run
  home=$(getent passwd "$RL_TEST_USER" | cut -d: -f6)
  run=$(host_runtime_dir "$RL_TEST_USER")
  (cd "$STAGE" && runuser -u "$RL_TEST_USER" -- env -i HOME="$home" USER="$RL_TEST_USER" PATH="$STD_PATH" \
    XDG_RUNTIME_DIR="$run" "$@")
}

user_main() {
  local user i problems
  user=$(id -un)
  STAGE=${TMPDIR:-/tmp}/rl-test-$(id -u)
  fresh_stage "$STAGE"
  command -v jq >/dev/null || die "jq not found: sudo apt-get install jq"
  problems=$(host_problems "$user")
  [ -z "$problems" ] || sed 's/^/skipped: /' <<<"$problems"
  host_find_cargo
  check_and_build
  scripts/make-fixtures.sh "$STAGE/fixtures/busybox" "$user"
  start_registry
  export RL_BIN=$RL RL_TEST_ROOTFS=$STAGE/fixtures/busybox RUST_BACKTRACE=1 RL_TEST_REGISTRY \
    RL_TEST_AUTH_REGISTRY RL_TEST_AUTH_CREDS
  for i in "${!TEST_EXES[@]}"; do
    step "${TEST_NAMES[$i]}"
    run_one "$LOGS/${TEST_NAMES[$i]}.log" "${TEST_EXES[$i]}" --test-threads=2 --show-output \
      --skip nosubid_ --skip vm_ --skip nouserns_
  done
  echo "skipped: vm_ and nouserns_ tests: they boot a VM (scripts/vm.sh), which needs root to prepare"

  # The nosubid_ tests need a user without a range; that is only this user if it has none.
  if ! host_has_subids /etc/subuid "$user"; then
    for i in "${!TEST_EXES[@]}"; do
      step "${TEST_NAMES[$i]} nosubid_"
      RL_TEST_NOSUBID=1 run_one "$LOGS/nosubid-${TEST_NAMES[$i]}.log" "${TEST_EXES[$i]}" \
        --test-threads=2 --show-output nosubid_
    done
  fi
}

summary() {
  if ((SKIPPED > 0)); then
    step "skip reasons"
    cat "$LOGS"/*.log | grep -E "$SKIP_RE" | sed -E 's/^[^ ]+: (skipped: )/\1/' |
      sort | uniq -c | sort -rn
  fi
  ((BAD_RUNS == 0)) || echo "$BAD_RUNS test executable(s) failed; logs in $LOGS"
  echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
  ((BAD_RUNS == 0 && FAILED == 0))
}

if [ "$(id -u)" = 0 ]; then root_main; else user_main; fi
summary
