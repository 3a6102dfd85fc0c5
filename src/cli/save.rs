//! `rl save [-o FILE] [--format docker-archive|oci-archive] IMAGE...`: stored images into one
//! archive, as `docker save` and `podman save` write it; stdout without `-o`, but never a
//! terminal.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::image::reference_of;
use crate::hint;
use crate::image::archive::{self, hinted, Format};
use crate::image::archive_save::{self, Output, Selected};
use crate::store::images as store;
use crate::store::Paths;
use crate::userns::UsernsMode;

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Write the archive to FILE instead of stdout.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// docker-archive (the default) or oci-archive.
    #[arg(long, default_value = "docker-archive", value_name = "FORMAT")]
    pub format: String,
    /// Image names or ids; every name given is recorded in the archive.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// `rl save`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: SaveArgs) -> Result<i32> {
    Ok(save(root, runroot, &args).map_or_else(|e| report(&e), |()| 0))
}

/// Prints `err` as every verb does, plus the archive's own `hint:` line when it has one.
pub fn report(err: &anyhow::Error) -> i32 {
    let code = hint::report(err);
    if let Some(h) = err.chain().find_map(|e| e.downcast_ref::<archive::Hinted>()) {
        eprintln!("hint: {}", h.hint);
    }
    code
}

fn save(root: Option<PathBuf>, runroot: Option<PathBuf>, args: &SaveArgs) -> Result<()> {
    let format = Format::parse(&args.format)?;
    let out = match &args.output {
        Some(p) => Output::File(p.clone()),
        None if std::io::stdout().is_terminal() => {
            return Err(hinted(
                "save: refusing to write an archive to a terminal",
                "give a file with `-o FILE`, or redirect: `rl save IMAGE > FILE`",
            ))
        }
        None => Output::Stdout,
    };
    let paths = Paths::resolve(root, runroot)?;
    let tags = store::tags(&paths)?;
    let mut selected: Vec<Selected> = Vec::new();
    for arg in &args.images {
        let found = store::find_in(&paths, &tags, arg, reference_of(arg)?.as_ref())?.ok_or_else(|| {
            hinted(
                format!("image `{arg}`: no such image in the store"),
                "`rl images` lists the stored images; `rl pull IMAGE` fetches one",
            )
        })?;
        let names: Vec<String> = found.name.into_iter().collect();
        match selected.iter_mut().find(|s| s.record.id == found.record.id) {
            Some(s) => {
                for n in names {
                    if !s.names.contains(&n) {
                        s.names.push(n);
                    }
                }
            }
            None => selected.push(Selected { record: found.record, names }),
        }
    }
    let plan = super::run::id_maps(UsernsMode::Root, true)?;
    let what = match &args.output {
        Some(p) => p.display().to_string(),
        None => "stdout".to_string(),
    };
    archive_save::save(&paths, &plan, &selected, format, &out).with_context(|| format!("save to `{what}`"))
}
