//! Docker's default seccomp profile as data, for `seccomp.rs` (the container's init compiles
//! it right before exec). Transcribed from moby/profiles `seccomp/default.json` v0.2.3 (as
//! vendored by moby in May 2026): same groups, same capability gates, same argument rules.
//!
//! Left out on purpose: names that exist only on 32-bit or other architectures (`chown32`,
//! `*_time64`, `socketcall`, `mmap2`, `arm_*`, `s390_*`, `riscv_*`, …). rl builds filters for
//! x86_64 and aarch64 only, and the filter's architecture check kills compat-mode (i386, arm32)
//! calls before any name matters. Names that exist on only one of the two (`open`,
//! `arch_prctl`, `uretprobe`) stay; `NUMBERS` has no entry for the other arch and the compiler
//! skips them there.

/// Capability numbers from linux/capability.h, for the gates below.
pub(super) const CAP_DAC_READ_SEARCH: u8 = 2;
pub(super) const CAP_SYS_MODULE: u8 = 16;
pub(super) const CAP_SYS_RAWIO: u8 = 17;
pub(super) const CAP_SYS_CHROOT: u8 = 18;
pub(super) const CAP_SYS_PTRACE: u8 = 19;
pub(super) const CAP_SYS_PACCT: u8 = 20;
pub(super) const CAP_SYS_ADMIN: u8 = 21;
pub(super) const CAP_SYS_BOOT: u8 = 22;
pub(super) const CAP_SYS_NICE: u8 = 23;
pub(super) const CAP_SYS_TIME: u8 = 25;
pub(super) const CAP_SYS_TTY_CONFIG: u8 = 26;
pub(super) const CAP_SYSLOG: u8 = 34;
pub(super) const CAP_PERFMON: u8 = 38;
pub(super) const CAP_BPF: u8 = 39;

/// Address families from linux/socket.h (same on every arch).
const AF_ALG: u32 = 38;
const AF_NFC: u32 = 39;
const AF_VSOCK: u32 = 40;

/// The namespace flags of clone(2): `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS |
/// CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET` = 0x7e02_0000.
const CLONE_NAMESPACES: u32 = 0x0002_0000 | 0x0200_0000 | 0x7c00_0000;

/// When a rule applies, judged against the container's bounding set, as Docker judges its
/// `includes.caps` / `excludes.caps`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum When {
    Always,
    Cap(u8),
    NoCap(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Action {
    Allow,
    Errno(i32),
}

/// A test on the low 32 bits of argument `index`. The kernel itself reads these arguments as
/// 32-bit values (`int family`, `unsigned int personality`, `lower_32_bits(clone_flags)`);
/// libseccomp compares all 64 bits, so with Docker's profile `socket(0x1_0000_0026, …)`
/// passes `family > 40` while the kernel creates an AF_ALG socket. Comparing what the kernel
/// reads closes that gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Arg {
    pub index: u8,
    pub op: Op,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    Eq(u32),
    Lt(u32),
    Gt(u32),
    /// `arg & mask == value`
    MaskedEq {
        mask: u32,
        value: u32,
    },
}

#[derive(Debug)]
pub(super) struct Rule {
    pub names: &'static [&'static str],
    pub when: When,
    pub action: Action,
    /// All must hold; empty means any arguments.
    pub args: &'static [Arg],
}

const fn allow(names: &'static [&'static str]) -> Rule {
    Rule { names, when: When::Always, action: Action::Allow, args: &[] }
}

const fn allow_with(cap: u8, names: &'static [&'static str]) -> Rule {
    Rule { names, when: When::Cap(cap), action: Action::Allow, args: &[] }
}

const fn allow_if(names: &'static [&'static str], args: &'static [Arg]) -> Rule {
    Rule { names, when: When::Always, action: Action::Allow, args }
}

/// Docker's profile in its own order. A syscall may appear in several rules; it is allowed when
/// any rule that applies allows it.
#[rustfmt::skip]
pub(super) const RULES: &[Rule] = &[
    allow(&[
        "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget",
        "capset", "chdir", "chmod", "chown", "clock_adjtime", "clock_getres", "clock_gettime",
        "clock_nanosleep", "close", "close_range", "connect", "copy_file_range", "creat", "dup",
        "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old",
        "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2",
        "execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64",
        "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown",
        "fchownat", "fcntl", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork",
        "fremovexattr", "fsetxattr", "fstat", "fstatfs", "fsync", "ftruncate", "futex",
        "futex_requeue", "futex_wait", "futex_waitv", "futex_wake", "futimesat", "getcpu", "getcwd",
        "getdents", "getdents64", "getegid", "geteuid", "getgid", "getgroups", "getitimer",
        "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom",
        "getresgid", "getresuid", "getrlimit", "get_robust_list", "getrusage", "getsid",
        "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid",
        "getxattr", "getxattrat", "inotify_add_watch", "inotify_init", "inotify_init1",
        "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents",
        "ioprio_get", "ioprio_set", "io_setup", "io_submit", "kill", "landlock_add_rule",
        "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lgetxattr", "link",
        "linkat", "listen", "listmount", "listxattr", "listxattrat", "llistxattr", "lremovexattr",
        "lseek", "lsetxattr", "lstat", "madvise", "map_shadow_stack", "membarrier", "memfd_create",
        "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2",
        "mlockall", "mmap", "mprotect", "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive",
        "mq_timedsend", "mq_unlink", "mremap", "mseal", "msgctl", "msgget", "msgrcv", "msgsnd",
        "msync", "munlock", "munlockall", "munmap", "name_to_handle_at", "nanosleep", "newfstatat",
        "open", "openat", "openat2", "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2",
        "pkey_alloc", "pkey_free", "pkey_mprotect", "poll", "ppoll", "prctl", "pread64", "preadv",
        "preadv2", "prlimit64", "process_mrelease", "pselect6", "pwrite64", "pwritev", "pwritev2",
        "read", "readahead", "readlink", "readlinkat", "readv", "recvfrom", "recvmmsg", "recvmsg",
        "remap_file_pages", "removexattr", "removexattrat", "rename", "renameat", "renameat2",
        "restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask",
        "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_tgsigqueueinfo",
        "sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max",
        "sched_get_priority_min", "sched_getscheduler", "sched_rr_get_interval",
        "sched_setaffinity", "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield",
        "seccomp", "select", "semctl", "semget", "semop", "semtimedop", "sendfile", "sendmmsg",
        "sendmsg", "sendto", "setfsgid", "setfsuid", "setgid", "setgroups", "setitimer", "setpgid",
        "setpriority", "setregid", "setresgid", "setresuid", "setreuid", "setrlimit",
        "set_robust_list", "setsid", "setsockopt", "set_thread_area", "set_tid_address", "setuid",
        "setxattr", "setxattrat", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack",
        "signalfd", "signalfd4", "socketpair", "splice", "stat", "statfs", "statmount", "statx",
        "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill",
        "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
        "timer_settime", "timerfd_create", "timerfd_gettime", "timerfd_settime", "times", "tkill",
        "truncate", "umask", "uname", "unlink", "unlinkat", "uretprobe", "utime", "utimensat",
        "utimes", "vfork", "vmsplice", "wait4", "waitid", "write", "writev",
    ]),
    // Docker gates these on kernel >= 4.8, where seccomp is re-checked after a ptracer changes
    // a syscall; older kernels let ptrace bypass the filter. rl needs far newer kernels.
    allow(&["process_vm_readv", "process_vm_writev", "ptrace"]),
    // Every address family except AF_ALG (the kernel crypto API) and AF_VSOCK (host <-> VM).
    allow_if(&["socket"], &[Arg { index: 0, op: Op::Lt(AF_ALG) }]),
    allow_if(&["socket"], &[Arg { index: 0, op: Op::Eq(AF_NFC) }]),
    allow_if(&["socket"], &[Arg { index: 0, op: Op::Gt(AF_VSOCK) }]),
    // PER_LINUX, PER_LINUX | UNAME26, PER_LINUX32, PER_LINUX32 | UNAME26, and 0xffffffff (query).
    allow_if(&["personality"], &[Arg { index: 0, op: Op::Eq(0x0) }]),
    allow_if(&["personality"], &[Arg { index: 0, op: Op::Eq(0x8) }]),
    allow_if(&["personality"], &[Arg { index: 0, op: Op::Eq(0x2_0000) }]),
    allow_if(&["personality"], &[Arg { index: 0, op: Op::Eq(0x2_0008) }]),
    allow_if(&["personality"], &[Arg { index: 0, op: Op::Eq(0xffff_ffff) }]),
    // Docker lists these for amd64/x32/x86 only; they exist on no other arch anyway.
    allow(&["arch_prctl", "modify_ldt"]),
    allow_with(CAP_DAC_READ_SEARCH, &["open_by_handle_at"]),
    allow_with(
        CAP_SYS_ADMIN,
        &[
            "bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick",
            "lookup_dcookie", "lsm_get_self_attr", "lsm_list_modules", "lsm_set_self_attr", "mount",
            "mount_setattr", "move_mount", "open_tree", "perf_event_open", "quotactl",
            "quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount2", "unshare",
        ],
    ),
    // Without CAP_SYS_ADMIN, clone(2) may not create namespaces (flags are argument 0 on x86_64
    // and aarch64; only s390 swaps them).
    Rule {
        names: &["clone"],
        when: When::NoCap(CAP_SYS_ADMIN),
        action: Action::Allow,
        args: &[Arg { index: 0, op: Op::MaskedEq { mask: CLONE_NAMESPACES, value: 0 } }],
    },
    // clone3 passes its flags in memory, which seccomp cannot read, so it cannot get clone's
    // rule. ENOSYS instead of EPERM makes glibc (>= 2.34) and others fall back to clone(2).
    Rule {
        names: &["clone3"],
        when: When::NoCap(CAP_SYS_ADMIN),
        action: Action::Errno(libc::ENOSYS),
        args: &[],
    },
    allow_with(CAP_SYS_BOOT, &["reboot"]),
    allow_with(CAP_SYS_CHROOT, &["chroot"]),
    allow_with(CAP_SYS_MODULE, &["delete_module", "init_module", "finit_module"]),
    allow_with(CAP_SYS_PACCT, &["acct"]),
    allow_with(
        CAP_SYS_PTRACE,
        &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"],
    ),
    allow_with(CAP_SYS_RAWIO, &["iopl", "ioperm"]),
    allow_with(CAP_SYS_TIME, &["settimeofday", "clock_settime"]),
    allow_with(CAP_SYS_TTY_CONFIG, &["vhangup"]),
    allow_with(
        CAP_SYS_NICE,
        &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"],
    ),
    allow_with(CAP_SYSLOG, &["syslog"]),
    allow_with(CAP_BPF, &["bpf"]),
    allow_with(CAP_PERFMON, &["perf_event_open"]),
];

/// Marks a name missing on one arch.
pub(super) const NONE: u32 = u32::MAX;

/// `(name, x86_64 number, aarch64 number)` for every name in `RULES`, sorted by name. From the
/// kernel's arch/x86/entry/syscalls/syscall_64.tbl and include/uapi/asm-generic/unistd.h
/// (v6.13); the numbers are ABI and never change.
#[rustfmt::skip]
pub(super) const NUMBERS: &[(&str, u32, u32)] = &[
    ("accept", 43, 202),                    ("accept4", 288, 242),
    ("access", 21, NONE),                   ("acct", 163, 89),
    ("adjtimex", 159, 171),                 ("alarm", 37, NONE),
    ("arch_prctl", 158, NONE),              ("bind", 49, 200),
    ("bpf", 321, 280),                      ("brk", 12, 214),
    ("cachestat", 451, 451),                ("capget", 125, 90),
    ("capset", 126, 91),                    ("chdir", 80, 49),
    ("chmod", 90, NONE),                    ("chown", 92, NONE),
    ("chroot", 161, 51),                    ("clock_adjtime", 305, 266),
    ("clock_getres", 229, 114),             ("clock_gettime", 228, 113),
    ("clock_nanosleep", 230, 115),          ("clock_settime", 227, 112),
    ("clone", 56, 220),                     ("clone3", 435, 435),
    ("close", 3, 57),                       ("close_range", 436, 436),
    ("connect", 42, 203),                   ("copy_file_range", 326, 285),
    ("creat", 85, NONE),                    ("delete_module", 176, 106),
    ("dup", 32, 23),                        ("dup2", 33, NONE),
    ("dup3", 292, 24),                      ("epoll_create", 213, NONE),
    ("epoll_create1", 291, 20),             ("epoll_ctl", 233, 21),
    ("epoll_ctl_old", 214, NONE),           ("epoll_pwait", 281, 22),
    ("epoll_pwait2", 441, 441),             ("epoll_wait", 232, NONE),
    ("epoll_wait_old", 215, NONE),          ("eventfd", 284, NONE),
    ("eventfd2", 290, 19),                  ("execve", 59, 221),
    ("execveat", 322, 281),                 ("exit", 60, 93),
    ("exit_group", 231, 94),                ("faccessat", 269, 48),
    ("faccessat2", 439, 439),               ("fadvise64", 221, 223),
    ("fallocate", 285, 47),                 ("fanotify_init", 300, 262),
    ("fanotify_mark", 301, 263),            ("fchdir", 81, 50),
    ("fchmod", 91, 52),                     ("fchmodat", 268, 53),
    ("fchmodat2", 452, 452),                ("fchown", 93, 55),
    ("fchownat", 260, 54),                  ("fcntl", 72, 25),
    ("fdatasync", 75, 83),                  ("fgetxattr", 193, 10),
    ("finit_module", 313, 273),             ("flistxattr", 196, 13),
    ("flock", 73, 32),                      ("fork", 57, NONE),
    ("fremovexattr", 199, 16),              ("fsconfig", 431, 431),
    ("fsetxattr", 190, 7),                  ("fsmount", 432, 432),
    ("fsopen", 430, 430),                   ("fspick", 433, 433),
    ("fstat", 5, 80),                       ("fstatfs", 138, 44),
    ("fsync", 74, 82),                      ("ftruncate", 77, 46),
    ("futex", 202, 98),                     ("futex_requeue", 456, 456),
    ("futex_wait", 455, 455),               ("futex_waitv", 449, 449),
    ("futex_wake", 454, 454),               ("futimesat", 261, NONE),
    ("get_mempolicy", 239, 236),            ("get_robust_list", 274, 100),
    ("get_thread_area", 211, NONE),         ("getcpu", 309, 168),
    ("getcwd", 79, 17),                     ("getdents", 78, NONE),
    ("getdents64", 217, 61),                ("getegid", 108, 177),
    ("geteuid", 107, 175),                  ("getgid", 104, 176),
    ("getgroups", 115, 158),                ("getitimer", 36, 102),
    ("getpeername", 52, 205),               ("getpgid", 121, 155),
    ("getpgrp", 111, NONE),                 ("getpid", 39, 172),
    ("getppid", 110, 173),                  ("getpriority", 140, 141),
    ("getrandom", 318, 278),                ("getresgid", 120, 150),
    ("getresuid", 118, 148),                ("getrlimit", 97, 163),
    ("getrusage", 98, 165),                 ("getsid", 124, 156),
    ("getsockname", 51, 204),               ("getsockopt", 55, 209),
    ("gettid", 186, 178),                   ("gettimeofday", 96, 169),
    ("getuid", 102, 174),                   ("getxattr", 191, 8),
    ("getxattrat", 464, 464),               ("init_module", 175, 105),
    ("inotify_add_watch", 254, 27),         ("inotify_init", 253, NONE),
    ("inotify_init1", 294, 26),             ("inotify_rm_watch", 255, 28),
    ("io_cancel", 210, 3),                  ("io_destroy", 207, 1),
    ("io_getevents", 208, 4),               ("io_pgetevents", 333, 292),
    ("io_setup", 206, 0),                   ("io_submit", 209, 2),
    ("ioctl", 16, 29),                      ("ioperm", 173, NONE),
    ("iopl", 172, NONE),                    ("ioprio_get", 252, 31),
    ("ioprio_set", 251, 30),                ("kcmp", 312, 272),
    ("kill", 62, 129),                      ("landlock_add_rule", 445, 445),
    ("landlock_create_ruleset", 444, 444),  ("landlock_restrict_self", 446, 446),
    ("lchown", 94, NONE),                   ("lgetxattr", 192, 9),
    ("link", 86, NONE),                     ("linkat", 265, 37),
    ("listen", 50, 201),                    ("listmount", 458, 458),
    ("listxattr", 194, 11),                 ("listxattrat", 465, 465),
    ("llistxattr", 195, 12),                ("lookup_dcookie", 212, 18),
    ("lremovexattr", 198, 15),              ("lseek", 8, 62),
    ("lsetxattr", 189, 6),                  ("lsm_get_self_attr", 459, 459),
    ("lsm_list_modules", 461, 461),         ("lsm_set_self_attr", 460, 460),
    ("lstat", 6, NONE),                     ("madvise", 28, 233),
    ("map_shadow_stack", 453, 453),         ("mbind", 237, 235),
    ("membarrier", 324, 283),               ("memfd_create", 319, 279),
    ("memfd_secret", 447, 447),             ("mincore", 27, 232),
    ("mkdir", 83, NONE),                    ("mkdirat", 258, 34),
    ("mknod", 133, NONE),                   ("mknodat", 259, 33),
    ("mlock", 149, 228),                    ("mlock2", 325, 284),
    ("mlockall", 151, 230),                 ("mmap", 9, 222),
    ("modify_ldt", 154, NONE),              ("mount", 165, 40),
    ("mount_setattr", 442, 442),            ("move_mount", 429, 429),
    ("mprotect", 10, 226),                  ("mq_getsetattr", 245, 185),
    ("mq_notify", 244, 184),                ("mq_open", 240, 180),
    ("mq_timedreceive", 243, 183),          ("mq_timedsend", 242, 182),
    ("mq_unlink", 241, 181),                ("mremap", 25, 216),
    ("mseal", 462, 462),                    ("msgctl", 71, 187),
    ("msgget", 68, 186),                    ("msgrcv", 70, 188),
    ("msgsnd", 69, 189),                    ("msync", 26, 227),
    ("munlock", 150, 229),                  ("munlockall", 152, 231),
    ("munmap", 11, 215),                    ("name_to_handle_at", 303, 264),
    ("nanosleep", 35, 101),                 ("newfstatat", 262, 79),
    ("open", 2, NONE),                      ("open_by_handle_at", 304, 265),
    ("open_tree", 428, 428),                ("openat", 257, 56),
    ("openat2", 437, 437),                  ("pause", 34, NONE),
    ("perf_event_open", 298, 241),          ("personality", 135, 92),
    ("pidfd_getfd", 438, 438),              ("pidfd_open", 434, 434),
    ("pidfd_send_signal", 424, 424),        ("pipe", 22, NONE),
    ("pipe2", 293, 59),                     ("pkey_alloc", 330, 289),
    ("pkey_free", 331, 290),                ("pkey_mprotect", 329, 288),
    ("poll", 7, NONE),                      ("ppoll", 271, 73),
    ("prctl", 157, 167),                    ("pread64", 17, 67),
    ("preadv", 295, 69),                    ("preadv2", 327, 286),
    ("prlimit64", 302, 261),                ("process_madvise", 440, 440),
    ("process_mrelease", 448, 448),         ("process_vm_readv", 310, 270),
    ("process_vm_writev", 311, 271),        ("pselect6", 270, 72),
    ("ptrace", 101, 117),                   ("pwrite64", 18, 68),
    ("pwritev", 296, 70),                   ("pwritev2", 328, 287),
    ("quotactl", 179, 60),                  ("quotactl_fd", 443, 443),
    ("read", 0, 63),                        ("readahead", 187, 213),
    ("readlink", 89, NONE),                 ("readlinkat", 267, 78),
    ("readv", 19, 65),                      ("reboot", 169, 142),
    ("recvfrom", 45, 207),                  ("recvmmsg", 299, 243),
    ("recvmsg", 47, 212),                   ("remap_file_pages", 216, 234),
    ("removexattr", 197, 14),               ("removexattrat", 466, 466),
    ("rename", 82, NONE),                   ("renameat", 264, 38),
    ("renameat2", 316, 276),                ("restart_syscall", 219, 128),
    ("rmdir", 84, NONE),                    ("rseq", 334, 293),
    ("rt_sigaction", 13, 134),              ("rt_sigpending", 127, 136),
    ("rt_sigprocmask", 14, 135),            ("rt_sigqueueinfo", 129, 138),
    ("rt_sigreturn", 15, 139),              ("rt_sigsuspend", 130, 133),
    ("rt_sigtimedwait", 128, 137),          ("rt_tgsigqueueinfo", 297, 240),
    ("sched_get_priority_max", 146, 125),   ("sched_get_priority_min", 147, 126),
    ("sched_getaffinity", 204, 123),        ("sched_getattr", 315, 275),
    ("sched_getparam", 143, 121),           ("sched_getscheduler", 145, 120),
    ("sched_rr_get_interval", 148, 127),    ("sched_setaffinity", 203, 122),
    ("sched_setattr", 314, 274),            ("sched_setparam", 142, 118),
    ("sched_setscheduler", 144, 119),       ("sched_yield", 24, 124),
    ("seccomp", 317, 277),                  ("select", 23, NONE),
    ("semctl", 66, 191),                    ("semget", 64, 190),
    ("semop", 65, 193),                     ("semtimedop", 220, 192),
    ("sendfile", 40, 71),                   ("sendmmsg", 307, 269),
    ("sendmsg", 46, 211),                   ("sendto", 44, 206),
    ("set_mempolicy", 238, 237),            ("set_mempolicy_home_node", 450, 450),
    ("set_robust_list", 273, 99),           ("set_thread_area", 205, NONE),
    ("set_tid_address", 218, 96),           ("setdomainname", 171, 162),
    ("setfsgid", 123, 152),                 ("setfsuid", 122, 151),
    ("setgid", 106, 144),                   ("setgroups", 116, 159),
    ("sethostname", 170, 161),              ("setitimer", 38, 103),
    ("setns", 308, 268),                    ("setpgid", 109, 154),
    ("setpriority", 141, 140),              ("setregid", 114, 143),
    ("setresgid", 119, 149),                ("setresuid", 117, 147),
    ("setreuid", 113, 145),                 ("setrlimit", 160, 164),
    ("setsid", 112, 157),                   ("setsockopt", 54, 208),
    ("settimeofday", 164, 170),             ("setuid", 105, 146),
    ("setxattr", 188, 5),                   ("setxattrat", 463, 463),
    ("shmat", 30, 196),                     ("shmctl", 31, 195),
    ("shmdt", 67, 197),                     ("shmget", 29, 194),
    ("shutdown", 48, 210),                  ("sigaltstack", 131, 132),
    ("signalfd", 282, NONE),                ("signalfd4", 289, 74),
    ("socket", 41, 198),                    ("socketpair", 53, 199),
    ("splice", 275, 76),                    ("stat", 4, NONE),
    ("statfs", 137, 43),                    ("statmount", 457, 457),
    ("statx", 332, 291),                    ("symlink", 88, NONE),
    ("symlinkat", 266, 36),                 ("sync", 162, 81),
    ("sync_file_range", 277, 84),           ("syncfs", 306, 267),
    ("sysinfo", 99, 179),                   ("syslog", 103, 116),
    ("tee", 276, 77),                       ("tgkill", 234, 131),
    ("time", 201, NONE),                    ("timer_create", 222, 107),
    ("timer_delete", 226, 111),             ("timer_getoverrun", 225, 109),
    ("timer_gettime", 224, 108),            ("timer_settime", 223, 110),
    ("timerfd_create", 283, 85),            ("timerfd_gettime", 287, 87),
    ("timerfd_settime", 286, 86),           ("times", 100, 153),
    ("tkill", 200, 130),                    ("truncate", 76, 45),
    ("umask", 95, 166),                     ("umount2", 166, 39),
    ("uname", 63, 160),                     ("unlink", 87, NONE),
    ("unlinkat", 263, 35),                  ("unshare", 272, 97),
    ("uretprobe", 335, NONE),               ("utime", 132, NONE),
    ("utimensat", 280, 88),                 ("utimes", 235, NONE),
    ("vfork", 58, NONE),                    ("vhangup", 153, 58),
    ("vmsplice", 278, 75),                  ("wait4", 61, 260),
    ("waitid", 247, 95),                    ("write", 1, 64),
    ("writev", 20, 66),
];
