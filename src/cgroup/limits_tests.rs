use super::*;

#[test]
fn sizes_read_like_docker() {
    let cases: [(&str, Option<u64>); 10] = [
        ("100", Some(100)),
        ("512k", Some(512 << 10)),
        ("32m", Some(32 << 20)),
        ("32M", Some(32 << 20)),
        ("32mb", Some(32 << 20)),
        ("1g", Some(1 << 30)),
        ("1.5g", Some(3 << 29)),
        ("10x", None),
        ("m", None),
        ("-5m", None),
    ];
    for (s, want) in cases {
        assert_eq!(parse_bytes("--memory", s).ok(), want, "{s}");
    }
    assert!(parse_memory("--memory", "4m").unwrap_err().to_string().contains("smallest"));
    assert_eq!(parse_swap("-1").unwrap(), Some(-1));
    assert_eq!(parse_swap("0").unwrap(), None, "0 is unset, as in Docker");
}

#[test]
fn cpus_become_a_quota_per_100ms() {
    let r = Resources { nano_cpus: Some(parse_cpus("0.5").unwrap()), ..Default::default() };
    assert_eq!(r.writes(), vec![Write { file: "cpu.max", value: "50000 100000".into(), optional: false }]);
    assert!(parse_cpus("0").is_err());
    assert!(parse_cpus("abc").is_err());
    assert!(parse_cpus("100000").unwrap_err().to_string().contains("only"));
}

#[test]
fn memory_gets_as_much_swap_unless_told() {
    let m = 32 << 20;
    let plain = Resources { memory: Some(m), ..Default::default() };
    let w = plain.writes();
    assert_eq!(w[0], Write { file: "memory.max", value: m.to_string(), optional: false });
    assert_eq!(w[1], Write { file: "memory.swap.max", value: m.to_string(), optional: true });
    let total = Resources { memory: Some(m), memory_swap: Some(3 * m as i64), ..Default::default() };
    assert_eq!(total.writes()[1], Write { file: "memory.swap.max", value: (2 * m).to_string(), optional: false });
    let unlimited = Resources { memory: Some(m), memory_swap: Some(-1), ..Default::default() };
    assert_eq!(unlimited.writes()[1].value, "max");
    let less = Resources { memory: Some(m), memory_swap: Some(m as i64 / 2), ..Default::default() };
    assert!(less.validate().is_err());
    let alone = Resources { memory_swap: Some(m as i64), ..Default::default() };
    assert!(alone.validate().is_err());
}

#[test]
fn every_flag_has_its_file_and_controller() {
    let r = Resources {
        memory: Some(64 << 20),
        memory_swap: Some(-1),
        memory_reservation: Some(32 << 20),
        nano_cpus: Some(1_500_000_000),
        cpu_shares: Some(512),
        cpu_weight: None,
        cpuset_cpus: Some("0-1".into()),
        pids_limit: Some(20),
        blkio_weight: Some(500),
    };
    r.validate().unwrap();
    let files: Vec<(&str, String)> = r.writes().into_iter().map(|w| (w.file, w.value)).collect();
    assert_eq!(
        files,
        vec![
            ("memory.max", (64u64 << 20).to_string()),
            ("memory.swap.max", "max".into()),
            ("memory.low", (32u64 << 20).to_string()),
            ("cpu.max", "150000 100000".into()),
            ("cpu.weight", "59".into()),
            ("cpuset.cpus", "0-1".into()),
            ("pids.max", "20".into()),
            ("io.weight", "default 4950".into()),
        ]
    );
    let ctls: Vec<&str> = r.controllers().into_iter().map(|(c, _)| c).collect();
    assert_eq!(ctls, ["memory", "memory", "memory", "cpu", "cpu", "cpuset", "pids", "io"]);
    assert!(!Resources::default().any());
    assert!(Resources::default().writes().is_empty());
}

#[test]
fn conversions_match_runc() {
    assert_eq!(shares_to_weight(1024), 100);
    assert_eq!(shares_to_weight(512), 59);
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(blkio_to_io_weight(10), 1);
    assert_eq!(blkio_to_io_weight(1000), 10_000);
}

#[test]
fn unlimited_pids_and_cpusets() {
    let r = Resources { pids_limit: Some(-1), ..Default::default() };
    assert_eq!(r.writes()[0].value, "max");
    for ok in ["0", "0-3", "0,2,4-5"] {
        assert!(parse_cpuset(ok).is_ok(), "{ok}");
    }
    for bad in ["", "a", "3-1", "1,", "-2"] {
        assert!(parse_cpuset(bad).is_err(), "{bad}");
    }
    assert!(parse_in("--pids-limit", "x", -1, i64::MAX).is_err());
    assert!(parse_in("--blkio-weight", "5", 10, 1000).is_err());
}

#[test]
fn ignore_limits_keeps_what_the_controllers_can_enforce() {
    let r =
        Resources { memory: Some(64 << 20), cpuset_cpus: Some("0".into()), pids_limit: Some(5), ..Default::default() };
    let kept = r.enforceable(&["memory".to_string(), "pids".to_string()]);
    assert_eq!(kept, Resources { memory: Some(64 << 20), pids_limit: Some(5), ..Default::default() });
}

#[test]
fn update_merges_only_what_is_given() {
    let mut r = Resources { memory: Some(64 << 20), cpu_shares: Some(512), ..Default::default() };
    r.merge(&Resources { memory: Some(128 << 20), cpu_weight: Some(50), ..Default::default() });
    assert_eq!(r.memory, Some(128 << 20));
    assert_eq!(r.cpu_weight, Some(50));
    assert_eq!(r.cpu_shares, None);
}
