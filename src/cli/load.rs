//! `rl load [-i FILE] [-q]`: the images of a docker-archive or oci-archive (plain, gzip or zstd)
//! into the store, from stdin without `-i`, but never from a terminal. Prints `Loaded image:
//! NAME` per name, or `Loaded image ID: sha256:…` for a nameless image, as Docker does.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::image::archive::hinted;
use crate::image::archive_load::{self, Input};
use crate::store::Paths;
use crate::userns::UsernsMode;

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// Read the archive from FILE instead of stdin.
    #[arg(short, long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Print no warnings, only what was loaded.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `rl load`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: LoadArgs) -> Result<i32> {
    Ok(load(root, runroot, &args).map_or_else(|e| super::save::report(&e), |()| 0))
}

fn load(root: Option<PathBuf>, runroot: Option<PathBuf>, args: &LoadArgs) -> Result<()> {
    let input = match &args.input {
        Some(p) => Input::File(p.clone()),
        None if std::io::stdin().is_terminal() => {
            return Err(hinted(
                "load: refusing to read an archive from a terminal",
                "give a file with `-i FILE`, or redirect: `rl load < FILE`",
            ))
        }
        None => Input::Stdin,
    };
    let paths = Paths::resolve(root, runroot)?;
    let plan = super::run::id_maps(UsernsMode::Root, args.quiet)?;
    let loaded = archive_load::load(&paths, &plan, &input)?;
    for line in archive_load::report_lines(&loaded) {
        println!("{line}");
    }
    Ok(())
}
