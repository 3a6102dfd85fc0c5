//! `rl pull [-q] [--platform os/arch[/variant]] IMAGE`: fetch an image into the store.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::image::manifest::Platform;
use crate::image::pull::{self, Options};
use crate::image::reference::Reference;
use crate::image::registries::Config;
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

/// The references IMAGE may stand for, in order (a short name through the unqualified-search
/// registries of registries.conf).
pub fn candidates(input: &str) -> Result<Vec<Reference>> {
    Config::load()?.candidates(input).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The first of `candidates` that is in the store.
pub fn find_stored(paths: &Paths, candidates: &[Reference]) -> Result<Option<(Reference, ImageRecord)>> {
    for r in candidates {
        if let Some(rec) = crate::store::images::find(paths, &r.to_string(), Some(r))? {
            return Ok(Some((r.clone(), rec)));
        }
    }
    Ok(None)
}

/// Pulls the first of `candidates` a registry has; when none does, one error naming each try.
pub fn pull_first(
    paths: &Paths,
    input: &str,
    candidates: &[Reference],
    opts: &Options,
) -> Result<(Reference, ImageRecord)> {
    if let [only] = candidates {
        return pull_image(paths, only, opts).map(|rec| (only.clone(), rec));
    }
    let mut errors = Vec::new();
    for r in candidates {
        match pull_image(paths, r, opts) {
            Ok(rec) => return Ok((r.clone(), rec)),
            Err(e) => {
                // The pull's own context repeats the name: keep the cause.
                errors.push(format!("`{r}`: {:#}", e.root_cause()));
            }
        }
    }
    bail!(
        "image `{input}`: no search registry has it (unqualified-search-registries in registries.conf): {}",
        errors.join("; ")
    )
}

/// `rl pull`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: PullArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let cands = candidates(&args.image)?;
    let platform = args.platform.as_deref().map(Platform::parse).transpose()?;
    let (_, rec) = pull_first(&paths, &args.image, &cands, &Options { platform, quiet: args.quiet })?;
    println!("{}", rec.id);
    Ok(0)
}
