//! `rl commit [-m MSG] [-a AUTHOR] [-c CHANGE]… CONTAINER [REF]`: a stopped container's changes
//! (its upper dir) become one more layer on top of its image ([`crate::image::commit`]). Prints
//! the new image's id; REF names it. A running container is refused rather than paused: rl has
//! no freezer yet, and a layer read while files change could be torn.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::image::commit;
use crate::store::Paths;
use crate::userns::UsernsMode;

#[derive(Debug, Args)]
pub struct CommitArgs {
    /// A comment for the new layer's history entry.
    #[arg(short, long, value_name = "MSG")]
    pub message: Option<String>,
    /// The image's author.
    #[arg(short, long, value_name = "AUTHOR")]
    pub author: Option<String>,
    /// A Dockerfile instruction for the config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL,
    /// USER, VOLUME, WORKDIR.
    #[arg(short, long = "change", value_name = "CHANGE")]
    pub change: Vec<String>,
    /// Accepted for Docker's sake: the container must be stopped anyway.
    #[arg(short, long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
    pub pause: Option<bool>,
    /// The container: a name, id or unique id prefix.
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// The name to give the image: NAME[:TAG].
    #[arg(value_name = "REF")]
    pub reference: Option<String>,
}

/// `rl commit`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: CommitArgs) -> Result<i32> {
    let names = super::import::names(args.reference.as_deref())?;
    let paths = Paths::resolve(root, runroot)?;
    let t = super::cp::stopped(&paths, &args.container, "commit")?;
    let cfg = &t.cfg;
    let plan = super::run::id_maps(UsernsMode::Root, true)?;
    let opts = commit::Options { message: args.message, author: args.author, changes: args.change, names };
    let id = commit::commit(&paths, &plan, &t, &opts).with_context(|| format!("commit container `{}`", cfg.name))?;
    println!("{id}");
    Ok(0)
}
