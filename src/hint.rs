//! Known host problems, each turned into one `hint:` line with the exact fix and the
//! `distro-notes/` file that explains it; and the typed errors the CLI prints and maps to exit
//! codes. Any process may build these; the CLI prints them once.

use std::fmt;

/// A host problem rl knows how to explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Problem {
    /// `user.max_user_namespaces` is 0 (or the kernel lacks user namespaces).
    UsernsDisabled,
    /// Debian kernels before 6.x: `kernel.unprivileged_userns_clone` is 0.
    UsernsCloneDisabled,
    /// Ubuntu 23.10+: AppArmor denies unprivileged user namespaces to unconfined programs.
    AppArmorUserns,
    /// `newuidmap`/`newgidmap` are not installed.
    NewuidmapMissing,
    /// `newuidmap`/`newgidmap` exist but are neither setuid root nor carry file capabilities.
    NewuidmapNotSetuid,
    /// The user has no range in /etc/subuid or /etc/subgid.
    NoSubids,
    /// Neither kernel overlayfs nor fuse-overlayfs can be used.
    OverlayUnavailable,
    /// fuse-overlayfs is installed but /dev/fuse cannot be opened.
    FuseDevice,
    /// `XDG_RUNTIME_DIR` is unset, typically after `su` or `sudo -u`.
    RuntimeDirUnset,
    /// A registry's TLS certificate is not trusted (or a loopback registry speaks HTTPS and
    /// has no certs.d directory).
    RegistryCertUntrusted,
    /// A registry wants a client certificate that rl lacks or that it refused.
    RegistryClientCert,
    /// The network helper asked for (slirp4netns, pasta) is not installed.
    NetworkHelperMissing,
    /// A published host port is below `net.ipv4.ip_unprivileged_port_start`.
    PrivilegedPort,
    /// Limits asked for on a host with cgroup v1 only, or hybrid mode.
    CgroupV1,
    /// Limits asked for, and the user's cgroup (or the controller) is not delegated.
    CgroupNotDelegated,
    /// The user's delegated cgroup holds processes, so its children cannot get controllers.
    CgroupBusy,
}

impl Problem {
    /// The one-line fix, naming the distro-notes file that explains it.
    pub fn hint(self) -> &'static str {
        match self {
            Problem::UsernsDisabled => {
                "enable user namespaces: `sudo sysctl -w user.max_user_namespaces=28633` \
                 (persist in /etc/sysctl.d/); see distro-notes/debian.md#user-namespaces-disabled"
            }
            Problem::UsernsCloneDisabled => {
                "enable unprivileged user namespaces: `sudo sysctl -w kernel.unprivileged_userns_clone=1`; \
                 see distro-notes/debian.md#user-namespaces-disabled"
            }
            Problem::AppArmorUserns => {
                "AppArmor restricts unprivileged user namespaces: add an AppArmor profile for rl \
                 that allows `userns,`; see distro-notes/ubuntu.md#apparmor-restricts-unprivileged-user-namespaces"
            }
            Problem::NewuidmapMissing => {
                "install newuidmap/newgidmap: `sudo apt-get install uidmap` (Fedora: shadow-utils); \
                 see distro-notes/debian.md#newuidmap-missing"
            }
            Problem::NewuidmapNotSetuid => {
                "newuidmap/newgidmap must be setuid root: `sudo apt-get install --reinstall uidmap`; \
                 see distro-notes/debian.md#newuidmap-not-setuid"
            }
            Problem::NoSubids => {
                "give the user a subordinate range: `sudo usermod --add-subuids 100000-165535 \
                 --add-subgids 100000-165535 $USER`; see distro-notes/debian.md#no-subordinate-ids"
            }
            Problem::OverlayUnavailable => {
                "install fuse-overlayfs (`sudo apt-get install fuse-overlayfs`) or keep the store on a \
                 local filesystem; see distro-notes/debian.md#overlay-unavailable"
            }
            Problem::FuseDevice => {
                "make /dev/fuse usable: `sudo chmod 0666 /dev/fuse`; see distro-notes/debian.md#dev-fuse-not-accessible"
            }
            Problem::RuntimeDirUnset => {
                "log in with a full session (`machinectl shell $USER@`) or `export XDG_RUNTIME_DIR=/run/user/$(id -u)`; \
                 see distro-notes/debian.md#xdg_runtime_dir-unset"
            }
            Problem::RegistryCertUntrusted => {
                "put the CA that signed the registry's certificate in \
                 `~/.config/containers/certs.d/HOST:PORT/ca.crt` (or the system CA store), or set \
                 `insecure = true` for the registry in registries.conf; \
                 see distro-notes/registries-tls.md#registry-certificate-not-trusted"
            }
            Problem::RegistryClientCert => {
                "put the client certificate and its key in `~/.config/containers/certs.d/HOST:PORT/` \
                 as `client.cert` and `client.key`; see distro-notes/registries-tls.md#registry-wants-a-client-certificate"
            }
            Problem::NetworkHelperMissing => {
                "install slirp4netns (`sudo apt-get install slirp4netns`; Fedora: `dnf install slirp4netns`) or \
                 pasta (package `passt`), or run with `--network none`; see distro-notes/debian.md#network-helper-missing"
            }
            Problem::PrivilegedPort => {
                "publish a port of 1024 or above (`-p 8080:80`), or let users bind lower ports: \
                 `sudo sysctl -w net.ipv4.ip_unprivileged_port_start=80`; see distro-notes/debian.md#ports-below-1024"
            }
            Problem::CgroupV1 => {
                "boot with cgroup v2 only (kernel argument `systemd.unified_cgroup_hierarchy=1`), or run without \
                 enforcing limits: `--ignore-limits`; see distro-notes/debian.md#cgroup-v1-or-hybrid"
            }
            Problem::CgroupNotDelegated => {
                "delegate the controllers to users: a drop-in `/etc/systemd/system/user@.service.d/delegate.conf` with \
                 `[Service]` `Delegate=cpu cpuset io memory pids`, then `sudo systemctl daemon-reload` and log in again \
                 (or run rl under `systemd-run --user --scope -p Delegate=yes`); or `--ignore-limits`; \
                 see distro-notes/debian.md#cgroup-not-delegated"
            }
            Problem::CgroupBusy => {
                "move your shell into a child cgroup of it first (`mkdir DIR/shell && echo $$ > DIR/shell/cgroup.procs`, \
                 DIR being the delegated cgroup under /sys/fs/cgroup); see distro-notes/debian.md#delegated-cgroup-holds-processes"
            }
        }
    }
}

/// An error with a known fix. Its message is the cause; the CLI prints the hint on its own line.
#[derive(Debug)]
pub struct Hinted {
    pub message: String,
    pub problem: Problem,
}

impl fmt::Display for Hinted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Hinted {}

/// Builds an `anyhow::Error` carrying `problem`'s hint.
pub fn hinted(problem: Problem, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Hinted { message: message.into(), problem })
}

/// An error whose fix depends on the input (`rl login REGISTRY`, `rl pull IMAGE`) rather than
/// on the host: the CLI prints `hint` on its own line.
#[derive(Debug)]
pub struct Fix {
    pub message: String,
    pub hint: String,
}

impl fmt::Display for Fix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Fix {}

/// Builds an `anyhow::Error` with a `hint:` line of its own.
pub fn with_fix(message: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Fix { message: message.into(), hint: hint.into() })
}

/// An error that must end rl with a specific exit status (126/127 for exec failures).
#[derive(Debug)]
pub struct ExitStatus {
    pub code: i32,
    pub message: String,
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitStatus {}

/// The exit status for rl's own failures, as Docker and Podman use it.
pub const EXIT_RL_FAILED: i32 = 125;

/// Prints `err` as one `Error:` line (plus a `hint:` line) and returns the exit code to use.
pub fn report(err: &anyhow::Error) -> i32 {
    eprintln!("Error: {err:#}");
    if let Some(h) = err.chain().find_map(|e| e.downcast_ref::<Hinted>()) {
        eprintln!("hint: {}", h.problem.hint());
    } else if let Some(f) = err.chain().find_map(|e| e.downcast_ref::<Fix>()) {
        eprintln!("hint: {}", f.hint);
    }
    err.chain().find_map(|e| e.downcast_ref::<ExitStatus>()).map_or(EXIT_RL_FAILED, |s| s.code)
}

/// Host facts that decide which hint explains a failed `unshare(CLONE_NEWUSER)`.
#[derive(Debug, Default, Clone, Copy)]
pub struct UsernsFacts {
    pub max_user_namespaces: Option<u64>,
    pub unprivileged_userns_clone: Option<u64>,
    pub apparmor_restrict: Option<u64>,
}

impl UsernsFacts {
    /// Reads the sysctls that can forbid user namespaces.
    pub fn read() -> Self {
        let num = |p: &str| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse().ok());
        UsernsFacts {
            max_user_namespaces: num("/proc/sys/user/max_user_namespaces"),
            unprivileged_userns_clone: num("/proc/sys/kernel/unprivileged_userns_clone"),
            apparmor_restrict: num("/proc/sys/kernel/apparmor_restrict_unprivileged_userns"),
        }
    }

    /// Which problem explains a user-namespace step failing with `errno`.
    pub fn explain(self, errno: nix::errno::Errno) -> Option<Problem> {
        use nix::errno::Errno;
        match errno {
            Errno::ENOSPC | Errno::EUSERS => Some(Problem::UsernsDisabled),
            Errno::EINVAL if self.max_user_namespaces.is_none() => Some(Problem::UsernsDisabled),
            Errno::EPERM | Errno::EACCES => {
                if self.unprivileged_userns_clone == Some(0) {
                    Some(Problem::UsernsCloneDisabled)
                } else if self.apparmor_restrict == Some(1) {
                    Some(Problem::AppArmorUserns)
                } else if self.max_user_namespaces == Some(0) {
                    Some(Problem::UsernsDisabled)
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::errno::Errno;

    #[test]
    fn userns_failures_map_to_their_hint() {
        let stock = UsernsFacts { max_user_namespaces: Some(1000), ..Default::default() };
        let cases = [
            (stock, Errno::ENOSPC, Some(Problem::UsernsDisabled)),
            (
                UsernsFacts { unprivileged_userns_clone: Some(0), ..stock },
                Errno::EPERM,
                Some(Problem::UsernsCloneDisabled),
            ),
            (UsernsFacts { apparmor_restrict: Some(1), ..stock }, Errno::EACCES, Some(Problem::AppArmorUserns)),
            (UsernsFacts { max_user_namespaces: Some(0), ..stock }, Errno::EPERM, Some(Problem::UsernsDisabled)),
            (stock, Errno::EPERM, None),
            (stock, Errno::ENOMEM, None),
        ];
        for (facts, errno, want) in cases {
            assert_eq!(facts.explain(errno), want, "{facts:?} {errno}");
        }
    }

    #[test]
    fn every_hint_names_a_distro_note() {
        use Problem::*;
        for p in [
            UsernsDisabled,
            UsernsCloneDisabled,
            AppArmorUserns,
            NewuidmapMissing,
            NewuidmapNotSetuid,
            NoSubids,
            OverlayUnavailable,
            FuseDevice,
            RuntimeDirUnset,
            RegistryCertUntrusted,
            RegistryClientCert,
            NetworkHelperMissing,
            PrivilegedPort,
            CgroupV1,
            CgroupNotDelegated,
            CgroupBusy,
        ] {
            assert!(p.hint().contains("distro-notes/"), "{p:?}");
        }
    }

    #[test]
    fn report_uses_the_exit_status_through_context() {
        let err = anyhow::Error::new(ExitStatus { code: 127, message: "not found".into() }).context("exec `x`");
        assert_eq!(report(&err), 127);
        assert_eq!(report(&hinted(Problem::NoSubids, "x")), EXIT_RL_FAILED);
    }
}
