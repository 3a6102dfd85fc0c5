//! The container's seccomp filter, with the semantics of Docker's default profile.
//!
//! Runs in the container's init, last thing before `execve` of the payload: after mounts,
//! pivot_root and capability drops, so none of rl's own setup is filtered; installing also
//! sets `no_new_privs`. The program is compiled from the container's final bounding set
//! (Docker gates syscalls on capabilities: `mount` and `unshare` need CAP_SYS_ADMIN, `reboot`
//! CAP_SYS_BOOT, …) and it covers what the init itself still calls between install and exec
//! (close_range, rt_sigprocmask, execve, write, exit_group: all on Docker's list).
//!
//! Why Docker's profile: images are built and tested against it, so a program that runs under
//! Docker runs here, and what Docker refuses (keyctl, which is not namespaced; userfaultfd;
//! kexec; module loading without the capability) is refused here too.
//!
//! - Anything not listed returns EPERM, not a kill: programs probe optional syscalls and cope
//!   with an error, and EPERM is what they would get from a missing capability.
//! - clone3 returns ENOSYS without CAP_SYS_ADMIN. Its flags live in a struct in memory, which
//!   seccomp cannot read, so it cannot get clone's "no new namespaces" rule; ENOSYS (not
//!   EPERM) is what makes glibc, musl and Go fall back to clone(2), whose flags are checked.
//! - A call from another architecture (i386 `int 0x80`, arm32 compat) kills the process:
//!   syscall numbers differ there and the table only knows the native ones. Docker allows
//!   the 32-bit sub-architectures; rl does not run 32-bit payloads under seccomp.
//!
//! `seccompiler` builds the allowlist; it gives one filter a single match action, so the
//! calls answered with their own errno (clone3) go in a few instructions placed in front.
//! The table is in `seccomp_table.rs`.

use std::collections::BTreeMap;
use std::mem::offset_of;

use anyhow::{bail, Context, Result};
use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

#[path = "seccomp_table.rs"]
mod table;

use table::{Action, Arg, Op, When, NONE, NUMBERS, RULES};

/// Builds the filter for the running architecture (x86_64 or aarch64).
///
/// `caps` are capability numbers as in linux/capability.h (CAP_SYS_ADMIN = 21 …): the
/// container's final bounding set. Takes about 0.1 ms (release build), so no caching.
pub fn default_filter(caps: &[u8]) -> Result<BpfProgram> {
    let arch = Arch::from_name(std::env::consts::ARCH)?;
    compile(arch, &plan(caps)?)
}

/// Installs `prog` on the calling thread; children and exec'd programs inherit it.
///
/// `seccompiler::apply_filter` sets `PR_SET_NO_NEW_PRIVS` itself before `seccomp(2)`, so this
/// works without CAP_SYS_ADMIN, and setuid/file-capability binaries in the container gain
/// nothing afterwards.
pub fn install(prog: &BpfProgram) -> Result<()> {
    seccompiler::apply_filter(prog).context("install seccomp filter")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    fn from_name(name: &str) -> Result<Self> {
        match name {
            "x86_64" => Ok(Arch::X86_64),
            "aarch64" => Ok(Arch::Aarch64),
            other => bail!("seccomp: unsupported architecture {other}"),
        }
    }

    fn target(self) -> TargetArch {
        match self {
            Arch::X86_64 => TargetArch::x86_64,
            Arch::Aarch64 => TargetArch::aarch64,
        }
    }

    /// `AUDIT_ARCH_*` from linux/audit.h: `EM_* | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
    fn audit_arch(self) -> u32 {
        let machine = match self {
            Arch::X86_64 => 62,
            Arch::Aarch64 => 183,
        };
        machine | 0x8000_0000 | 0x4000_0000
    }

    /// The syscall number of `name`, or None when this arch has no such syscall.
    fn number(self, name: &str) -> Option<u32> {
        let i = NUMBERS.binary_search_by_key(&name, |row| row.0).ok()?;
        let (_, x86_64, aarch64) = NUMBERS[i];
        let nr = match self {
            Arch::X86_64 => x86_64,
            Arch::Aarch64 => aarch64,
        };
        (nr != NONE).then_some(nr)
    }
}

/// What the filter does with one syscall once the capability gates are decided.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Verdict {
    Allow,
    /// Allowed when one of the argument sets holds entirely.
    AllowIf(Vec<&'static [Arg]>),
    Errno(i32),
}

impl When {
    fn holds(self, caps: &[u8]) -> bool {
        match self {
            When::Always => true,
            When::Cap(cap) => caps.contains(&cap),
            When::NoCap(cap) => !caps.contains(&cap),
        }
    }
}

/// Resolves the table for one capability set, by name; syscalls absent from the plan get
/// EPERM.
fn plan(caps: &[u8]) -> Result<BTreeMap<&'static str, Verdict>> {
    let mut plan = BTreeMap::new();
    for rule in RULES.iter().filter(|rule| rule.when.holds(caps)) {
        for &name in rule.names {
            let verdict = match (plan.remove(name), rule.action, rule.args) {
                (None | Some(Verdict::Allow | Verdict::AllowIf(_)), Action::Allow, [])
                | (Some(Verdict::Allow), Action::Allow, _) => Verdict::Allow,
                (None, Action::Allow, args) => Verdict::AllowIf(vec![args]),
                (Some(Verdict::AllowIf(mut sets)), Action::Allow, args) => {
                    sets.push(args);
                    Verdict::AllowIf(sets)
                }
                (None, Action::Errno(errno), []) => Verdict::Errno(errno),
                (earlier, action, _) => {
                    bail!("seccomp table: `{name}` has conflicting rules ({earlier:?}, then {action:?})")
                }
            };
            plan.insert(name, verdict);
        }
    }
    Ok(plan)
}

/// The kernel refuses longer programs (BPF_MAXINSNS).
const BPF_MAXINSNS: usize = 4096;

fn compile(arch: Arch, plan: &BTreeMap<&'static str, Verdict>) -> Result<BpfProgram> {
    let mut allowed: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    let mut errnos = Vec::new();
    for (name, verdict) in plan {
        // The profile is shared by several arches: a name this one lacks is simply skipped.
        let Some(nr) = arch.number(name) else {
            continue;
        };
        match verdict {
            Verdict::Allow => {
                allowed.insert(nr.into(), Vec::new());
            }
            Verdict::AllowIf(sets) => {
                let rules = sets.iter().map(|args| seccomp_rule(args)).collect::<Result<_>>();
                allowed.insert(nr.into(), rules.with_context(|| format!("seccomp rule for `{name}`"))?);
            }
            Verdict::Errno(errno) => errnos.push((nr, *errno)),
        }
    }

    let allowlist =
        SeccompFilter::new(allowed, SeccompAction::Errno(libc::EPERM as u32), SeccompAction::Allow, arch.target())
            .and_then(BpfProgram::try_from)
            .context("compile seccomp filter")?;

    let mut prog = errno_prefix(arch, &errnos);
    prog.extend(allowlist);
    if prog.len() > BPF_MAXINSNS {
        bail!("compile seccomp filter: {} instructions, the kernel takes at most {BPF_MAXINSNS}", prog.len());
    }
    Ok(prog)
}

fn seccomp_rule(args: &[Arg]) -> Result<SeccompRule> {
    let conditions = args
        .iter()
        .map(|arg| {
            let (op, value) = match arg.op {
                Op::Eq(v) => (SeccompCmpOp::Eq, v),
                Op::Lt(v) => (SeccompCmpOp::Lt, v),
                Op::Gt(v) => (SeccompCmpOp::Gt, v),
                Op::MaskedEq { mask, value } => (SeccompCmpOp::MaskedEq(mask.into()), value),
            };
            // Dword: compare the low 32 bits, which is all the kernel reads (see `Arg`).
            SeccompCondition::new(arg.index, SeccompCmpArgLen::Dword, op, value.into())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SeccompRule::new(conditions)?)
}

const LD_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
const NR_OFFSET: u32 = offset_of!(libc::seccomp_data, nr) as u32;
const ARCH_OFFSET: u32 = offset_of!(libc::seccomp_data, arch) as u32;

/// Returns `errno` for each `(nr, errno)`, and falls through to the allowlist for everything
/// else. Checks the arch first: a syscall number means nothing without it.
fn errno_prefix(arch: Arch, errnos: &[(u32, i32)]) -> Vec<sock_filter> {
    if errnos.is_empty() {
        return Vec::new();
    }
    let insn = |code, k, jt, jf| sock_filter { code, jt, jf, k };
    let mut prog = vec![
        insn(LD_ABS, ARCH_OFFSET, 0, 0),
        insn(JEQ_K, arch.audit_arch(), 1, 0),
        insn(RET_K, libc::SECCOMP_RET_KILL_PROCESS, 0, 0),
        insn(LD_ABS, NR_OFFSET, 0, 0),
    ];
    for &(nr, errno) in errnos {
        prog.push(insn(JEQ_K, nr, 0, 1));
        let data = errno as u32 & libc::SECCOMP_RET_DATA;
        prog.push(insn(RET_K, libc::SECCOMP_RET_ERRNO | data, 0, 0));
    }
    prog
}

#[cfg(test)]
mod tests {
    use super::table::*;
    use super::*;
    use std::collections::BTreeSet;

    /// Docker's default capability set (moby's oci/caps/defaults.go).
    const DOCKER_CAPS: &[u8] = &[0, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];

    fn with(extra: u8) -> Vec<u8> {
        let mut caps = DOCKER_CAPS.to_vec();
        caps.push(extra);
        caps
    }

    #[test]
    fn table_names_are_unique_and_all_have_numbers() {
        for rule in RULES {
            let unique: BTreeSet<_> = rule.names.iter().collect();
            assert_eq!(unique.len(), rule.names.len(), "duplicate name in {rule:?}");
        }
        for pair in NUMBERS.windows(2) {
            assert!(pair[0].0 < pair[1].0, "NUMBERS not sorted at {}", pair[1].0);
        }
        let named: BTreeSet<_> = RULES.iter().flat_map(|rule| rule.names.iter().copied()).collect();
        let numbered: BTreeSet<_> = NUMBERS.iter().map(|row| row.0).collect();
        assert_eq!(named, numbered, "every rule name needs a number row and vice versa");
        for (name, x86_64, aarch64) in NUMBERS {
            assert!(*x86_64 != NONE || *aarch64 != NONE, "`{name}` exists nowhere");
        }
    }

    #[test]
    fn numbers_match_libc_for_this_arch() {
        let arch = Arch::from_name(std::env::consts::ARCH).unwrap();
        macro_rules! check {
            ($($name:ident)*) => {$(
                let name = &stringify!($name)[4..];
                assert_eq!(arch.number(name), Some(libc::$name as u32), "{name}");
            )*};
        }
        check!(SYS_read SYS_write SYS_execve SYS_execveat SYS_exit_group SYS_close_range
            SYS_rt_sigprocmask SYS_rt_sigaction SYS_clone SYS_clone3 SYS_unshare SYS_setns
            SYS_mount SYS_umount2 SYS_personality SYS_socket SYS_ptrace SYS_bpf SYS_chroot
            SYS_reboot SYS_open_by_handle_at SYS_name_to_handle_at SYS_newfstatat SYS_statx
            SYS_pidfd_getfd SYS_openat2 SYS_landlock_restrict_self SYS_memfd_secret);
        #[cfg(target_arch = "x86_64")]
        check!(SYS_open SYS_arch_prctl SYS_modify_ldt SYS_iopl SYS_epoll_wait_old);
    }

    #[test]
    fn default_caps_refuse_what_docker_refuses() {
        let plan = plan(DOCKER_CAPS).unwrap();
        for name in [
            "keyctl",
            "add_key",
            "request_key",
            "unshare",
            "mount",
            "umount2",
            "setns",
            "pivot_root",
            "bpf",
            "perf_event_open",
            "userfaultfd",
            "kexec_load",
            "init_module",
            "reboot",
            "sethostname",
            "open_by_handle_at",
            "io_uring_setup",
            "settimeofday",
            "syslog",
            "kcmp",
            "fsopen",
            "move_mount",
        ] {
            assert!(!plan.contains_key(name), "`{name}` must get EPERM by default");
        }
        for name in ["read", "execve", "close_range", "chroot", "ptrace", "name_to_handle_at"] {
            assert_eq!(plan.get(name), Some(&Verdict::Allow), "{name}");
        }
        assert_eq!(plan["clone3"], Verdict::Errno(libc::ENOSYS));
        let Verdict::AllowIf(clone) = &plan["clone"] else { panic!("clone: {:?}", plan["clone"]) };
        assert_eq!(clone.len(), 1);
        assert_eq!(clone[0][0].op, Op::MaskedEq { mask: 0x7e02_0000, value: 0 });
        let Verdict::AllowIf(personality) = &plan["personality"] else { panic!() };
        let values: Vec<_> = personality.iter().map(|args| args[0].op).collect();
        let expected = [0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff].map(Op::Eq);
        assert_eq!(values, expected);
        let Verdict::AllowIf(socket) = &plan["socket"] else { panic!() };
        assert_eq!(socket.len(), 3);
    }

    #[test]
    fn each_capability_opens_its_docker_group() {
        let cases: &[(u8, &[&str])] = &[
            (
                CAP_SYS_ADMIN,
                &[
                    "mount",
                    "umount2",
                    "unshare",
                    "setns",
                    "clone",
                    "clone3",
                    "bpf",
                    "fanotify_init",
                    "lookup_dcookie",
                    "perf_event_open",
                    "quotactl",
                    "sethostname",
                    "setdomainname",
                    "syslog",
                    "fsopen",
                    "move_mount",
                    "open_tree",
                ],
            ),
            (CAP_DAC_READ_SEARCH, &["open_by_handle_at"]),
            (CAP_SYS_BOOT, &["reboot"]),
            (CAP_SYS_MODULE, &["init_module", "finit_module", "delete_module"]),
            (CAP_SYS_PACCT, &["acct"]),
            (CAP_SYS_PTRACE, &["kcmp", "pidfd_getfd", "process_madvise"]),
            (CAP_SYS_RAWIO, &["iopl", "ioperm"]),
            (CAP_SYS_TIME, &["settimeofday", "clock_settime"]),
            (CAP_SYS_TTY_CONFIG, &["vhangup"]),
            (CAP_SYS_NICE, &["get_mempolicy", "mbind", "set_mempolicy"]),
            (CAP_SYSLOG, &["syslog"]),
            (CAP_BPF, &["bpf"]),
            (CAP_PERFMON, &["perf_event_open"]),
        ];
        let without = plan(&[]).unwrap();
        for &(cap, names) in cases {
            let with_cap = plan(&[cap]).unwrap();
            for name in names {
                assert_eq!(with_cap.get(name), Some(&Verdict::Allow), "{name} with cap {cap}");
                assert_ne!(without.get(name), Some(&Verdict::Allow), "{name} without caps");
            }
        }
        // Not even CAP_SYS_ADMIN opens these: Docker never lists them.
        let all = plan(&(0..=40).collect::<Vec<_>>()).unwrap();
        for name in ["keyctl", "add_key", "request_key", "pivot_root", "userfaultfd", "kexec_load"] {
            assert!(!all.contains_key(name), "{name}");
        }
    }

    #[test]
    fn every_cap_set_compiles_for_both_arches() {
        let sets: Vec<Vec<u8>> = [vec![], DOCKER_CAPS.to_vec(), (0..=40).collect()]
            .into_iter()
            .chain((0..=40).map(|cap| vec![cap]))
            .collect();
        for arch in [Arch::X86_64, Arch::Aarch64] {
            for caps in &sets {
                let prog = compile(arch, &plan(caps).unwrap()).unwrap();
                assert!(prog.len() <= BPF_MAXINSNS, "{arch:?} {caps:?}: {}", prog.len());
            }
        }
        assert!(Arch::Aarch64.number("open").is_none());
        assert_eq!(Arch::Aarch64.number("openat"), Some(56));
    }

    #[test]
    fn other_arches_are_an_error() {
        let err = Arch::from_name("riscv64").unwrap_err();
        assert_eq!(err.to_string(), "seccomp: unsupported architecture riscv64");
    }

    /// Runs `syscall(nr, args…)` in a fresh perl and returns its errno, or 0 on success.
    /// Spawning goes through glibc's posix_spawn, which tries clone3 first.
    fn errno_of(nr: i64, args: &[i64]) -> std::io::Result<i32> {
        let script = "my @a = map { $_ + 0 } @ARGV; print syscall($a[0], @a[1..$#a]) == -1 ? $! + 0 : 0";
        let out = std::process::Command::new("perl")
            .args(["-e", script, &nr.to_string()])
            .args(args.iter().map(i64::to_string))
            .output()?;
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse().expect("perl output"))
    }

    /// Whether perl can probe syscalls here (perl-base is Essential on Debian, but not
    /// everywhere).
    fn have_perl() -> bool {
        match errno_of(libc::SYS_getpid, &[]) {
            Ok(errno) => errno == 0,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                eprintln!("skipped: perl not found, syscall probes in a child not run");
                false
            }
            Err(e) => panic!("spawn perl: {e}"),
        }
    }

    /// Seccomp and no_new_privs are per thread: only the spawned thread and its children are
    /// filtered, the rest of the test process is not.
    fn in_filtered_thread(caps: Vec<u8>, check: impl FnOnce() + Send + 'static) {
        let prog = default_filter(&caps).unwrap();
        std::thread::spawn(move || {
            install(&prog).unwrap();
            check();
        })
        .join()
        .expect("filtered thread");
    }

    #[test]
    fn filter_holds_in_a_real_thread() {
        use nix::errno::Errno;
        use nix::sched::{unshare, CloneFlags};
        // A multi-threaded process gets EINVAL for CLONE_NEWUSER before any permission check,
        // so EPERM under the filter can only come from the filter.
        assert_eq!(unshare(CloneFlags::CLONE_NEWUSER), Err(Errno::EINVAL));
        let perl = have_perl();
        if perl {
            assert_eq!(errno_of(libc::SYS_clone3, &[0, 0]).unwrap(), libc::EINVAL);
        }
        let unshare_cmd =
            || std::process::Command::new("unshare").args(["-U", "true"]).stderr(std::process::Stdio::null()).status();
        let unshare_works = unshare_cmd().is_ok_and(|status| status.success());

        in_filtered_thread(DOCKER_CAPS.to_vec(), move || {
            assert_eq!(unshare(CloneFlags::CLONE_NEWUSER), Err(Errno::EPERM));
            assert!(nix::unistd::getpid().as_raw() > 0);
            if perl {
                let probe =
                    |nr, args: &[i64]| errno_of(nr, args).expect("spawn perl (clone3 must give ENOSYS, not EPERM)");
                assert_eq!(probe(libc::SYS_clone3, &[0, 0]), libc::ENOSYS);
                // keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)
                assert_eq!(probe(libc::SYS_keyctl, &[0, -3, 0]), libc::EPERM);
                assert_eq!(probe(libc::SYS_unshare, &[libc::CLONE_NEWUSER.into()]), libc::EPERM);
                assert_eq!(probe(libc::SYS_personality, &[0xffff_ffff]), 0);
                // ADDR_NO_RANDOMIZE
                assert_eq!(probe(libc::SYS_personality, &[0x0004_0000]), libc::EPERM);
                assert_eq!(probe(libc::SYS_socket, &[libc::AF_UNIX.into(), 1, 0]), 0);
                assert_eq!(probe(libc::SYS_socket, &[libc::AF_VSOCK.into(), 1, 0]), libc::EPERM);
                // AF_ALG with junk in the high bits: the kernel reads an int.
                assert_eq!(probe(libc::SYS_socket, &[0x1_0000_0026, 5, 0]), libc::EPERM);
            }
            if unshare_works {
                let status = unshare_cmd().expect("spawn unshare(1)");
                assert!(!status.success(), "`unshare -U true` ran under the filter");
            } else {
                eprintln!("skipped: `unshare -U true` fails here even without the filter");
            }
        });
    }

    #[test]
    fn sys_admin_filter_lets_namespaces_through_in_a_real_thread() {
        use nix::errno::Errno;
        use nix::sched::{unshare, CloneFlags};
        let perl = have_perl();
        in_filtered_thread(with(CAP_SYS_ADMIN), move || {
            // The kernel's own answers again: EINVAL for a threaded process, EINVAL for a
            // clone3 without arguments.
            assert_eq!(unshare(CloneFlags::CLONE_NEWUSER), Err(Errno::EINVAL));
            if perl {
                assert_eq!(errno_of(libc::SYS_clone3, &[0, 0]).unwrap(), libc::EINVAL);
                assert_eq!(errno_of(libc::SYS_keyctl, &[0, -3, 0]).unwrap(), libc::EPERM);
            }
        });
    }
}
