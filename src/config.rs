//! What to run: the container's configuration, merged from the command line (and, later, an
//! image's config). It is plain data: built and validated in the `rl` parent, stored as the
//! container's `config.json`, and sent to the stage-1 process, which follows it to the letter.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::userns::{MapPlan, UsernsMode};

/// PATH when neither the image nor `-e` gives one (the OCI/Docker default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Which overlay implementation mounts the rootfs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OverlayBackend {
    /// Kernel overlayfs when it mounts, else fuse-overlayfs.
    #[default]
    Auto,
    /// Kernel overlayfs inside the user namespace (`userxattr`), Linux ≥ 5.11.
    Kernel,
    /// fuse-overlayfs started inside the user namespace.
    Fuse,
}

/// A mount the user asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MountSpec {
    /// A host path bind-mounted at `target` (always recursive, like Docker's default `rbind`).
    Bind { source: PathBuf, target: String, readonly: bool },
    /// A fresh tmpfs at `target` with mount `options` (`size=…,mode=…`).
    Tmpfs { target: String, options: String },
}

/// The process to start.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Process {
    pub args: Vec<String>,
    /// `KEY=VALUE` in order; later entries win.
    pub env: Vec<String>,
    /// Working directory inside the container (created if missing).
    pub cwd: String,
    /// `-u`: `uid[:gid]` or `name[:group]`, resolved in the container's /etc/passwd; "" = root.
    pub user: String,
    /// `--group-add`: extra groups (names or numbers).
    pub group_add: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    /// A tiny reaping init runs as PID 1 and the command is its child.
    pub init: bool,
}

/// Hardening applied before exec.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Security {
    /// Capability numbers kept in the bounding, permitted and effective sets.
    pub caps: Vec<u8>,
    pub seccomp: bool,
    pub no_new_privs: bool,
    /// Mask and make read-only the OCI default paths in /proc and /sys.
    pub mask_paths: bool,
    pub privileged: bool,
}

/// Where the container's files are on the host.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dirs {
    /// Overlay lower layers, topmost first; never written.
    pub lower: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Mount point of the merged rootfs (in the run root).
    pub merged: PathBuf,
    /// Generated /etc/hosts, /etc/hostname, /etc/resolv.conf live here.
    pub run: PathBuf,
}

/// Everything the sandbox needs to start a container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub id: String,
    pub name: String,
    /// What the rootfs came from, for listings (the `--rootfs` dir or, later, an image).
    pub rootfs_source: String,
    pub overlay: OverlayBackend,
    pub dirs: Dirs,
    pub process: Process,
    pub hostname: String,
    pub mounts: Vec<MountSpec>,
    pub read_only: bool,
    /// With `read_only`, mount tmpfs on /tmp, /var/tmp and /run (Podman's `--read-only-tmpfs`).
    pub read_only_tmpfs: bool,
    pub security: Security,
    pub userns: UsernsMode,
    pub idmap: MapPlan,
    /// `--network`, `-p`, the DNS flags.
    pub network: crate::network::NetworkConfig,
    /// `--rm`: the writable layer and record go when the container exits.
    pub remove: bool,
    /// The image's id, when run from an image.
    pub image: Option<String>,
    /// The signal `rl stop` sends first (the image's StopSignal, else SIGTERM).
    pub stop_signal: Option<String>,
    /// `--restart`: what the monitor does when the container exits.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// `--log-opt`: rotation of a detached container's log.
    #[serde(default)]
    pub log: crate::monitor::log::LogConfig,
    /// When the container was made (nanoseconds since the epoch).
    #[serde(default)]
    pub created_ns: u128,
    /// `--health-*` or the image's HEALTHCHECK.
    #[serde(default)]
    pub health: Option<crate::monitor::health::HealthConfig>,
    /// `--memory`, `--cpus`, `--pids-limit`, …: the limits of the container's cgroup.
    #[serde(default)]
    pub resources: crate::cgroup::Resources,
    /// `--ignore-limits`: where the host cannot enforce the limits, start without them.
    #[serde(default)]
    pub ignore_limits: bool,
    /// The cgroup leaf the init joins, set by the watcher for each start (not kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<PathBuf>,
}

/// `--restart=no|on-failure[:N]|always|unless-stopped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "name")]
pub enum RestartPolicy {
    #[default]
    No,
    OnFailure {
        /// Restarts at most this many times (None: no limit).
        max: Option<u32>,
    },
    Always,
    UnlessStopped,
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Result<RestartPolicy> {
        Ok(match s.split_once(':') {
            None if s == "no" => RestartPolicy::No,
            None if s == "always" => RestartPolicy::Always,
            None if s == "unless-stopped" => RestartPolicy::UnlessStopped,
            None if s == "on-failure" => RestartPolicy::OnFailure { max: None },
            Some(("on-failure", n)) => match n.parse::<u32>() {
                Ok(n) => RestartPolicy::OnFailure { max: Some(n) },
                Err(_) => bail!("restart policy `{s}`: the retry count must be a number"),
            },
            _ => bail!("restart policy `{s}`: expected no, on-failure[:N], always or unless-stopped"),
        })
    }

    /// Docker's name for it.
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    /// Whether a container that ended with `status` after `restarts` restarts runs again.
    /// `stopped`: the user stopped it (`rl stop`/`kill`), which no policy overrides.
    pub fn restarts(self, status: i32, restarts: u32, stopped: bool) -> bool {
        if stopped {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure { max } => status != 0 && max.map_or(true, |m| restarts < m),
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
        }
    }
}

/// Parses `-v HOST:CTR[:OPTS]`.
pub fn parse_volume(spec: &str) -> Result<MountSpec> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (source, target, opts) = match parts.as_slice() {
        [s, t] => (*s, *t, ""),
        [s, t, o] => (*s, *t, *o),
        [_] => {
            bail!("volume `{spec}`: anonymous volumes are not supported yet; give HOST:CONTAINER")
        }
        _ => bail!("volume `{spec}`: expected HOST:CONTAINER[:OPTIONS]"),
    };
    if !source.starts_with('/') {
        bail!("volume `{spec}`: the host path must be absolute (named volumes are not supported yet)");
    }
    let mut readonly = false;
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" | "readonly" => readonly = true,
            "rw" => readonly = false,
            // SELinux relabel and propagation options are accepted and have no effect here.
            "z" | "Z" | "rbind" | "bind" | "private" | "rprivate" | "slave" | "rslave" => {}
            _ => bail!("volume `{spec}`: unknown option `{o}` (expected ro, rw, z, Z)"),
        }
    }
    bind(spec, source, target, readonly)
}

fn bind(spec: &str, source: &str, target: &str, readonly: bool) -> Result<MountSpec> {
    check_target(spec, target)?;
    let source = PathBuf::from(source);
    std::fs::metadata(&source).with_context(|| format!("mount `{spec}`: source `{}`", source.display()))?;
    Ok(MountSpec::Bind { source, target: target.to_string(), readonly })
}

fn check_target(spec: &str, target: &str) -> Result<()> {
    if !target.starts_with('/') {
        bail!("mount `{spec}`: the container path `{target}` must be absolute");
    }
    if target.split('/').any(|c| c == "..") {
        bail!("mount `{spec}`: the container path `{target}` must not contain `..`");
    }
    Ok(())
}

/// Parses `--mount type=bind,source=…,target=…[,readonly]` and `type=tmpfs,target=…`.
pub fn parse_mount(spec: &str) -> Result<MountSpec> {
    let (mut kind, mut source, mut target, mut readonly) = (None, None, None, false);
    let mut tmpfs_opts = Vec::new();
    for field in spec.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "type" => kind = Some(v),
            "source" | "src" => source = Some(v),
            "target" | "destination" | "dst" => target = Some(v),
            "readonly" | "ro" => readonly = matches!(v, "" | "true" | "1"),
            "tmpfs-size" => tmpfs_opts.push(format!("size={v}")),
            "tmpfs-mode" => tmpfs_opts.push(format!("mode={v}")),
            "bind-propagation" | "relabel" | "consistency" => {}
            _ => bail!("mount `{spec}`: unknown field `{k}`"),
        }
    }
    let target = target.with_context(|| format!("mount `{spec}`: missing target="))?;
    match kind {
        Some("bind") => {
            let source = source.with_context(|| format!("mount `{spec}`: missing source="))?;
            if !source.starts_with('/') {
                bail!("mount `{spec}`: the source `{source}` must be an absolute host path");
            }
            bind(spec, source, target, readonly)
        }
        Some("tmpfs") => {
            check_target(spec, target)?;
            if readonly {
                tmpfs_opts.push("ro".into());
            }
            Ok(MountSpec::Tmpfs { target: target.into(), options: tmpfs_opts.join(",") })
        }
        Some(other) => {
            bail!("mount `{spec}`: type `{other}` is not supported (expected bind or tmpfs)")
        }
        None => bail!("mount `{spec}`: missing type="),
    }
}

/// Parses `--tmpfs /path[:opts]`.
pub fn parse_tmpfs(spec: &str) -> Result<MountSpec> {
    let (target, options) = spec.split_once(':').unwrap_or((spec, ""));
    check_target(spec, target)?;
    Ok(MountSpec::Tmpfs { target: target.into(), options: options.into() })
}

/// Builds the environment: defaults, then `--env-file` files, then `-e` (later wins). A bare
/// `KEY` takes rl's own value and is skipped when rl has none, as in Docker.
pub fn build_env(
    image_env: &[String],
    env_files: &[PathBuf],
    env: &[String],
    tty: bool,
    hostname: &str,
) -> Result<Vec<String>> {
    let mut out = vec![format!("PATH={DEFAULT_PATH}"), format!("HOSTNAME={hostname}")];
    if tty {
        out.push("TERM=xterm".into());
    }
    for e in image_env {
        if let Some((k, _)) = e.split_once('=') {
            out.retain(|x| x.split_once('=').map(|(xk, _)| xk) != Some(k));
            out.push(e.clone());
        }
    }
    let mut add = |entry: &str, origin: &str| -> Result<()> {
        let entry = entry.trim_start();
        if entry.is_empty() {
            return Ok(());
        }
        let (key, value) = match entry.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (entry, std::env::var(entry).ok()),
        };
        if key.is_empty() || key.contains(char::is_whitespace) {
            bail!("environment {origin}: invalid variable name in `{entry}`");
        }
        if let Some(v) = value {
            out.retain(|e| e.split_once('=').map(|(k, _)| k) != Some(key));
            out.push(format!("{key}={v}"));
        }
        Ok(())
    };
    for file in env_files {
        let text = std::fs::read_to_string(file).with_context(|| format!("read env file `{}`", file.display()))?;
        for line in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            add(line, &format!("file `{}`", file.display()))?;
        }
    }
    for e in env {
        add(e, "option -e")?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies() {
        assert_eq!(RestartPolicy::parse("on-failure:2").unwrap(), RestartPolicy::OnFailure { max: Some(2) });
        assert_eq!(RestartPolicy::parse("unless-stopped").unwrap(), RestartPolicy::UnlessStopped);
        for bad in ["sometimes", "on-failure:x", "always:3"] {
            assert!(RestartPolicy::parse(bad).is_err(), "{bad}");
        }
        let twice = RestartPolicy::OnFailure { max: Some(2) };
        assert!(twice.restarts(1, 0, false) && twice.restarts(1, 1, false) && !twice.restarts(1, 2, false));
        assert!(!twice.restarts(0, 0, false), "success is not a failure");
        assert!(RestartPolicy::Always.restarts(0, 9, false) && !RestartPolicy::Always.restarts(0, 0, true));
        assert!(!RestartPolicy::No.restarts(1, 0, false));
    }

    #[test]
    fn volumes() {
        let ok = [
            ("/tmp:/data", "/data", false),
            ("/tmp:/data:ro", "/data", true),
            ("/tmp:/data:rw,z", "/data", false),
            ("/tmp:/a/b:Z,ro", "/a/b", true),
        ];
        for (spec, target, ro) in ok {
            match parse_volume(spec).unwrap() {
                MountSpec::Bind { source, target: t, readonly } => {
                    assert_eq!((source.as_path(), t.as_str(), readonly), (std::path::Path::new("/tmp"), target, ro))
                }
                other => panic!("{other:?}"),
            }
        }
        let bad = [
            ("/data", "anonymous"),
            ("vol:/data", "absolute"),
            ("/tmp:data", "must be absolute"),
            ("/tmp:/a/../b", "`..`"),
            ("/tmp:/data:bogus", "unknown option"),
            ("/nonexistent-rl:/data", "nonexistent-rl"),
            ("/a:/b:ro:x", "expected"),
        ];
        for (spec, needle) in bad {
            let e = format!("{:#}", parse_volume(spec).unwrap_err());
            assert!(e.contains(needle) && e.contains(spec), "{spec}: {e}");
        }
    }

    #[test]
    fn mounts_and_tmpfs() {
        assert_eq!(
            parse_mount("type=bind,source=/tmp,target=/x,readonly").unwrap(),
            MountSpec::Bind { source: "/tmp".into(), target: "/x".into(), readonly: true }
        );
        assert_eq!(
            parse_mount("type=tmpfs,target=/t,tmpfs-size=1m").unwrap(),
            MountSpec::Tmpfs { target: "/t".into(), options: "size=1m".into() }
        );
        assert!(parse_mount("type=volume,target=/x").is_err());
        assert!(parse_mount("type=bind,target=/x").is_err());
        assert!(parse_mount("source=/tmp,target=/x").is_err());
        assert_eq!(
            parse_tmpfs("/run:size=1m,mode=0755").unwrap(),
            MountSpec::Tmpfs { target: "/run".into(), options: "size=1m,mode=0755".into() }
        );
        assert!(parse_tmpfs("run").is_err());
    }

    #[test]
    fn env_merging() {
        let dir = std::env::temp_dir().join(format!("rl-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("env");
        std::fs::write(&f, "# c\nA=file\n\nB=file\n").unwrap();
        let image = ["A=image".to_string(), "C=image".into()];
        let env = build_env(&image, &[f], &["B=cli".into(), "PATH=/x".into(), "RL_SURELY_UNSET_VAR".into()], true, "h")
            .unwrap();
        assert_eq!(env, vec!["HOSTNAME=h", "TERM=xterm", "C=image", "A=file", "B=cli", "PATH=/x"]);
        assert!(build_env(&[], &[], &["=x".into()], false, "h").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
