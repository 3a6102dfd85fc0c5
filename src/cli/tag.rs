//! `rl tag SOURCE TARGET` (also `rl image tag`): gives an image another name in the store's
//! tags, under the images lock. A name that pointed at another image moves, as in Docker; the
//! other image keeps its record (dangling if that was its last name, for `rl image prune`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use super::image::{no_such, reference_of};
use super::pull::parse_reference;
use crate::store::images;
use crate::store::Paths;

#[derive(Debug, Args)]
pub struct TagArgs {
    /// The image: a name or an id (prefix).
    #[arg(value_name = "SOURCE_IMAGE")]
    pub source: String,
    /// The new name: NAME[:TAG], normalized like `rl pull`'s (`latest` when no tag is given).
    #[arg(value_name = "TARGET_IMAGE")]
    pub target: String,
}

/// `rl tag`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: TagArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let target = parse_reference(&args.target)?;
    if target.digest.is_some() {
        bail!("tag `{}`: a tag cannot hold a digest; give NAME[:TAG]", args.target);
    }
    let source = reference_of(&args.source)?;
    let mut store = images::lock(&paths)?;
    let found = store.find(&args.source, source.as_ref())?.ok_or_else(|| no_such(&args.source))?;
    store.tags.insert(target.to_string(), found.record.id);
    store.save_tags()?;
    Ok(0)
}
