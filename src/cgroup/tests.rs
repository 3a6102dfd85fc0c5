//! The cgroup file writes against a temp dir shaped like a delegated subtree (the kernel's
//! files are plain files here, created where the kernel would have them).

use super::*;

/// A fresh dir with a fake delegated root `deleg` holding rl's own cgroup `deleg/runner`.
fn fake_tree(tag: &str, controllers: &str) -> PathBuf {
    let base = std::env::temp_dir().join(format!("rl-cgroup-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    for d in ["deleg", "deleg/runner"] {
        let dir = base.join(d);
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["cgroup.procs", "cgroup.subtree_control"] {
            std::fs::write(dir.join(f), "").unwrap();
        }
        std::fs::write(dir.join("cgroup.controllers"), controllers).unwrap();
    }
    base
}

#[test]
fn delegated_root_is_the_topmost_owned_cgroup() {
    let base = fake_tree("walk", "cpuset cpu io memory pids\n");
    let d = delegated_root(&base, "/deleg/runner").unwrap();
    assert_eq!(d.path, "/deleg");
    assert_eq!(d.controllers, ["cpuset", "cpu", "io", "memory", "pids"]);
    assert!(!d.busy);
    std::fs::write(base.join("deleg/cgroup.procs"), "123\n").unwrap();
    assert!(delegated_root(&base, "/deleg/runner").unwrap().busy);
    assert!(delegated_root(&base, "/nowhere").is_none());
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn systemd_marks_decide_which_cgroup_is_ours() {
    let lv = |rel: &str, owned, marked| Level { rel: rel.into(), owned, marked };
    let pick = |levels: &[Level]| choose(levels).map(|l| l.rel.clone());
    let user = "/user.slice/user-1000.slice";
    let mgr = format!("{user}/user@1000.service");
    // A terminal's scope inside the user's manager: owned, but the manager's, not rl's.
    let terminal = [
        lv(&format!("{mgr}/app.slice/vte.scope"), true, false),
        lv(&format!("{mgr}/app.slice"), true, false),
        lv(&mgr, true, true),
        lv(user, false, false),
        lv("/", false, false),
    ];
    assert_eq!(pick(&terminal), None);
    // `systemd-run --user --scope -p Delegate=yes rl …`: the scope, also once rl moved into a
    // child of it.
    let scope = format!("{mgr}/app.slice/run-r1.scope");
    let in_scope = [lv(&scope, true, true), lv(&format!("{mgr}/app.slice"), true, false), lv(&mgr, true, true)];
    assert_eq!(pick(&in_scope), Some(scope.clone()));
    let settled = [lv(&format!("{scope}/supervisor"), true, false), lv(&scope, true, true), lv(&mgr, true, true)];
    assert_eq!(pick(&settled), Some(scope));
    // The manager itself runs rl (a unit with Delegate= of the system manager, such as a CI
    // runner's service, is the same).
    assert_eq!(pick(&[lv(&mgr, true, true), lv(user, false, false)]), Some(mgr.clone()));
    // A login session's scope: nothing owned.
    assert_eq!(pick(&[lv(&format!("{user}/session-3.scope"), false, false), lv(user, false, false)]), None);
    // No systemd: the topmost owned, up to the root of a container's cgroup namespace.
    assert_eq!(
        pick(&[lv("/rl/runner", true, false), lv("/rl", true, false), lv("/", false, false)]),
        Some("/rl".into())
    );
    assert_eq!(pick(&[lv("/", true, false)]), Some("/".into()));
}

#[test]
fn leaf_enables_controllers_and_writes_limits() {
    let base = fake_tree("leaf", "cpu memory pids\n");
    let root = base.join("deleg");
    let ctls: Vec<String> = ["cpu", "memory", "pids", "hugetlb"].iter().map(|s| s.to_string()).collect();
    let leaf = Leaf::create(&root, "/deleg", "abc", &ctls).unwrap();
    assert_eq!(leaf.rel, "/deleg/rl-abc");
    assert_eq!(std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(), "+cpu +memory +pids");
    for f in ["memory.max", "memory.swap.max", "cpu.max", "pids.max"] {
        std::fs::write(leaf.dir.join(f), "").unwrap();
    }
    let res =
        Resources { memory: Some(32 << 20), nano_cpus: Some(500_000_000), pids_limit: Some(20), ..Default::default() };
    leaf.apply(&res).unwrap();
    let read = |f: &str| std::fs::read_to_string(leaf.dir.join(f)).unwrap();
    assert_eq!(read("memory.max"), (32u64 << 20).to_string());
    assert_eq!(read("cpu.max"), "50000 100000");
    assert_eq!(read("pids.max"), "20");
    // A missing memory.swap.max (no swap accounting) is fine when nobody asked for swap...
    std::fs::remove_file(leaf.dir.join("memory.swap.max")).unwrap();
    leaf.apply(&res).unwrap();
    // ...but not when --memory-swap did, and the error names the file.
    let err = leaf.apply(&Resources { memory_swap: Some(-1), ..res.clone() }).unwrap_err();
    assert!(format!("{err:#}").contains("memory.swap.max"), "{err:#}");
    // Already enabled: nothing is written again.
    std::fs::write(root.join("cgroup.subtree_control"), "cpu memory pids").unwrap();
    Leaf::create(&root, "/deleg", "def", &ctls).unwrap();
    assert_eq!(std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap(), "cpu memory pids");
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn check_says_what_is_missing() {
    let res = Resources { memory: Some(32 << 20), ..Default::default() };
    let host =
        |version, delegated| Host { version, mount: None, own: Some("/user.slice/session-1.scope".into()), delegated };
    let problem = |h: &Host| {
        let e = h.check(&res).unwrap_err();
        (e.chain().find_map(|c| c.downcast_ref::<crate::hint::Hinted>()).map(|h| h.problem), format!("{e:#}"))
    };
    let (p, msg) = problem(&host(Version::Hybrid, None));
    assert_eq!(p, Some(Problem::CgroupV1));
    assert!(msg.starts_with("--memory: ") && msg.contains("hybrid"), "{msg}");
    let (p, msg) = problem(&host(Version::V2, None));
    assert_eq!(p, Some(Problem::CgroupNotDelegated));
    assert!(msg.contains("/user.slice/session-1.scope"), "{msg}");
    let some = |ctls: &[&str], busy| Delegated {
        path: "/u".into(),
        controllers: ctls.iter().map(|s| s.to_string()).collect(),
        busy,
    };
    let (p, msg) = problem(&host(Version::V2, Some(some(&["cpu", "pids"], false))));
    assert_eq!(p, Some(Problem::CgroupNotDelegated));
    assert!(msg.contains("memory controller") && msg.contains("cpu pids"), "{msg}");
    let (p, _) = problem(&host(Version::V2, Some(some(&["memory"], true))));
    assert_eq!(p, Some(Problem::CgroupBusy));
    host(Version::V2, Some(some(&["memory"], false))).check(&res).unwrap();
    // No limit asked: nothing to check, whatever the host.
    host(Version::V1, None).check(&Resources::default()).unwrap();
}

#[test]
fn stats_parsers_read_the_kernel_formats() {
    assert_eq!(stats::keyed("usage_usec 1500\nuser_usec 1000\n", "usage_usec"), Some(1500));
    assert_eq!(stats::keyed("populated 1\nfrozen 0\n", "frozen"), Some(0));
    assert_eq!(stats::keyed("low 0\noom_kill 2\n", "oom"), None);
    assert_eq!(stats::io_bytes("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2\n254:0 rbytes=1 wbytes=0\n"), (4097, 8192));
    let dev = "Inter-|   Receive |  Transmit\n face |bytes packets errs drop fifo frame compressed multicast|bytes\n    \
               lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n  \
               eth0:    2000      10    0    0    0     0          0         0      300       3    0    0    0     0       0          0\n";
    assert_eq!(stats::net_bytes(dev), (2000, 300));
    assert_eq!(stats::decimal_size(0), "0B");
    assert_eq!(stats::decimal_size(1500), "1.5kB");
    assert_eq!(stats::decimal_size(2_340_000), "2.34MB");
    assert_eq!(stats::binary_size(32 << 20), "32MiB");
    assert_eq!(stats::binary_size(1536), "1.5KiB");
    assert!((stats::cpu_percent(50_000, 100_000) - 50.0).abs() < 1e-9);
}
