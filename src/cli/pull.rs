//! `rl pull [-q] [--platform os/arch[/variant]] IMAGE`: fetch an image into the store.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::image::manifest::Platform;
use crate::image::pull::{self, Options};
use crate::image::reference::Reference;
use crate::store::images::ImageRecord;
use crate::store::Paths;
use crate::userns::{MapPlan, UsernsMode};

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Print nothing but the image id.
    #[arg(short, long)]
    pub quiet: bool,
    /// Pull the image for this platform instead of the host's (os/arch[/variant]).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub platform: Option<String>,
    /// The image reference (`alpine`, `host:port/repo:tag`, `repo@sha256:…`).
    pub image: String,
}

/// Parses an image reference for a command line verb.
pub fn parse_reference(s: &str) -> Result<Reference> {
    Reference::parse(s).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Pulls `r` with the user's id maps (layers are unpacked inside the user namespace).
pub fn pull_image(paths: &Paths, r: &Reference, opts: &Options) -> Result<ImageRecord> {
    let plan: MapPlan = crate::cli::run::id_maps(UsernsMode::Root, opts.quiet)?;
    pull::pull(paths, r, &plan, opts).with_context(|| format!("pull `{r}`"))
}

/// `rl pull`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: PullArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let r = parse_reference(&args.image)?;
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    let rec = pull_image(&paths, &r, &Options { platform, quiet: args.quiet })?;
    println!("{}", rec.id);
    Ok(0)
}
