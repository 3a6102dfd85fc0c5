//! `rl import [-c CHANGE]… [-m MSG] FILE|- [REF]`: a tar of a root filesystem (plain, gzip or
//! zstd; `-` for stdin, never a terminal) becomes a one-layer image for this host's platform,
//! its config made of the `--change` instructions ([`crate::image::commit`]). Prints the image
//! id; REF names it.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args;

use crate::hint::with_fix;
use crate::image::commit::{self, Source};
use crate::store::Paths;
use crate::userns::UsernsMode;

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// A Dockerfile instruction for the config: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL,
    /// USER, VOLUME, WORKDIR.
    #[arg(short, long = "change", value_name = "CHANGE")]
    pub change: Vec<String>,
    /// A comment for the image's history.
    #[arg(short, long, value_name = "MSG")]
    pub message: Option<String>,
    /// The tar file, or `-` for stdin.
    #[arg(value_name = "FILE|-")]
    pub file: String,
    /// The name to give the image: NAME[:TAG].
    #[arg(value_name = "REF")]
    pub reference: Option<String>,
}

/// `rl import`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: ImportArgs) -> Result<i32> {
    let source = match args.file.as_str() {
        "-" if std::io::stdin().is_terminal() => {
            return Err(with_fix(
                "import: refusing to read a tar from a terminal",
                "give a file, or redirect one: `rl import - NAME < FILE.tar`",
            ))
        }
        "-" => Source::Stdin,
        f => Source::File(PathBuf::from(f)),
    };
    let names = names(args.reference.as_deref())?;
    let paths = Paths::resolve(root, runroot)?;
    let plan = super::run::id_maps(UsernsMode::Root, true)?;
    let opts = commit::Options { message: args.message, author: None, changes: args.change, names };
    let id = commit::import(&paths, &plan, &source, &opts)?;
    println!("{id}");
    Ok(0)
}

/// The full name REF stands for (`latest` when it has no tag); a digest is refused.
pub fn names(reference: Option<&str>) -> Result<Vec<String>> {
    let Some(r) = reference else { return Ok(Vec::new()) };
    let parsed = super::pull::parse_reference(r)?;
    if parsed.digest.is_some() {
        bail!("image name `{r}`: a new image cannot be named by a digest; give NAME[:TAG]");
    }
    Ok(vec![parsed.to_string()])
}
