//! Resource limits through delegated cgroup v2.
//!
//! `vm_*` tests need a host that delegates a cgroup v2 subtree with controllers to the user:
//! scripts/vm.sh boots Debian's kernel in qemu, delegates `/rl` to the test user as systemd's
//! `Delegate=` would, and runs them there with `RL_TEST_VM=1`; scripts/test.sh skips them on
//! its own host, whose cgroup v2 hierarchy has no controllers (hybrid mode). There, the
//! `nodeleg_*` tests check the error, the hint and the opt-out instead. `nouserns_*` run in a
//! VM booted with user namespaces disabled (`RL_TEST_NOUSERNS=1`).
//!
//! Each test checks from the host side too: the cgroup files of the container's leaf, and the
//! leaf gone after the container.
mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A test for a host that delegates cgroup v2 (the VM).
fn vm_ctx() -> Option<Ctx> {
    if std::env::var("RL_TEST_VM").as_deref() != Ok("1") {
        say("skipped: needs a delegated cgroup v2 subtree: runs in the VM of scripts/vm.sh (RL_TEST_VM=1)");
        return None;
    }
    Ctx::with_subids()
}

/// The host-side directory of a running container's cgroup.
fn leaf_of(ctx: &Ctx, name: &str) -> PathBuf {
    let rel = ctx.inspect(name)["State"]["CgroupPath"].as_str().unwrap_or_default().to_string();
    assert!(rel.contains("/rl-"), "a running container has a leaf of its own: `{rel}`");
    Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/'))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display())).trim().to_string()
}

/// The number after `key` in a flat keyed cgroup file.
fn keyed(path: &Path, key: &str) -> u64 {
    rl::cgroup::stats::keyed(&read(path), key).unwrap_or_else(|| panic!("no `{key}` in {}", path.display()))
}

#[test]
fn vm_memory_hog_is_oom_killed_and_reported() {
    let Some(ctx) = vm_ctx() else { return };
    // busybox dd allocates its whole block and fills it: 64 MiB in a 32 MiB container.
    let out =
        ctx.run(&["--name", "hog", "--memory", "32m"], &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"]);
    out.assert_code(137);
    let v = ctx.inspect("hog");
    assert_eq!(v["State"]["OOMKilled"], true, "{v}");
    assert_eq!(v["State"]["ExitCode"], 137);
    assert_eq!(v["HostConfig"]["Memory"], 32 << 20);
    assert_eq!(v["State"]["CgroupPath"], "", "no cgroup once it exited");
    let leaf = Path::new("/sys/fs/cgroup/rl").join(format!("rl-{}", v["Id"].as_str().unwrap_or_default()));
    assert!(!leaf.exists(), "the leaf is removed after the container");
    // The same work under enough memory runs to its end and is no OOM kill.
    ctx.run(&["--name", "fits", "--memory", "128m"], &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"])
        .assert_ok();
    assert_eq!(ctx.inspect("fits")["State"]["OOMKilled"], false);
}

#[test]
fn vm_pids_limit_makes_the_21st_fork_fail() {
    let Some(ctx) = vm_ctx() else { return };
    // The shell is PID 1 (one task); each `sleep &` is one more. ash stops at the fork that fails.
    let script = "i=0; while [ $i -lt 30 ]; do sleep 1000 & i=$((i+1)); echo started $i; done";
    let out = ctx.run(&["--pids-limit", "20"], &["sh", "-c", script]);
    let last = out.stdout.lines().last().unwrap_or_default().to_string();
    assert_eq!(last, "started 19", "19 sleeps and the shell are 20 tasks; the 21st fork fails\n{out}");
    assert!(out.stderr.contains("can't fork"), "{out}");
    // Unlimited, all 30 start.
    let script = "i=0; while [ $i -lt 30 ]; do sleep 1000 & i=$((i+1)); done; echo $i";
    let out = ctx.run(&[], &["sh", "-c", script]);
    out.assert_ok();
    assert_eq!(out.stdout_trim(), "30", "{out}");
}

#[test]
fn vm_cpus_write_cpu_max_and_a_busy_loop_is_throttled() {
    let Some(ctx) = vm_ctx() else { return };
    ctx.run_d(&["--name", "busy", "--cpus", "0.5"], &["sh", "-c", "while :; do :; done"]);
    let leaf = leaf_of(&ctx, "busy");
    assert_eq!(read(&leaf.join("cpu.max")), "50000 100000");
    assert_eq!(ctx.inspect("busy")["HostConfig"]["NanoCpus"], 500_000_000);
    let stat = leaf.join("cpu.stat");
    assert!(poll_until(|| keyed(&stat, "nr_throttled") > 0), "the loop is throttled: {}", read(&stat));
    ctx.rl_out(&["rm", "-f", "busy"], None).assert_ok();
    assert!(!leaf.exists(), "the leaf is removed with the container");
}

/// How far the container's counter got: the lines it appended to its bind-mounted /out/c (a
/// count of appends, never a file caught half-written, even by a freeze).
fn counter(dir: &Path) -> usize {
    std::fs::read(dir.join("c")).map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
}

#[test]
fn vm_pause_freezes_and_unpause_resumes() {
    let Some(ctx) = vm_ctx() else { return };
    let out = ctx.dir.join("out");
    std::fs::create_dir(&out).unwrap();
    let vol = format!("{}:/out", out.display());
    ctx.run_d(&["--name", "count", "-v", &vol], &["sh", "-c", "while :; do echo x >> /out/c; done"]);
    assert!(poll_until(|| counter(&out) > 0));
    let leaf = leaf_of(&ctx, "count");
    ctx.rl_out(&["pause", "count"], None).assert_ok();
    assert_eq!(read(&leaf.join("cgroup.freeze")), "1");
    assert_eq!(keyed(&leaf.join("cgroup.events"), "frozen"), 1, "pause returns once the kernel froze it");
    let v = ctx.inspect("count");
    assert_eq!(v["State"]["Status"], "paused");
    assert_eq!(v["State"]["Paused"], true);
    let ps = ctx.rl_out(&["ps", "--format", "{{.Status}}"], None);
    assert!(ps.stdout.contains("(Paused)"), "{ps}");
    // Frozen: the counter does not move over a window in which it counted thousands before.
    let frozen = counter(&out);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(counter(&out), frozen, "no process of a paused container runs");
    let exec = ctx.rl_out(&["exec", "count", "true"], None);
    exec.assert_error("paused");
    assert!(exec.stderr.contains("hint: unpause it first"), "{exec}");
    ctx.rl_out(&["pause", "count"], None).assert_error("already paused");
    ctx.rl_out(&["unpause", "count"], None).assert_ok();
    assert!(poll_until(|| counter(&out) > frozen), "it counts again after unpause");
    assert_eq!(ctx.inspect("count")["State"]["Status"], "running");
    // A paused container still stops (it is thawed to take the signal).
    ctx.rl_out(&["pause", "count"], None).assert_ok();
    ctx.rl_out(&["stop", "-t", "1", "count"], None).assert_ok();
    assert!(!leaf.exists());
}

#[test]
fn vm_stats_report_memory_in_use_and_the_limit() {
    let Some(ctx) = vm_ctx() else { return };
    // 20 MiB in the container's /dev/shm (tmpfs pages are charged to its cgroup), then idle.
    let script = "dd if=/dev/zero of=/dev/shm/x bs=1M count=20 2>/dev/null; echo filled; exec sleep 1000";
    ctx.run_d(&["--name", "mem", "--memory", "64m"], &["sh", "-c", script]);
    assert!(poll_until(|| ctx.rl_out(&["logs", "mem"], None).stdout.contains("filled")));
    let stats = ctx.rl_out(&["stats", "--no-stream", "--format", "json", "mem"], None);
    stats.assert_ok();
    let v: serde_json::Value = serde_json::from_str(stats.stdout_trim()).unwrap_or_else(|e| panic!("{e}\n{stats}"));
    let used = v["MemUsageBytes"].as_u64().unwrap_or(0);
    assert!((20 << 20..=64 << 20).contains(&used), "20 MiB in use: {used}\n{stats}");
    assert_eq!(v["MemLimitBytes"], 64 << 20);
    assert!(v["MemUsage"].as_str().unwrap_or_default().ends_with("/ 64MiB"), "{v}");
    assert_eq!(v["Name"], "mem");
    assert!(v["PIDs"].as_str().is_some_and(|p| p != "--" && p != "0"), "{v}");
    let table = ctx.rl_out(&["stats", "--no-stream"], None);
    table.assert_ok();
    assert!(table.stdout.starts_with("CONTAINER ID") && table.stdout.contains("MEM USAGE / LIMIT"), "{table}");
    assert!(table.stdout.lines().nth(1).is_some_and(|l| l.contains("mem")), "{table}");
    // Without --no-stream it reads again every interval until interrupted.
    let mut cmd = ctx.rl();
    cmd.args(["stats", "--format", "{{.Name}} {{.MemLimitBytes}}", "mem"]);
    let mut streaming = Running::spawn(cmd, false);
    streaming.wait_for_lines(&format!("mem {}", 64u64 << 20), 2);
    streaming.signal(nix::sys::signal::Signal::SIGTERM);
    drop(streaming);
    ctx.rl_out(&["rm", "-f", "mem"], None).assert_ok();
}

#[test]
fn vm_update_changes_the_limits_of_a_running_container() {
    let Some(ctx) = vm_ctx() else { return };
    ctx.run_d(&["--name", "upd", "--memory", "128m"], &["sleep", "1000"]);
    let leaf = leaf_of(&ctx, "upd");
    assert_eq!(read(&leaf.join("memory.max")), (128u64 << 20).to_string());
    // 48 MiB fits under 128m...
    ctx.rl_out(&["exec", "upd", "dd", "if=/dev/zero", "of=/dev/null", "bs=48M", "count=1"], None).assert_ok();
    ctx.rl_out(&["update", "--memory", "32m", "--pids-limit", "50", "upd"], None).assert_ok();
    assert_eq!(read(&leaf.join("memory.max")), (32u64 << 20).to_string());
    assert_eq!(read(&leaf.join("pids.max")), "50");
    // ...and is killed under the new 32m: the exec'd process is in the container's cgroup.
    let out = ctx.rl_out(&["exec", "upd", "dd", "if=/dev/zero", "of=/dev/null", "bs=48M", "count=1"], None);
    out.assert_code(137);
    assert!(keyed(&leaf.join("memory.events"), "oom_kill") >= 1);
    let v = ctx.inspect("upd");
    assert_eq!(v["HostConfig"]["Memory"], 32 << 20, "kept for the next start");
    assert_eq!(v["HostConfig"]["PidsLimit"], 50);
    ctx.rl_out(&["update", "--memory", "1m", "upd"], None).assert_error("smallest");
    ctx.rl_out(&["update", "upd"], None).assert_error("nothing to change");
    ctx.rl_out(&["rm", "-f", "upd"], None).assert_ok();
}

#[test]
fn vm_container_sees_only_its_own_cgroup_read_only() {
    let Some(ctx) = vm_ctx() else { return };
    // Its cgroup namespace's root is its leaf: it reads `/`, and its own limit at the top.
    let script =
        "cat /proc/self/cgroup; cat /sys/fs/cgroup/memory.max; mkdir /sys/fs/cgroup/sub 2>/dev/null || echo refused";
    let out = ctx.run(&["--name", "ro", "--memory", "32m"], &["sh", "-c", script]);
    out.assert_ok();
    assert_eq!(out.stdout, format!("0::/\n{}\nrefused\n", 32u64 << 20), "{out}");
    // --privileged may manage its own subtree; the leaf goes with its child cgroups.
    let out = ctx.run(&["--name", "priv", "--privileged"], &["sh", "-c", "mkdir /sys/fs/cgroup/sub && echo made"]);
    out.assert_ok();
    assert_eq!(out.stdout_trim(), "made", "{out}");
    for name in ["ro", "priv"] {
        let id = ctx.inspect(name)["Id"].as_str().unwrap_or_default().to_string();
        let leaf = Path::new("/sys/fs/cgroup/rl").join(format!("rl-{id}"));
        assert!(!id.is_empty() && !leaf.exists(), "{} outlived container {name}", leaf.display());
    }
}

#[test]
fn vm_every_limit_flag_reaches_its_cgroup_file() {
    let Some(ctx) = vm_ctx() else { return };
    let flags = [
        "--name",
        "all",
        "--memory",
        "64m",
        "--memory-swap",
        "96m",
        "--memory-reservation",
        "16m",
        "--cpu-shares",
        "1024",
        "--cpuset-cpus",
        "0",
        "--pids-limit",
        "100",
        "--blkio-weight",
        "500",
    ];
    ctx.run_d(&flags, &["sleep", "1000"]);
    let leaf = leaf_of(&ctx, "all");
    for (file, want) in [
        ("memory.max", (64u64 << 20).to_string()),
        ("memory.low", (16u64 << 20).to_string()),
        ("cpu.weight", "100".into()),
        ("cpuset.cpus", "0".into()),
        ("pids.max", "100".into()),
    ] {
        assert_eq!(read(&leaf.join(file)), want, "{file}");
    }
    // Swap is what --memory-swap gives beyond --memory (where the kernel accounts swap).
    if leaf.join("memory.swap.max").exists() {
        assert_eq!(read(&leaf.join("memory.swap.max")), (32u64 << 20).to_string());
    }
    // BFQ's weight where that scheduler is in use, else io.weight's default, converted.
    match leaf.join("io.bfq.weight").exists() {
        true => assert_eq!(read(&leaf.join("io.bfq.weight")), "default 500"),
        false => assert_eq!(read(&leaf.join("io.weight")), "default 4950"),
    }
    // `--cpu-weight` is the same file unconverted; update switches to it.
    ctx.rl_out(&["update", "--cpu-weight", "250", "all"], None).assert_ok();
    assert_eq!(read(&leaf.join("cpu.weight")), "250");
    ctx.rl_out(&["rm", "-f", "all"], None).assert_ok();
}

#[test]
fn vm_rm_removes_the_leaf_a_killed_monitor_left() {
    let Some(ctx) = vm_ctx() else { return };
    ctx.run_d(&["--name", "orphan", "--pids-limit", "10"], &["sleep", "1000"]);
    let leaf = leaf_of(&ctx, "orphan");
    let v = ctx.inspect("orphan");
    let (monitor, pid) = (v["State"]["MonitorPid"].as_i64().unwrap_or(0), v["State"]["Pid"].as_i64().unwrap_or(0));
    let kill9 =
        |p: i64| nix::sys::signal::kill(nix::unistd::Pid::from_raw(p as i32), nix::sys::signal::Signal::SIGKILL);
    kill9(monitor).expect("kill the monitor");
    // The container dies with its monitor (parent-death signal); nobody removed its cgroup.
    assert!(poll_until(|| process(pid as i32).is_none_or(|p| p.state == 'Z')));
    assert!(poll_until(|| keyed(&leaf.join("cgroup.events"), "populated") == 0));
    assert!(leaf.exists());
    ctx.rl_out(&["rm", "orphan"], None).assert_ok();
    assert!(!leaf.exists(), "rm removes what the killed monitor left");
}

#[test]
fn vm_info_shows_the_delegated_controllers() {
    let Some(ctx) = vm_ctx() else { return };
    let out = ctx.rl_out(&["info", "--format", "json"], None);
    out.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(v["host"]["cgroupVersion"], "v2");
    assert_eq!(v["host"]["cgroupDelegated"], "/rl");
    let ctls: Vec<&str> =
        v["host"]["cgroupControllers"].as_array().map_or(vec![], |a| a.iter().filter_map(|c| c.as_str()).collect());
    for c in ["cpu", "memory", "pids", "io", "cpuset"] {
        assert!(ctls.contains(&c), "{c} delegated: {ctls:?}");
    }
}

/// For the CI host, whose cgroup v2 hierarchy has no controllers: what a user without
/// delegation sees.
fn nodeleg_ctx() -> Option<Ctx> {
    let ctx = Ctx::with_subids()?;
    // With a user systemd, rl asks it for a delegated scope instead: not these tests' subject.
    let run = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).unwrap_or_default();
    if !require(!run.join("systemd/private").exists(), "a user systemd manager runs (rl would ask it for a scope)") {
        return None;
    }
    let info = ctx.rl_out(&["info", "--format", "json"], None);
    info.assert_ok();
    let v: serde_json::Value = serde_json::from_str(&info.stdout).unwrap_or_default();
    let delegated = v["host"]["cgroupControllers"].as_array().is_some_and(|a| a.iter().any(|c| c == "memory"));
    require(!delegated, "this host delegates the memory controller to the user (the vm_ tests cover that)")
        .then_some(ctx)
}

#[test]
fn nodeleg_limit_flag_fails_with_what_is_missing() {
    let Some(ctx) = nodeleg_ctx() else { return };
    let out = ctx.run(&["--memory", "32m"], &["true"]);
    out.assert_error("--memory: ").assert_hint(&["--ignore-limits"]);
    assert!(ctx.containers().is_empty(), "no container record is left: {:?}", ctx.containers());
    let out = ctx.run(&["--pids-limit", "20", "-d"], &["true"]);
    out.assert_error("--pids-limit");
    ctx.rl_out(&["create", "--rootfs", &ctx.rootfs.to_string_lossy(), "--cpus", "0.5", "true"], None)
        .assert_error("--cpus");
    assert!(ctx.containers().is_empty(), "{:?}", ctx.containers());
    // Bad values fail before the host is even asked.
    ctx.run(&["--memory", "lots"], &["true"]).assert_error("--memory `lots`");
    ctx.run(&["--cpus", "0"], &["true"]).assert_error("--cpus `0`");
}

#[test]
fn nodeleg_ignore_limits_runs_with_a_warning() {
    let Some(ctx) = nodeleg_ctx() else { return };
    let out = ctx.run(&["--rm", "--memory", "32m", "--ignore-limits"], &["echo", "ran"]);
    out.assert_ok();
    assert_eq!(out.stdout_trim(), "ran");
    assert!(out.stderr.starts_with("warning: --ignore-limits: --memory: "), "{out}");
    // The same from the environment, for CI runners without delegation.
    let mut cmd = ctx.run_cmd(&["--rm", "--pids-limit", "20"], &["true"]);
    cmd.env("RL_IGNORE_LIMITS", "1");
    output(cmd, None).assert_ok();
    // Without limits nothing is said at all.
    let out = ctx.run(&["--rm"], &["true"]);
    out.assert_ok();
    assert!(out.stderr.is_empty(), "{out}");
}

#[test]
fn nodeleg_pause_stats_and_update_say_why_not() {
    let Some(ctx) = nodeleg_ctx() else { return };
    ctx.run_d(&["--name", "plain"], &["sleep", "1000"]);
    for args in [&["pause", "plain"][..], &["stats", "--no-stream", "plain"], &["update", "--memory", "64m", "plain"]] {
        ctx.rl_out(args, None).assert_error("no cgroup of its own").assert_hint(&["cgroup"]);
    }
    let info = ctx.rl_out(&["info"], None);
    info.assert_ok();
    assert!(info.stdout.contains("cgroupVersion:") && info.stdout.contains("cgroupManager: none"), "{info}");
    ctx.rl_out(&["rm", "-f", "plain"], None).assert_ok();
}

#[test]
fn nouserns_run_fails_with_the_sysctl_hint() {
    if std::env::var("RL_TEST_NOUSERNS").as_deref() != Ok("1") {
        say("skipped: needs a kernel booted with user namespaces disabled (scripts/vm.sh, RL_TEST_NOUSERNS=1)");
        return;
    }
    let Some(ctx) = Ctx::new() else { return };
    ctx.run(&["--rm"], &["true"]).assert_error("create a user namespace").assert_hint(&["user.max_user_namespaces"]);
}
