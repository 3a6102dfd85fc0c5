#!/usr/bin/env bash
# scripts/bench.sh [BENCH...] — rl's speed and memory targets, each measured side by side with its
# yardstick in the same run (benchmarks, never timed tests). Run as root it prepares the host as
# scripts/test.sh does and measures as the unprivileged test user; run as a normal user it
# measures as that user. Prints one line per benchmark: the medians, the ratio and the target.
#
# Benchmarks:
#   start   `rl run --rm --network none --rootfs BUSYBOX true` vs `bwrap --unshare-all` on the same
#           rootfs (both loopback only; median of RUNS, default 40). Target: rl <= 1.5x bwrap.
#   pull    `rl pull` of a Debian minbase image (mmdebstrap, one gzip layer) from a registry on
#           127.0.0.1 into an empty store, vs `podman pull` (same registry, same run), and
#           `curl blob | gunzip | tar -x` as the floor (median of PULL_RUNS, default 5); once with
#           the stores on the disk, once on a tmpfs.
#           Targets: rl >= 3x faster than podman, rl <= 1.3x the floor.
#   detached  10 `rl run -d --rootfs BUSYBOX sleep` vs 10 `podman run -d` (runc, no network), median
#           of DETACHED_RUNS (default 5), then the resident memory each running container costs:
#           every rl process per container (the monitor; stage 1 stays only with fuse-overlayfs)
#           vs conmon (RSS and PSS), idle, and while the container logs ten lines a second.
#           Targets: >= 10x faster, <= 600 kB.
#   net     start with the default network (slirp4netns) and with pasta, vs podman with
#           slirp4netns and bwrap (median of RUNS); then 1 GiB sent from the host through a
#           published port into `nc -l` in the container (median of NET_RUNS, default 3), for rl
#           and podman with each helper. Targets: start <= 3x bwrap; throughput >= podman's with
#           the same helper.
#   exec    `rl exec C true` into a running `rl run --rootfs BUSYBOX` container vs `podman exec`
#           (runtime runc) into a podman container on the same rootfs (median of RUNS).
#           Target: rl <= 15 ms.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib-host.sh
. scripts/lib-host.sh

RUNS=${RUNS:-40}
WORK=/var/tmp/rl-bench

# as_user CMD...: run CMD as the measuring user with a clean, stock environment.
as_user() {
  if [ "$(id -u)" = 0 ]; then
    local uid
    uid=$(id -u "$RL_TEST_USER")
    runuser -u "$RL_TEST_USER" -- env -i HOME="$(getent passwd "$RL_TEST_USER" | cut -d: -f6)" \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin XDG_RUNTIME_DIR=/run/user/$uid "$@"
  else
    "$@"
  fi
}

# podman_cmd DIR: podman with its store under DIR, runc and cgroupfs (crun 1.8 refuses this
# host's hybrid cgroups), as the container benchmarks run it.
podman_cmd() {
  echo "podman --root $1/podman --runroot $1/podman-run --runtime runc --cgroup-manager cgroupfs" \
    "--events-backend file --storage-driver overlay"
}

# median_ms JSON N: the median of hyperfine's result N, in milliseconds.
median_ms() {
  jq -r ".results[$2].median * 1000 | . * 100 | round / 100" "$1"
}

prepare() {
  if [ "$(id -u)" = 0 ]; then
    host_install_packages /dev/null "${RL_TEST_PACKAGES[@]}"
    host_create_users
    host_prepare_devices
    host_runtime_dir "$RL_TEST_USER" >/dev/null
    host_find_cargo
    OWNER=$RL_TEST_USER
  else
    OWNER=$(id -un)
    WORK=${TMPDIR:-/tmp}/rl-bench-$(id -u)
  fi
  step "building rl (release)"
  cargo build --release --quiet
  rm -rf "$WORK"
  install -d -m 0755 "$WORK"
  install -m 0755 target/release/rl "$WORK/rl"
  scripts/make-fixtures.sh "$WORK/busybox" "$OWNER" >/dev/null
  install -d -m 0700 "$WORK/store" "$WORK/out"
  if [ "$(id -u)" = 0 ]; then chown "$OWNER" "$WORK/store" "$WORK/out"; fi
  RL=$WORK/rl
}

bench_start() {
  step "start: rl run --rm vs bwrap --unshare-all (median of $RUNS)"
  # The run root is the default, $XDG_RUNTIME_DIR/rl (a tmpfs, as logind makes it).
  local rl_cmd="$RL --root $WORK/store/root run --rm --network none --rootfs $WORK/busybox true"
  local bw_cmd="bwrap --unshare-all --bind $WORK/busybox / --proc /proc --dev /dev true"
  as_user hyperfine -N --warmup 5 --runs "$RUNS" --export-json "$WORK/out/start.json" "$rl_cmd" "$bw_cmd" \
    >"$WORK/out/start.log"
  local rl_ms bw_ms
  rl_ms=$(median_ms "$WORK/out/start.json" 0)
  bw_ms=$(median_ms "$WORK/out/start.json" 1)
  printf 'start: rl %s ms, bwrap %s ms, ratio %s (target <= 1.5)\n' "$rl_ms" "$bw_ms" \
    "$(jq -rn --argjson a "$rl_ms" --argjson b "$bw_ms" '$a / $b * 100 | round / 100')"
}

# In the user's user namespace (files of a pulled store belong to subordinate ids).
userns_rm() {
  as_user unshare --map-auto --map-root-user rm -rf "$@"
}

bench_pull() {
  local port=${PULL_PORT:-5061} runs=${PULL_RUNS:-5} reg images out=$WORK/out
  step "pull: a Debian minbase image from 127.0.0.1:$port (median of $runs)"
  images=$WORK/images
  python3 scripts/make-images.py --debian --only debian "$images" >"$out/images.log" 2>&1 ||
    die "build the Debian image (see $out/images.log)"
  scripts/registry.sh start "$WORK/registry" "$port" >"$out/registry.log"
  trap 'scripts/registry.sh stop "$WORK/registry" >/dev/null 2>&1 || true' EXIT
  scripts/registry.sh seed "$WORK/registry" "$port" "$images" >>"$out/registry.log"
  reg=127.0.0.1:$port
  local image=$reg/test/debian:latest blob
  blob=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://$reg/v2/test/debian/manifests/latest" |
    jq -r '.layers[0].digest')
  # Twice: on the disk (what a user gets, but this VM's shared disk makes it noisy: dirty-page
  # writeback of one run slows the next) and on a tmpfs (the software's own cost).
  pull_round disk "$WORK/pull" "$image" "$reg" "$blob"
  pull_round tmpfs "/dev/shm/rl-bench-pull" "$image" "$reg" "$blob"
}

# pull_round LABEL DIR IMAGE REGISTRY BLOB: the three pulls into DIR, median of PULL_RUNS.
pull_round() {
  local label=$1 s=$2 image=$3 reg=$4 blob=$5 runs=${PULL_RUNS:-5} out=$WORK/out
  install -d -m 0755 "$s"
  [ "$(id -u)" = 0 ] && chown "$OWNER" "$s"
  as_user hyperfine -N --runs "$runs" --export-json "$out/pull-$label.json" \
    --prepare "unshare --map-auto --map-root-user rm -rf $s/rl $s/podman $s/podman-run $s/floor" \
    -n rl "$RL --root $s/rl pull -q $image" \
    -n podman "podman --root $s/podman --runroot $s/podman-run --storage-driver overlay pull -q --tls-verify=false $image" \
    -n floor "sh -c 'mkdir -p $s/floor && curl -sf http://$reg/v2/test/debian/blobs/$blob | gunzip | tar -x -C $s/floor'" \
    >"$out/pull-$label.log" 2>&1 || { tail -20 "$out/pull-$label.log"; die "pull benchmark failed"; }
  userns_rm "$s/rl" "$s/podman" "$s/podman-run" "$s/floor" || true
  local rl_ms podman_ms floor_ms
  rl_ms=$(median_ms "$out/pull-$label.json" 0)
  podman_ms=$(median_ms "$out/pull-$label.json" 1)
  floor_ms=$(median_ms "$out/pull-$label.json" 2)
  printf 'pull (%s): rl %s ms, podman %s ms, floor %s ms; podman/rl %s (target >= 3), rl/floor %s (target <= 1.3)\n' \
    "$label" "$rl_ms" "$podman_ms" "$floor_ms" \
    "$(jq -rn --argjson a "$podman_ms" --argjson b "$rl_ms" '$a / $b * 100 | round / 100')" \
    "$(jq -rn --argjson a "$rl_ms" --argjson b "$floor_ms" '$a / $b * 100 | round / 100')"
}

bench_exec() {
  local s=$WORK/exec out=$WORK/out name=rl-bench-exec i
  step "exec: rl exec vs podman exec --runtime runc (median of $RUNS)"
  install -d -m 0755 "$s"
  [ "$(id -u)" = 0 ] && chown "$OWNER" "$s"
  local rl=("$RL" --root "$s/rl")
  local podman=(podman --root "$s/podman" --runroot "$s/podman-run" --runtime runc --storage-driver overlay)
  # Both containers sleep until the benchmark stops them; the rl one runs in the foreground of a
  # background job, as a user's terminal would hold it.
  as_user "${rl[@]}" run --rm --name "$name" --rootfs "$WORK/busybox" sleep 3600 >"$out/exec-rl.log" 2>&1 &
  as_user "${podman[@]}" run -d --name "$name" --rootfs "$WORK/busybox" sleep 3600 >"$out/exec-podman.log" 2>&1 ||
    { cat "$out/exec-podman.log"; die "start the podman container"; }
  # The record says running once PID 1 exec'd: poll it (bounded) before measuring.
  i=0
  until as_user "${rl[@]}" exec "$name" true 2>/dev/null; do
    i=$((i + 1))
    [ $i -lt 500 ] || { cat "$out/exec-rl.log"; die "the rl container did not start"; }
    sleep 0.01
  done
  as_user hyperfine -N --warmup 5 --runs "$RUNS" --export-json "$out/exec.json" \
    -n rl "${rl[*]} exec $name true" -n podman "${podman[*]} exec $name true" >"$out/exec.log" 2>&1 ||
    { tail -20 "$out/exec.log"; die "exec benchmark failed"; }
  # A PID 1 ignores SIGTERM: kill it from the host, by the pid in its record.
  as_user kill -KILL "$(jq -r .pid "$s"/rl/containers/*/state.json)" || true
  wait || true
  as_user "${podman[@]}" rm -f -t 0 "$name" >/dev/null 2>&1 || true
  userns_rm "$s/rl" "$s/podman" "$s/podman-run" || true
  local rl_ms podman_ms
  rl_ms=$(median_ms "$out/exec.json" 0)
  podman_ms=$(median_ms "$out/exec.json" 1)
  printf 'exec: rl %s ms, podman %s ms, podman/rl %s (target: rl <= 15 ms)\n' "$rl_ms" "$podman_ms" \
    "$(jq -rn --argjson a "$podman_ms" --argjson b "$rl_ms" '$a / $b * 100 | round / 100')"
}

bench_detached() {
  local s=$WORK/detached out=$WORK/out runs=${DETACHED_RUNS:-5}
  step "detached: 10 x run -d sleep (median of $runs), and resident memory per container"
  install -d -m 0755 "$s"
  [ "$(id -u)" = 0 ] && chown "$OWNER" "$s"
  local rl="$RL --root $s/rl"
  local podman
  podman=$(podman_cmd "$s")
  # Both without a network: the monitor and the start are measured, not a network helper (`net`).
  local ten_rl="for i in 0 1 2 3 4 5 6 7 8 9; do $rl run -d --network none --rootfs $WORK/busybox sleep 3600 >/dev/null; done"
  local ten_podman="for i in 0 1 2 3 4 5 6 7 8 9; do $podman run -d --network none --rootfs $WORK/busybox"
  ten_podman+=" sleep 3600 >/dev/null; done"
  local clean_rl="ids=\$($rl ps -aq); [ -z \"\$ids\" ] || $rl rm -f \$ids >/dev/null"
  local clean_podman="$podman rm -af -t 0 >/dev/null 2>&1"
  as_user hyperfine -N --runs "$runs" --export-json "$out/detached.json" \
    --prepare "sh -c '$clean_rl; $clean_podman'" \
    -n rl "sh -c '$ten_rl'" -n podman "sh -c '$ten_podman'" >"$out/detached.log" 2>&1 ||
    { tail -20 "$out/detached.log"; die "detached benchmark failed"; }
  # What each running container costs: 10 of each, started afresh.
  as_user sh -c "$clean_rl; $clean_podman; $ten_rl; $ten_podman" || die "start 10 containers of each"
  # Idle: rl's monitor releases its code after a second without events.
  sleep 2
  local rl_rss rl_pss rl_n conmon_rss conmon_pss conmon_n
  read -r rl_rss rl_pss rl_n < <(mem_of '^rl-monitor __monitor|^rl __stage1' '^rl-monitor __monitor')
  read -r conmon_rss conmon_pss conmon_n < <(mem_of '^(/usr/bin/)?conmon ' '^(/usr/bin/)?conmon ')
  as_user sh -c "$clean_rl; $clean_podman" || true
  # A busy monitor: its container logs ten lines a second, so it never idles long enough to
  # release its code; measured after three seconds of that.
  local chatty="while :; do echo tick; sleep 0.1; done"
  as_user sh -c "$rl run -d --network none --rootfs $WORK/busybox sh -c '$chatty' >/dev/null" ||
    die "start a logging rl container"
  as_user sh -c "$podman run -d --network none --rootfs $WORK/busybox sh -c '$chatty' >/dev/null" ||
    die "start a logging podman container"
  sleep 3
  local busy_rss busy_pss busy_n cbusy_rss cbusy_pss cbusy_n
  read -r busy_rss busy_pss busy_n < <(mem_of '^rl-monitor __monitor|^rl __stage1' '^rl-monitor __monitor')
  read -r cbusy_rss cbusy_pss cbusy_n < <(mem_of '^(/usr/bin/)?conmon ' '^(/usr/bin/)?conmon ')
  as_user sh -c "$clean_rl; $clean_podman" || true
  userns_rm "$s/rl" || true
  local rl_ms podman_ms
  rl_ms=$(median_ms "$out/detached.json" 0)
  podman_ms=$(median_ms "$out/detached.json" 1)
  printf 'detached: 10 starts rl %s ms, podman %s ms, podman/rl %s (target >= 10)\n' "$rl_ms" "$podman_ms" \
    "$(jq -rn --argjson a "$podman_ms" --argjson b "$rl_ms" '$a / $b * 100 | round / 100')"
  printf 'detached: idle, per container, rl processes: RSS %s kB, PSS %s kB (%s containers); conmon: RSS %s kB, PSS %s kB (%s) (target <= 600 kB)\n' \
    "$rl_rss" "$rl_pss" "$rl_n" "$conmon_rss" "$conmon_pss" "$conmon_n"
  printf 'detached: logging 10 lines/s, rl processes: RSS %s kB, PSS %s kB; conmon: RSS %s kB, PSS %s kB\n' \
    "$busy_rss" "$busy_pss" "$cbusy_rss" "$cbusy_pss"
}

# send_gib PORT: seconds to send 1 GiB to 127.0.0.1:PORT and see the receiver close (it read all).
send_gib() {
  python3 - "$1" <<'PY'
import socket, sys, time
port = int(sys.argv[1])
chunk = bytes(1 << 20)
t = time.monotonic()
s = socket.create_connection(("127.0.0.1", port))
for _ in range(1024):
    s.sendall(chunk)
s.shutdown(socket.SHUT_WR)
while s.recv(65536):
    pass
print(f"{time.monotonic() - t:.3f}")
PY
}

# serving PORT: whether something accepts on 127.0.0.1:PORT, within ten seconds.
serving() {
  local i
  for i in $(seq 200); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1).close()" "$1" \
      2>/dev/null && return 0
    sleep 0.05
  done
  return 1
}

# throughput NAME CMD...: start a receiver with CMD (a detached container publishing
# 127.0.0.1:5999 to nc -l in a loop), then the median MB/s of NET_RUNS GiB sends.
throughput() {
  local name=$1 runs=${NET_RUNS:-3} i secs=() port=5999
  shift
  as_user "$@" >"$WORK/out/net-$name.log" 2>&1 || { echo "net: $name: could not start: $(tail -1 "$WORK/out/net-$name.log")"; return 0; }
  serving $port || { echo "net: $name: port $port not served"; return 0; }
  for i in $(seq "$runs"); do
    secs+=("$(send_gib $port)")
    serving $port || true
  done
  local median
  median=$(printf '%s\n' "${secs[@]}" | sort -n | sed -n "$(((runs + 1) / 2))p")
  printf '%s %s\n' "$name" "$(jq -rn --argjson s "$median" '1024 / $s | round')"
}

bench_net() {
  local s=$WORK/net out=$WORK/out
  step "net: start with a network (median of $RUNS), and 1 GiB through a published port"
  install -d -m 0755 "$s"
  [ "$(id -u)" = 0 ] && chown "$OWNER" "$s"
  local rl="$RL --root $s/rl"
  local podman
  podman=$(podman_cmd "$s")
  local bw_cmd="bwrap --unshare-all --bind $WORK/busybox / --proc /proc --dev /dev true"
  as_user hyperfine -N --warmup 3 --runs "$RUNS" --export-json "$out/net-start.json" \
    -n rl-slirp4netns "$rl run --rm --rootfs $WORK/busybox true" \
    -n rl-pasta "$rl run --rm --network pasta --rootfs $WORK/busybox true" \
    -n podman-slirp4netns "$podman run --rm --network slirp4netns --rootfs $WORK/busybox true" \
    -n bwrap "$bw_cmd" >"$out/net-start.log" 2>&1 || { tail -20 "$out/net-start.log"; die "net start benchmark failed"; }
  local slirp_ms pasta_ms podman_ms bw_ms
  slirp_ms=$(median_ms "$out/net-start.json" 0)
  pasta_ms=$(median_ms "$out/net-start.json" 1)
  podman_ms=$(median_ms "$out/net-start.json" 2)
  bw_ms=$(median_ms "$out/net-start.json" 3)
  printf 'net: start rl slirp4netns %s ms (%sx bwrap), rl pasta %s ms (%sx), podman slirp4netns %s ms, bwrap %s ms (target <= 3x bwrap)\n' \
    "$slirp_ms" "$(jq -rn --argjson a "$slirp_ms" --argjson b "$bw_ms" '$a / $b * 100 | round / 100')" \
    "$pasta_ms" "$(jq -rn --argjson a "$pasta_ms" --argjson b "$bw_ms" '$a / $b * 100 | round / 100')" \
    "$podman_ms" "$bw_ms"
  local recv="while :; do nc -l -p 5000 >/dev/null; done"
  local results=() r
  for mode in slirp4netns pasta; do
    r=$(throughput "rl-$mode" $rl run -d --name "tp-$mode" --network "$mode" -p 127.0.0.1:5999:5000 \
      --rootfs "$WORK/busybox" sh -c "$recv")
    results+=("$r")
    as_user $rl rm -f "tp-$mode" >/dev/null 2>&1 || true
    r=$(throughput "podman-$mode" $podman run -d --name "tp-$mode" --network "$mode" -p 127.0.0.1:5999:5000 \
      --rootfs "$WORK/busybox" sh -c "$recv")
    results+=("$r")
    as_user $podman rm -f -t 0 "tp-$mode" >/dev/null 2>&1 || true
  done
  userns_rm "$s/rl" "$s/podman" "$s/podman-run" || true
  for r in "${results[@]}"; do
    case $r in
    net:*) echo "$r" ;;
    *) printf 'net: 1 GiB host -> container through -p, %s: %s MB/s\n' "${r%% *}" "${r##* }" ;;
    esac
  done
  echo "net: target: rl >= podman with the same helper"
}

# mem_of REGEX PER: the VmRSS and Pss (kB) of the measuring user's live processes whose command
# line matches REGEX, per process matching PER (one per container), and how many PER matched.
mem_of() {
  local rss=0 pss=0 n=0 p uid r q
  uid=$(id -u "$OWNER")
  for p in $(pgrep -u "$uid" -f -- "$1" || true); do
    [ "$(awk '/^State:/ { print $2 }' "/proc/$p/status" 2>/dev/null)" != Z ] || continue
    r=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null)
    q=$(awk '/^Pss:/ { print $2 }' "/proc/$p/smaps_rollup" 2>/dev/null)
    rss=$((rss + ${r:-0})) pss=$((pss + ${q:-0}))
  done
  n=$(pgrep -c -u "$uid" -f -- "$2" || true)
  ((n > 0)) || n=1
  echo $((rss / n)) $((pss / n)) "$n"
}

main() {
  local benches=("$@")
  ((${#benches[@]})) || benches=(start)
  prepare
  local b
  for b in "${benches[@]}"; do
    declare -F "bench_$b" >/dev/null || die "unknown benchmark \`$b\` (known: start pull exec detached net)"
    "bench_$b"
  done
}

main "$@"
