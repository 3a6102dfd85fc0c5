//! The command line: Docker/Podman verbs and flags, one file per verb. Parses, resolves the
//! store locations and hands over to the verb; every error ends as one `Error:` line (plus a
//! `hint:` line) and exit status 125, or the container's own status.

pub mod exec;
pub mod format;
pub mod history;
pub mod image;
pub mod images;
pub mod load;
pub mod login;
pub mod pull;
pub mod push;
pub mod rmi;
pub mod run;
pub mod save;
pub mod system;
pub mod tag;

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
    /// Manage rl (df: disk usage).
    System(system::SystemArgs),
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
        return crate::sandbox::stage1::main();
    }
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { hint::EXIT_RL_FAILED } else { 0 };
            let _ = e.print();
            return code;
        }
    };
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
        Command::System(args) => system::run(cli.root, cli.runroot, args),
        Command::Login(args) => login::login(args),
        Command::Logout(args) => login::logout(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => hint::report(&e),
    }
}
