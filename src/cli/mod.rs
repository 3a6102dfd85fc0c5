//! The command line: Docker/Podman verbs and flags, one file per verb. Parses, resolves the
//! store locations and hands over to the verb; every error ends as one `Error:` line (plus a
//! `hint:` line) and exit status 125, or the container's own status.

pub mod attach;
pub mod commit;
pub mod cp;
pub mod exec;
pub mod export;
pub mod format;
pub mod healthcheck;
pub mod history;
pub mod image;
pub mod images;
pub mod import;
pub mod info;
pub mod inspect;
pub mod lifecycle;
pub mod limits;
pub mod load;
pub mod login;
pub mod logs;
pub mod netflags;
pub mod network;
pub mod pause;
pub mod port;
pub mod ps;
pub mod pull;
pub mod push;
pub mod rmi;
pub mod run;
pub mod save;
pub mod stats;
pub mod system;
pub mod tag;
pub mod top;
pub mod update;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::hint;

/// rl — rootless containers: no daemon, no root.
#[derive(Debug, Parser)]
#[command(name = "rl", version, about, propagate_version = true)]
pub struct Cli {
    /// Store for containers and images (default: $XDG_DATA_HOME/rl).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Directory for runtime files (default: $XDG_RUNTIME_DIR/rl).
    #[arg(long, global = true, value_name = "DIR")]
    pub runroot: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a command in a new container.
    Run(Box<run::RunArgs>),
    /// Run a command in a running container.
    Exec(exec::ExecArgs),
    /// Pull an image from a registry.
    Pull(pull::PullArgs),
    /// Push an image to a registry.
    Push(push::PushArgs),
    /// List images.
    Images(images::ImagesArgs),
    /// Remove images (untag names, delete images no name or container needs).
    Rmi(rmi::RmiArgs),
    /// Give an image another name.
    Tag(tag::TagArgs),
    /// Show how an image was built, newest layer first.
    History(history::HistoryArgs),
    /// Write images to an archive (docker-archive or oci-archive).
    Save(save::SaveArgs),
    /// Load images from an archive (docker-archive or oci-archive).
    Load(load::LoadArgs),
    /// Manage images (ls, rm, inspect, prune, tag, history, pull, push, save, load).
    Image(image::ImageArgs),
    /// Make an image of a stopped container's changes on top of its image.
    Commit(commit::CommitArgs),
    /// Copy files between a stopped container and the host.
    Cp(cp::CpArgs),
    /// Write a stopped container's filesystem as a tar.
    Export(export::ExportArgs),
    /// Make a one-layer image of a filesystem tar.
    Import(import::ImportArgs),
    /// Manage rl (df: disk usage).
    System(system::SystemArgs),
    /// Create a container without starting it.
    Create(Box<run::RunArgs>),
    /// Start created or stopped containers (in the background).
    Start(lifecycle::StartArgs),
    /// Stop running containers (stop signal, then SIGKILL after a timeout).
    Stop(lifecycle::StopArgs),
    /// Stop and start containers again.
    Restart(lifecycle::StopArgs),
    /// Send a signal to containers.
    Kill(lifecycle::KillArgs),
    /// Wait for containers to stop; print their exit codes.
    Wait(lifecycle::WaitArgs),
    /// Remove containers.
    Rm(lifecycle::RmArgs),
    /// Rename a container.
    Rename(lifecycle::RenameArgs),
    /// List containers.
    Ps(ps::PsArgs),
    /// Show a container's output.
    Logs(logs::LogsArgs),
    /// Attach the terminal to a running container (detach with Ctrl-P Ctrl-Q).
    Attach(attach::AttachArgs),
    /// Show a container's processes.
    Top(top::TopArgs),
    /// Show containers' CPU, memory, pids, network and block I/O use.
    Stats(stats::StatsArgs),
    /// Freeze every process of running containers.
    Pause(pause::PauseArgs),
    /// Thaw paused containers.
    Unpause(pause::PauseArgs),
    /// Change the resource limits of containers (running ones at once).
    Update(update::UpdateArgs),
    /// Show what this host offers rootless containers (cgroups, ids, helpers) and the store.
    Info(info::InfoArgs),
    /// Run a container's health check (`run CONTAINER`).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Show a container's published ports.
    Port(port::PortArgs),
    /// Manage user networks (create, ls, inspect, rm, prune, connect, disconnect).
    Network(network::NetworkArgs),
    /// Show containers or images as JSON.
    Inspect(inspect::InspectArgs),
    /// Manage containers (ls, ps, rm, prune, inspect, logs, start, stop, kill, wait, rename).
    Container(ContainerArgs),
    /// Log in to a registry (credentials go to auth.json).
    Login(login::LoginArgs),
    /// Log out of a registry.
    Logout(login::LogoutArgs),
}

/// Runs the command line of this process.
pub fn main() -> i32 {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The hidden stage-1 entry point skips argument parsing: it is on every container's start path.
    if args.get(1).is_some_and(|a| a == "__stage1") {
        return crate::sandbox::stage1::main_exec(&args[2..]);
    }
    // A detached container's monitor: as small as it can be, so no argument parser either.
    if args.get(1).is_some_and(|a| a == "__monitor") {
        return crate::monitor::detached::main(&args[2..]);
    }
    // The per-user network daemon of user networks.
    if args.get(1).is_some_and(|a| a == "__netd") {
        return crate::network::netd::main(&args[2..]);
    }
    // The holder of the user's shared user namespace.
    if args.get(1).is_some_and(|a| a == "__pause") {
        return crate::userns::pause::main(&args[2..]);
    }
    // A container's port forwarder.
    if args.get(1).is_some_and(|a| a == "__forward") {
        return crate::network::proxy::main(&args[2..]);
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { hint::EXIT_RL_FAILED } else { 0 };
            let _ = e.print();
            return code;
        }
    };
    // A run with limits from a cgroup the user does not own: into a scope systemd delegates.
    if let Command::Run(args) = &cli.command {
        if let Some(e) = args.limits.resources().ok().and_then(|r| crate::cgroup::systemd::rerun_in_scope(&r)) {
            return hint::report(&anyhow::Error::new(e).context("exec systemd-run"));
        }
    }
    if matches!(cli.command, Command::Run(_) | Command::Create(_) | Command::Start(_) | Command::Restart(_)) {
        crate::cgroup::settle();
    }
    let result = match cli.command {
        Command::Run(args) => run::run(cli.root, cli.runroot, *args),
        Command::Exec(args) => exec::run(cli.root, cli.runroot, args),
        Command::Pull(args) => pull::run(cli.root, cli.runroot, args),
        Command::Push(args) => push::run(cli.root, cli.runroot, args),
        Command::Images(args) => images::run(cli.root, cli.runroot, args),
        Command::Rmi(args) => rmi::run(cli.root, cli.runroot, args),
        Command::Tag(args) => tag::run(cli.root, cli.runroot, args),
        Command::History(args) => history::run(cli.root, cli.runroot, args),
        Command::Save(args) => save::run(cli.root, cli.runroot, args),
        Command::Load(args) => load::run(cli.root, cli.runroot, args),
        Command::Image(args) => image::run(cli.root, cli.runroot, args),
        Command::Commit(args) => commit::run(cli.root, cli.runroot, args),
        Command::Cp(args) => cp::run(cli.root, cli.runroot, args),
        Command::Export(args) => export::run(cli.root, cli.runroot, args),
        Command::Import(args) => import::run(cli.root, cli.runroot, args),
        Command::System(args) => system::run(cli.root, cli.runroot, args),
        Command::Create(args) => run::create(cli.root, cli.runroot, *args),
        Command::Start(args) => lifecycle::start(cli.root, cli.runroot, args),
        Command::Stop(args) => lifecycle::stop(cli.root, cli.runroot, args),
        Command::Restart(args) => lifecycle::restart(cli.root, cli.runroot, args),
        Command::Kill(args) => lifecycle::kill(cli.root, cli.runroot, args),
        Command::Wait(args) => lifecycle::wait(cli.root, cli.runroot, args),
        Command::Rm(args) => lifecycle::rm(cli.root, cli.runroot, args),
        Command::Rename(args) => lifecycle::rename(cli.root, cli.runroot, args),
        Command::Ps(args) => ps::run(cli.root, cli.runroot, args),
        Command::Logs(args) => logs::run(cli.root, cli.runroot, args),
        Command::Attach(args) => attach::run(cli.root, cli.runroot, args),
        Command::Top(args) => top::top(cli.root, cli.runroot, args),
        Command::Stats(args) => stats::run(cli.root, cli.runroot, args),
        Command::Pause(args) => pause::run(cli.root, cli.runroot, args, true),
        Command::Unpause(args) => pause::run(cli.root, cli.runroot, args, false),
        Command::Update(args) => update::run(cli.root, cli.runroot, args),
        Command::Info(args) => info::run(cli.root, cli.runroot, args),
        Command::Healthcheck(args) => healthcheck::run(cli.root, cli.runroot, args),
        Command::Port(args) => port::run(cli.root, cli.runroot, args),
        Command::Network(args) => network::run(cli.root, cli.runroot, args),
        Command::Inspect(args) => inspect::run(cli.root, cli.runroot, args),
        Command::Container(c) => container(cli.root, cli.runroot, c),
        Command::Login(args) => login::login(args),
        Command::Logout(args) => login::logout(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => hint::report(&e),
    }
}

#[derive(Debug, clap::Args)]
pub struct ContainerArgs {
    #[command(subcommand)]
    pub command: ContainerCommand,
}

#[derive(Debug, Subcommand)]
pub enum ContainerCommand {
    /// List containers.
    #[command(alias = "list", alias = "ps")]
    Ls(ps::PsArgs),
    /// Create a container without starting it.
    Create(Box<run::RunArgs>),
    /// Run a command in a new container.
    Run(Box<run::RunArgs>),
    /// Start containers.
    Start(lifecycle::StartArgs),
    /// Stop containers.
    Stop(lifecycle::StopArgs),
    /// Restart containers.
    Restart(lifecycle::StopArgs),
    /// Signal containers.
    Kill(lifecycle::KillArgs),
    /// Wait for containers to stop.
    Wait(lifecycle::WaitArgs),
    /// Remove containers.
    Rm(lifecycle::RmArgs),
    /// Rename a container.
    Rename(lifecycle::RenameArgs),
    /// Show a container's output.
    Logs(logs::LogsArgs),
    /// Attach to a running container.
    Attach(attach::AttachArgs),
    /// Show a container's processes.
    Top(top::TopArgs),
    /// Show a container's published ports.
    Port(port::PortArgs),
    /// Show containers as JSON.
    Inspect(inspect::InspectArgs),
    /// Remove every stopped container.
    Prune(lifecycle::PruneArgs),
}

fn container(root: Option<PathBuf>, runroot: Option<PathBuf>, c: ContainerArgs) -> anyhow::Result<i32> {
    match c.command {
        ContainerCommand::Ls(a) => ps::run(root, runroot, ps::PsArgs { all: a.all, ..a }),
        ContainerCommand::Create(a) => run::create(root, runroot, *a),
        ContainerCommand::Run(a) => run::run(root, runroot, *a),
        ContainerCommand::Start(a) => lifecycle::start(root, runroot, a),
        ContainerCommand::Stop(a) => lifecycle::stop(root, runroot, a),
        ContainerCommand::Restart(a) => lifecycle::restart(root, runroot, a),
        ContainerCommand::Kill(a) => lifecycle::kill(root, runroot, a),
        ContainerCommand::Wait(a) => lifecycle::wait(root, runroot, a),
        ContainerCommand::Rm(a) => lifecycle::rm(root, runroot, a),
        ContainerCommand::Rename(a) => lifecycle::rename(root, runroot, a),
        ContainerCommand::Logs(a) => logs::run(root, runroot, a),
        ContainerCommand::Attach(a) => attach::run(root, runroot, a),
        ContainerCommand::Top(a) => top::top(root, runroot, a),
        ContainerCommand::Port(a) => port::run(root, runroot, a),
        ContainerCommand::Inspect(mut a) => {
            a.kind = Some("container".into());
            inspect::run(root, runroot, a)
        }
        ContainerCommand::Prune(a) => lifecycle::prune(root, runroot, a),
    }
}
