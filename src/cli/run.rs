//! `rl run`: builds the container's config from the flags, creates its record, starts it through
//! the sandbox and watches it in the foreground; exits with the container's status.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::config::{self, ContainerConfig, Dirs, OverlayBackend, Process, Security};
use crate::hint::Problem;
use crate::monitor;
use crate::sandbox::msg::Job;
use crate::sandbox::parent::{self, Spawn, Stage1};
use crate::sandbox::{caps, remove_tree};
use crate::state::{self, Status};
use crate::store::Paths;
use crate::userns::{subid, MapPlan, UsernsMode};

#[derive(Debug, Args)]
#[command(disable_help_flag = true, trailing_var_arg = true)]
pub struct RunArgs {
    /// Print help.
    #[arg(long, action = clap::ArgAction::Help)]
    help: Option<bool>,
    /// Use DIR, an exploded root filesystem, as the container's read-only lower layer (instead
    /// of an image: the first argument is then the command).
    #[arg(long, value_name = "DIR")]
    pub rootfs: Option<PathBuf>,
    /// Pull the image: missing (default), always, or never.
    #[arg(long, value_name = "POLICY", default_value = "missing")]
    pub pull: String,
    /// Run the image for this platform (os/arch[/variant]).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// Remove the container (its writable layer and record) when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Run in the background under a per-container monitor; print the container id.
    #[arg(short, long)]
    pub detach: bool,
    /// What to do when the container exits: no, on-failure[:N], always, unless-stopped.
    #[arg(long, value_name = "POLICY", default_value = "no")]
    pub restart: String,
    /// Log rotation of a detached container: max-size=SIZE, max-file=N (repeatable).
    #[arg(long = "log-opt", value_name = "OPT")]
    pub log_opt: Vec<String>,
    /// Command run in the container to check its health (`none` disables the image's).
    #[arg(long, value_name = "CMD")]
    pub health_cmd: Option<String>,
    /// Time between health checks (e.g. 30s, 500ms).
    #[arg(long, value_name = "DURATION")]
    pub health_interval: Option<String>,
    /// Time a health check may take before it counts as failed.
    #[arg(long, value_name = "DURATION")]
    pub health_timeout: Option<String>,
    /// Consecutive failures that make the container unhealthy.
    #[arg(long, value_name = "N")]
    pub health_retries: Option<u32>,
    /// Time after the start when failures do not count.
    #[arg(long, value_name = "DURATION")]
    pub health_start_period: Option<String>,
    /// Ignore the image's HEALTHCHECK.
    #[arg(long)]
    pub no_healthcheck: bool,
    /// Keep stdin open and pass it to the container.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the container a pseudo-terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Set an environment variable (KEY=VALUE, or KEY to pass rl's own value).
    #[arg(short, long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Read environment variables from a file (KEY=VALUE lines).
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Run as USER[:GROUP] (names or numbers from the container's /etc/passwd and /etc/group).
    #[arg(short, long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Add a supplementary group.
    #[arg(long, value_name = "GROUP")]
    pub group_add: Vec<String>,
    /// Container hostname (default: the first 12 digits of its id).
    #[arg(short = 'h', long, value_name = "NAME")]
    pub hostname: Option<String>,
    /// Run this program instead of the command's first word.
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// Run a tiny init as PID 1 that reaps zombies and forwards signals.
    #[arg(long)]
    pub init: bool,
    /// User namespace mode: `keep-id` keeps your uid/gid inside.
    #[arg(long, value_name = "MODE")]
    pub userns: Option<String>,
    /// Add a capability (e.g. NET_RAW, or ALL).
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability (e.g. CHOWN, or ALL).
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// Security options: seccomp=unconfined, no-new-privileges.
    #[arg(long, value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// All capabilities of the user namespace, no seccomp, no masked paths.
    #[arg(long)]
    pub privileged: bool,
    /// Bind mount HOST:CONTAINER[:ro].
    #[arg(short, long, value_name = "HOST:CONTAINER[:OPTS]")]
    pub volume: Vec<String>,
    /// Mount: type=bind,source=…,target=…[,readonly] or type=tmpfs,target=….
    #[arg(long, value_name = "SPEC")]
    pub mount: Vec<String>,
    /// Mount a tmpfs at PATH[:OPTIONS].
    #[arg(long, value_name = "PATH[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// Mount the rootfs read-only.
    #[arg(long)]
    pub read_only: bool,
    /// With --read-only, mount tmpfs on /tmp, /var/tmp and /run.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub read_only_tmpfs: bool,
    /// Rootfs overlay: kernel overlayfs, fuse-overlayfs, or auto.
    #[arg(long, value_enum, default_value_t = OverlayBackend::Auto, env = "RL_OVERLAY")]
    pub overlay: OverlayBackend,
    #[command(flatten)]
    pub net: super::netflags::NetFlags,
    #[command(flatten)]
    pub limits: super::limits::LimitFlags,
    /// Where the host cannot enforce the limit flags (cgroup v1, controllers not delegated),
    /// run without them after a warning.
    #[arg(long, env = "RL_IGNORE_LIMITS", value_parser = clap::builder::BoolishValueParser::new())]
    pub ignore_limits: bool,
    /// Container name (default: generated).
    #[arg(long)]
    pub name: Option<String>,
    /// IMAGE (unless --rootfs), then the command and its arguments.
    #[arg(value_name = "IMAGE|COMMAND")]
    pub command: Vec<String>,
}

/// Security from the flags: capabilities, seccomp, no_new_privs, masked paths.
fn security(args: &RunArgs) -> Result<Security> {
    let mut seccomp = !args.privileged;
    for opt in &args.security_opt {
        match opt.split_once(['=', ':']) {
            Some(("seccomp", "unconfined")) => seccomp = false,
            Some(("seccomp", other)) => {
                bail!("security option `{opt}`: seccomp profile `{other}` is not supported (only unconfined)")
            }
            _ if opt == "no-new-privileges" || opt == "no-new-privileges=true" => {}
            _ => bail!("security option `{opt}`: unknown (expected seccomp=unconfined or no-new-privileges)"),
        }
    }
    Ok(Security {
        caps: caps::resolve(&args.cap_add, &args.cap_drop, args.privileged)?,
        seccomp,
        no_new_privs: !args.privileged,
        mask_paths: !args.privileged,
        privileged: args.privileged,
    })
}

/// The id maps for this user, warning (unless `quiet`) when there are no subordinate ids.
pub fn id_maps(mode: UsernsMode, quiet: bool) -> Result<MapPlan> {
    let uid = nix::unistd::getuid();
    let gid = nix::unistd::getgid();
    let name = nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name).unwrap_or_default();
    let subuids = subid::lookup("/etc/subuid".as_ref(), &name, uid.as_raw())?;
    let subgids = subid::lookup("/etc/subgid".as_ref(), &name, uid.as_raw())?;
    let plan = MapPlan::new(mode, uid.as_raw(), gid.as_raw(), &subuids, &subgids);
    if !plan.helpers && !quiet {
        eprintln!(
            "warning: no subordinate ids for `{name}` in /etc/subuid and /etc/subgid: using a single-id map \
             (only your own id exists in the container)"
        );
        eprintln!("hint: {}", Problem::NoSubids.hint());
    }
    Ok(plan)
}

/// The rootfs and defaults a container starts from: an exploded directory, or an image.
struct Base {
    lower: Vec<PathBuf>,
    source: String,
    image: Option<String>,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    env: Vec<String>,
    workdir: Option<String>,
    user: Option<String>,
    stop_signal: Option<String>,
    /// Docker's `Healthcheck` of the image config, if any.
    healthcheck: Option<serde_json::Value>,
    /// The image's EXPOSE list (`80/tcp`).
    expose: Vec<String>,
}

fn base_from_rootfs(rootfs: &std::path::Path) -> Result<Base> {
    let meta = std::fs::metadata(rootfs).with_context(|| format!("rootfs `{}`", rootfs.display()))?;
    if !meta.is_dir() {
        bail!("rootfs `{}`: not a directory", rootfs.display());
    }
    let rootfs = rootfs.canonicalize().with_context(|| format!("rootfs `{}`", rootfs.display()))?;
    Ok(Base {
        source: rootfs.display().to_string(),
        lower: vec![rootfs],
        image: None,
        entrypoint: Vec::new(),
        cmd: Vec::new(),
        env: Vec::new(),
        workdir: None,
        user: None,
        stop_signal: None,
        healthcheck: None,
        expose: Vec::new(),
    })
}

fn base_from_image(paths: &Paths, name: &str, args: &RunArgs) -> Result<Base> {
    use crate::image::reference::{Reference, Rule};
    if let Err(e) = Reference::parse(name) {
        // An image id (or `sha256:` id) names a stored image.
        if e.rule == Rule::LooksLikeId {
            return match crate::store::images::find(paths, name, None)? {
                Some(rec) => image_base(paths, name, rec),
                None => bail!("image `{name}`: no image with this id in the store"),
            };
        }
        bail!("{e}");
    }
    let candidates = super::pull::candidates(name)?;
    let platform = args.platform.as_deref().map(crate::image::manifest::Platform::parse).transpose()?;
    let found = match args.pull.as_str() {
        "always" => None,
        "missing" | "never" => super::pull::find_stored(paths, &candidates)?,
        other => bail!("pull policy `{other}`: expected missing, always or never"),
    };
    let (r, rec) = match found {
        Some(found) => found,
        None if args.pull == "never" => bail!("image `{name}`: not in the store and --pull=never"),
        None => {
            let opts = crate::image::pull::Options { platform, quiet: false };
            super::pull::pull_first(paths, name, &candidates, &opts)?
        }
    };
    image_base(paths, &r.to_string(), rec)
}

fn image_base(paths: &Paths, source: &str, rec: crate::store::images::ImageRecord) -> Result<Base> {
    let r = source;
    let config_bytes = crate::store::images::config(paths, &rec.id)?;
    let config = oci_spec::image::ImageConfiguration::from_reader(&config_bytes[..])
        .with_context(|| format!("image `{r}`: parse config"))?;
    let c = config.config().clone().unwrap_or_default();
    let mut lower = Vec::new();
    for d in rec.layers.iter().rev() {
        lower.push(paths.layer_dir(d)?);
    }
    Ok(Base {
        lower,
        source: source.to_string(),
        image: Some(rec.id.clone()),
        entrypoint: c.entrypoint().clone().unwrap_or_default(),
        cmd: c.cmd().clone().unwrap_or_default(),
        env: c.env().clone().unwrap_or_default(),
        workdir: c.working_dir().clone().filter(|w| !w.is_empty()),
        user: c.user().clone().filter(|u| !u.is_empty()),
        stop_signal: c.stop_signal().clone().filter(|s| !s.is_empty()),
        // Docker's own field, not in the OCI config: read from the raw JSON.
        healthcheck: serde_json::from_slice::<serde_json::Value>(&config_bytes)
            .ok()
            .map(|v| v["config"]["Healthcheck"].clone())
            .filter(|h| h.is_object()),
        expose: c.exposed_ports().clone().unwrap_or_default(),
    })
}

/// Builds the container's config from the flags (and the image's config).
fn build(paths: &Paths, args: &RunArgs) -> Result<ContainerConfig> {
    let (base, command) = match &args.rootfs {
        Some(dir) => (base_from_rootfs(dir)?, args.command.clone()),
        None => match args.command.split_first() {
            Some((image, rest)) => (base_from_image(paths, image, args)?, rest.to_vec()),
            None => bail!("run: no image given (or --rootfs DIR)"),
        },
    };
    // Docker's rules: --entrypoint replaces the image's entrypoint and drops its CMD; arguments
    // replace CMD.
    let mut argv: Vec<String> = match &args.entrypoint {
        Some(e) => vec![e.clone()],
        None => base.entrypoint.clone(),
    };
    if !command.is_empty() {
        argv.extend(command);
    } else if args.entrypoint.is_none() {
        argv.extend(base.cmd.iter().cloned());
    }
    if argv.is_empty() || argv[0].is_empty() {
        bail!("run: no command given (and no --entrypoint, or CMD/ENTRYPOINT in the image)");
    }
    let userns = match args.userns.as_deref() {
        None | Some("") | Some("auto") => UsernsMode::Root,
        Some("keep-id") => UsernsMode::KeepId,
        Some(other) => bail!("userns `{other}`: unknown mode (expected keep-id)"),
    };
    let network = super::netflags::build(paths, &args.net, &base.expose)?;
    if matches!(network.mode, crate::network::NetworkMode::Bridge(_)) && userns == UsernsMode::KeepId {
        bail!(
            "network `{}`: containers on user networks share one user namespace with the default id maps: \
             --userns keep-id cannot join it",
            network.mode.name()
        );
    }
    let mut mounts = Vec::new();
    for v in &args.volume {
        mounts.push(config::parse_volume(v)?);
    }
    for m in &args.mount {
        mounts.push(config::parse_mount(m)?);
    }
    for t in &args.tmpfs {
        mounts.push(config::parse_tmpfs(t)?);
    }
    let security = security(args)?;
    let restart = crate::config::RestartPolicy::parse(&args.restart)?;
    if args.rm && restart != crate::config::RestartPolicy::No {
        bail!("--restart `{}` and --rm: a container removed when it exits cannot restart", args.restart);
    }
    let flags = crate::monitor::health::Flags {
        cmd: args.health_cmd.clone(),
        interval: args.health_interval.clone(),
        timeout: args.health_timeout.clone(),
        retries: args.health_retries,
        start_period: args.health_start_period.clone(),
        none: args.no_healthcheck,
    };
    let health = crate::monitor::health::resolve(&flags, base.healthcheck.as_ref())?;
    let mut log = crate::monitor::log::LogConfig::default();
    for o in &args.log_opt {
        log.apply(o)?;
    }
    let resources = args.limits.resources()?;
    if resources.any() {
        if let Err(e) = crate::cgroup::Host::detect().check(&resources) {
            if !args.ignore_limits {
                return Err(e);
            }
            eprintln!("warning: --ignore-limits: {e:#}; the container runs without what cannot be enforced");
        }
    }
    let idmap = id_maps(userns, false)?;
    let id = state::new_id()?;
    let name = args.name.clone().unwrap_or_else(|| state::generated_name(&id));
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)) {
        bail!("container name `{name}`: only letters, digits, `_`, `.` and `-` are allowed");
    }
    let hostname = args.hostname.clone().unwrap_or_else(|| id[..12].to_string());
    let env = config::build_env(&base.env, &args.env_file, &args.env, args.tty, &hostname)?;
    let user = match (&args.user, userns, &base.user) {
        (Some(u), _, _) => u.clone(),
        (None, UsernsMode::KeepId, _) => format!("{}:{}", nix::unistd::getuid(), nix::unistd::getgid()),
        (None, UsernsMode::Root, Some(u)) => u.clone(),
        (None, UsernsMode::Root, None) => String::new(),
    };
    let record = paths.container(&id);
    let run = paths.container_run(&id);
    Ok(ContainerConfig {
        rootfs_source: base.source,
        image: base.image,
        stop_signal: base.stop_signal,
        dirs: Dirs {
            lower: base.lower,
            upper: record.join("upper"),
            work: record.join("work"),
            merged: run.join("merged"),
            run,
        },
        overlay: args.overlay,
        process: Process {
            args: argv,
            env,
            cwd: args.workdir.clone().or(base.workdir).unwrap_or_else(|| "/".into()),
            user,
            group_add: args.group_add.clone(),
            tty: args.tty,
            stdin: args.interactive,
            init: args.init,
        },
        hostname,
        mounts,
        read_only: args.read_only,
        read_only_tmpfs: args.read_only_tmpfs,
        security,
        userns,
        idmap,
        network,
        remove: args.rm,
        restart,
        log,
        health,
        created_ns: state::now_ns(),
        resources,
        ignore_limits: args.ignore_limits,
        cgroup: None,
        id,
        name,
    })
}

/// Creates the writable layer dirs and the runtime files (again, for a container that ran
/// before: the run root may have been wiped by a reboot).
pub fn prepare_dirs(cfg: &ContainerConfig) -> Result<()> {
    for d in [&cfg.dirs.upper, &cfg.dirs.work] {
        match std::fs::create_dir(d) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(e).with_context(|| format!("create `{}`", d.display()))
            }
            _ => {}
        }
    }
    crate::store::layout::private_dir(&cfg.dirs.run)?;
    match std::fs::create_dir(&cfg.dirs.merged) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(e).with_context(|| format!("create `{}`", cfg.dirs.merged.display()))
        }
        _ => {}
    }
    crate::network::write_etc_files(cfg)
}

/// `rl run`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: RunArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let cfg = build(&paths, &args)?;
    if args.detach {
        return run_detached(&paths, &cfg);
    }
    let result = start_and_watch(&paths, &cfg, &args);
    if cfg.remove || result.is_err() {
        // Stage 1 removed the layer (its files belong to subordinate ids); what is left is ours.
        let _ = remove_tree(&paths.container(&cfg.id));
        state::release_name(&paths, &cfg.name, &cfg.id);
        let _ = remove_tree(&cfg.dirs.run);
    }
    result
}

/// `rl create`: the record only; `rl start` runs it.
pub fn create(root: Option<PathBuf>, runroot: Option<PathBuf>, args: RunArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let cfg = build(&paths, &args)?;
    let _held = match cfg.image {
        Some(_) => Some(crate::store::images::hold_layers(&paths, &cfg.dirs.lower)?),
        None => None,
    };
    state::create(&paths, &cfg)?;
    println!("{}", cfg.id);
    Ok(0)
}

/// `rl run -d`: the record, then the monitor starts the container; prints the id.
fn run_detached(paths: &Paths, cfg: &ContainerConfig) -> Result<i32> {
    // A published port that is taken fails here, before there is a container to clean up; the
    // monitor binds them for good.
    drop(crate::network::forward::bind_all(&cfg.network.ports)?);
    {
        let _held = match cfg.image {
            Some(_) => Some(crate::store::images::hold_layers(paths, &cfg.dirs.lower)?),
            None => None,
        };
        state::create_as(paths, cfg, false)?;
    }
    let durable = !cfg.remove;
    let sync = || if durable { state::sync_record(paths, &cfg.id) } else { Ok(()) };
    if let Err(e) = crate::monitor::detached::launch(paths, &cfg.id, sync) {
        if cfg.remove {
            let _ = remove_tree(&paths.container(&cfg.id));
            state::release_name(paths, &cfg.name, &cfg.id);
            let _ = remove_tree(&cfg.dirs.run);
        }
        return Err(e);
    }
    if let Some(note) = linger_note() {
        eprintln!("{note}");
    }
    println!("{}", cfg.id);
    Ok(0)
}

/// On a systemd host, a user's processes end with their last session unless lingering is on:
/// a detached container (and its restart policy) lives only as long as the session then.
fn linger_note() -> Option<String> {
    if !Path::new("/run/systemd/system").is_dir() {
        return None;
    }
    let user = nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten()?.name;
    if Path::new("/var/lib/systemd/linger").join(&user).exists() {
        return None;
    }
    Some(format!(
        "note: the container runs while you are logged in; to keep it after you log out: `loginctl enable-linger {user}` \
         (see distro-notes/debian.md#containers-stop-at-logout)"
    ))
}

fn start_and_watch(paths: &Paths, cfg: &ContainerConfig, args: &RunArgs) -> Result<i32> {
    // Signals wait in a signalfd from now on, so none is lost before the container exists.
    let mask = monitor::signal_mask();
    mask.thread_block().context("block signals")?;
    let sigfd = nix::sys::signalfd::SignalFd::with_flags(
        &mask,
        nix::sys::signalfd::SfdFlags::SFD_NONBLOCK | nix::sys::signalfd::SfdFlags::SFD_CLOEXEC,
    )
    .context("create signalfd")?;
    let stdin = if args.interactive && !args.tty { Stdio::inherit() } else { Stdio::null() };
    let how = Spawn {
        stdin,
        sealed: cfg.process.init,
        share_userns: Some(paths.runroot.clone()),
        network: Some(crate::network::wiring::prepare(paths, cfg)?),
        ..Spawn::default()
    };
    // An image's layers stay put until the record that uses them exists.
    let held = match cfg.image {
        Some(_) => Some(crate::store::images::hold_layers(paths, &cfg.dirs.lower)?),
        None => None,
    };
    // The container's cgroup exists, limits written, before any of its processes does.
    let leaf = crate::cgroup::for_start(&cfg.id, &cfg.resources, cfg.ignore_limits)?;
    let started = (|| {
        let job = ContainerConfig { cgroup: leaf.as_ref().map(|l| l.dir.clone()), ..cfg.clone() };
        // The record and the runtime files are written while the id-map helpers run.
        let stage = Stage1::spawn(&cfg.idmap, Job::Run(Box::new(job)), how, || {
            state::create(paths, cfg)?;
            drop(held);
            prepare_dirs(cfg)
        })?;
        parent::wait_started(stage)
    })();
    let running = match started {
        Ok(r) => r,
        Err(e) => {
            if let Some(l) = &leaf {
                crate::cgroup::finish(l, &cfg.name);
            }
            return Err(e);
        }
    };
    let mut st = state::load(paths, &cfg.id)?;
    st.status = Status::Running;
    st.pid = Some(running.pid.as_raw());
    st.started_ns = Some(state::now_ns());
    st.network = running.net.as_ref().map(|n| n.attached.clone());
    st.cgroup = leaf.as_ref().map(|l| l.rel.clone());
    // This process watches it: `ps` and `stop` see a live container through it, and
    // `rl exec` finds the pid here, `--rm` or not.
    let me = std::process::id() as i32;
    st.monitor_pid = Some(me);
    st.monitor_start = state::start_time(me);
    // A `--rm` record is not kept durably: that write failing is no error of the container's.
    if let Err(e) = state::save_as(paths, &cfg.id, &st, !cfg.remove) {
        if !cfg.remove {
            return Err(e);
        }
    }
    let exit = monitor::watch(&running, &sigfd, args.interactive);
    running.stage.reap();
    let oom = leaf.as_ref().is_some_and(|l| crate::cgroup::finish(l, &cfg.name));
    let exit = exit?;
    if exit.code.is_none() && exit.signal.is_none() {
        bail!("the stage-1 process ended without reporting the container's exit");
    }
    if !cfg.remove {
        st.status = Status::Exited;
        st.pid = None;
        st.exit_code = Some(exit.status());
        st.finished_ns = Some(state::now_ns());
        st.cgroup = None;
        st.oom_killed = oom;
        state::save(paths, &cfg.id, &st)?;
    }
    Ok(exit.status())
}
