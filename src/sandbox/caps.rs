//! Capabilities: the set the container keeps (Podman's 11 defaults, `--cap-add`/`--cap-drop`,
//! `--privileged` = all), resolved in the parent; applied by the container init just before
//! exec. The capabilities are those of the container's user namespace: even "all" grants
//! nothing over the host.

use anyhow::{bail, Result};

use crate::sys;

/// Capability names and numbers from linux/capability.h.
pub const NAMES: [(&str, u8); 41] = [
    ("CHOWN", 0),
    ("DAC_OVERRIDE", 1),
    ("DAC_READ_SEARCH", 2),
    ("FOWNER", 3),
    ("FSETID", 4),
    ("KILL", 5),
    ("SETGID", 6),
    ("SETUID", 7),
    ("SETPCAP", 8),
    ("LINUX_IMMUTABLE", 9),
    ("NET_BIND_SERVICE", 10),
    ("NET_BROADCAST", 11),
    ("NET_ADMIN", 12),
    ("NET_RAW", 13),
    ("IPC_LOCK", 14),
    ("IPC_OWNER", 15),
    ("SYS_MODULE", 16),
    ("SYS_RAWIO", 17),
    ("SYS_CHROOT", 18),
    ("SYS_PTRACE", 19),
    ("SYS_PACCT", 20),
    ("SYS_ADMIN", 21),
    ("SYS_BOOT", 22),
    ("SYS_NICE", 23),
    ("SYS_RESOURCE", 24),
    ("SYS_TIME", 25),
    ("SYS_TTY_CONFIG", 26),
    ("MKNOD", 27),
    ("LEASE", 28),
    ("AUDIT_WRITE", 29),
    ("AUDIT_CONTROL", 30),
    ("SETFCAP", 31),
    ("MAC_OVERRIDE", 32),
    ("MAC_ADMIN", 33),
    ("SYSLOG", 34),
    ("WAKE_ALARM", 35),
    ("BLOCK_SUSPEND", 36),
    ("AUDIT_READ", 37),
    ("PERFMON", 38),
    ("BPF", 39),
    ("CHECKPOINT_RESTORE", 40),
];

/// Podman's default set for containers.
pub const DEFAULT: [&str; 11] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// `CAP_SYS_ADMIN`, which the seccomp profile consults.
pub const SYS_ADMIN: u8 = 21;

/// The number of a capability name (`net_raw`, `CAP_NET_RAW`).
pub fn number(name: &str) -> Option<u8> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    NAMES.iter().find(|(n, _)| *n == bare).map(|&(_, v)| v)
}

/// The final set: defaults (or all with `privileged`), then Docker's order — `ALL` in add grants
/// everything, `ALL` in drop starts from nothing, then adds, then drops.
pub fn resolve(add: &[String], drop: &[String], privileged: bool) -> Result<Vec<u8>> {
    let all: Vec<u8> = NAMES.iter().map(|&(_, v)| v).collect();
    let parse = |list: &[String]| -> Result<(bool, Vec<u8>)> {
        let mut out = Vec::new();
        let mut has_all = false;
        for name in list {
            if name.eq_ignore_ascii_case("ALL") {
                has_all = true;
            } else {
                match number(name) {
                    Some(n) => out.push(n),
                    None => bail!("capability `{name}`: unknown (expected a name such as NET_RAW or CAP_NET_RAW)"),
                }
            }
        }
        Ok((has_all, out))
    };
    let (add_all, adds) = parse(add)?;
    let (drop_all, drops) = parse(drop)?;
    let mut set: Vec<u8> = if privileged || add_all {
        all
    } else if drop_all {
        Vec::new()
    } else {
        DEFAULT.iter().filter_map(|n| number(n)).collect()
    };
    set.extend(adds);
    if !privileged {
        set.retain(|c| !drops.contains(c));
    }
    set.sort_unstable();
    set.dedup();
    Ok(set)
}

/// The bit mask of a set.
pub fn mask(set: &[u8]) -> u64 {
    set.iter().fold(0, |m, &c| m | (1u64 << c))
}

/// Drops everything outside `set` from the bounding set. Needs CAP_SETPCAP, so it runs while
/// the init is still root in its namespace, before changing user.
pub fn limit_bounding(set: &[u8]) -> Result<()> {
    for cap in 0..64u8 {
        if !sys::cap_supported(cap) {
            break;
        }
        if !set.contains(&cap) {
            sys::capbset_drop(cap).map_err(|e| anyhow::anyhow!("drop capability {cap} from the bounding set: {e}"))?;
        }
    }
    Ok(())
}

/// Sets effective = permitted = `set` (as far as the kernel knows them), inheritable and ambient
/// empty. Called after the user change (with keep-caps), so the exec rules then give root the
/// bounding set and any other user nothing, as Docker does.
pub fn apply(set: &[u8]) -> Result<()> {
    let known: Vec<u8> = set.iter().copied().filter(|&c| sys::cap_supported(c)).collect();
    let m = mask(&known);
    sys::clear_ambient_caps().map_err(|e| anyhow::anyhow!("clear ambient capabilities: {e}"))?;
    sys::capset(sys::CapSets { effective: m, permitted: m, inheritable: 0 })
        .map_err(|e| anyhow::anyhow!("set capabilities: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn default_mask_is_podmans() {
        assert_eq!(mask(&resolve(&[], &[], false).unwrap()), 0x8004_05fb);
    }

    #[test]
    fn table() {
        let cases: &[(&[&str], &[&str], bool, u64)] = &[
            (&["NET_RAW"], &[], false, 0x8004_05fb | 1 << 13),
            (&["cap_net_raw"], &["CHOWN"], false, (0x8004_05fb | 1 << 13) & !1),
            (&[], &["ALL"], false, 0),
            (&["KILL"], &["ALL"], false, 1 << 5),
            (&["ALL"], &["KILL"], false, ((1u64 << 41) - 1) & !(1 << 5)),
            (&[], &["ALL"], true, (1u64 << 41) - 1),
        ];
        for (add, drop, privileged, want) in cases {
            let got = mask(&resolve(&s(add), &s(drop), *privileged).unwrap());
            assert_eq!(got, *want, "add {add:?} drop {drop:?}");
        }
        let err = resolve(&s(&["NET_BOGUS"]), &[], false).unwrap_err().to_string();
        assert!(err.contains("NET_BOGUS"), "{err}");
    }
}
