//! `rl push [-q] IMAGE [DESTINATION]`: upload a stored image to a registry.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::image::push;
use crate::store::{images, Paths};
use crate::userns::UsernsMode;

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Print only the manifest digest.
    #[arg(short, long)]
    pub quiet: bool,
    /// The stored image (name or id).
    pub image: String,
    /// Where to push (default: the image's name).
    pub destination: Option<String>,
}

/// `rl push`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: PushArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    // A name (short names through the search registries) or an id.
    let found = match crate::image::reference::Reference::parse(&args.image) {
        Ok(_) => {
            super::pull::find_stored(&paths, &super::pull::candidates(&args.image)?)?.map(|(r, rec)| (Some(r), rec))
        }
        Err(_) => images::find(&paths, &args.image, None)?.map(|rec| (None, rec)),
    };
    let Some((source, rec)) = found else { bail!("image `{}`: not in the store", args.image) };
    let dest = match (&args.destination, &source) {
        (Some(d), _) => super::pull::parse_reference(d)?,
        (None, Some(s)) => s.clone(),
        (None, None) => bail!("push `{}`: give a destination for an image named by id", args.image),
    };
    if dest.digest.is_some() {
        bail!("push destination `{dest}`: must be a tag, not a digest");
    }
    let plan = super::run::id_maps(UsernsMode::Root, true)?;
    let digest = push::push(&paths, &rec, &dest, &plan, args.quiet).with_context(|| format!("push `{dest}`"))?;
    println!("{digest}");
    Ok(0)
}
