//! `rl rmi [-f] IMAGE...` (also `rl image rm`): untags names and deletes the images nothing
//! needs any more, with Docker's rules:
//!
//! - A name removes that name. Removing a repository's last tag also removes the image's
//!   digest names in that repository (`repo@sha256:…`). An image left without names is deleted.
//! - An id deletes the image with all its names, but without `-f` only when those names are a
//!   single reference (one tag, plus digests of its repository): Docker refuses an id "referenced
//!   in multiple repositories", because the user probably meant one name.
//! - An image a container uses is not deleted (nor left nameless) without `-f`; a running
//!   container's image not even with `-f`. With `-f` the layers that a stopped container's
//!   rootfs lists stay (Docker keeps them through the container's layer chain), only the record
//!   and names go.
//!
//! Deleting is two steps: under the images lock, the record and every layer no other image and
//! no container uses are renamed into one trash directory in staging (an atomic step each: the
//! store never shows half a layer); after the lock, a stage-1 process in the user namespace
//! deletes that tree, since layers hold files of subordinate ids the user cannot delete.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::image::{no_such, reference_of};
use crate::config::ContainerConfig;
use crate::hint;
use crate::sandbox::msg::{Job, Msg};
use crate::sandbox::parent::{Spawn, Stage1};
use crate::state::{self, State, Status};
use crate::store::images::{self, is_canonical, repo_of, ImageRecord, Trash};
use crate::store::Paths;
use crate::userns::UsernsMode;

#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Delete an image a stopped container uses, and by id even when it has several names.
    #[arg(short, long)]
    pub force: bool,
    /// Image names or ids (prefixes of at least 4 hex digits).
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
}

/// One thing a removal did, printed as Docker prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A name was removed.
    Untagged(String),
    /// An image (its id) or a layer (its diff id) was deleted.
    Deleted(String),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Untagged(n) => write!(f, "Untagged: {n}"),
            Event::Deleted(d) => write!(f, "Deleted: {d}"),
        }
    }
}

/// Removals under one hold of the images lock, deleted together at [`Remover::finish`].
pub struct Remover<'a> {
    store: images::Locked<'a>,
    containers: Vec<(ContainerConfig, Option<State>)>,
    /// Every container's lower directories: layers that must stay.
    lowers: BTreeSet<PathBuf>,
    /// Bytes of the layers taken out so far.
    pub reclaimed: u64,
}

/// Whether the container's process is alive (a record may say running after a crash).
pub(crate) fn running(state: &Option<State>) -> bool {
    match state {
        Some(State { status: Status::Running, pid: Some(pid), .. }) => Path::new(&format!("/proc/{pid}")).exists(),
        _ => false,
    }
}

/// `1a2b3c4d5e6f (name)`.
fn show(c: &ContainerConfig) -> String {
    format!("{} ({})", c.id.get(..12).unwrap_or(&c.id), c.name)
}

impl<'a> Remover<'a> {
    /// Takes the images lock and reads the containers.
    pub fn new(paths: &'a Paths) -> Result<Remover<'a>> {
        let store = images::lock(paths)?;
        let containers = state::list(paths);
        let lowers = containers.iter().flat_map(|(c, _)| c.dirs.lower.iter().cloned()).collect();
        Ok(Remover { store, containers, lowers, reclaimed: 0 })
    }

    /// Every image with its names, newest first.
    pub fn list(&self) -> Result<Vec<(ImageRecord, Vec<String>)>> {
        self.store.list()
    }

    /// The containers made from image `id`, and whether each runs.
    pub fn users(&self, id: &str) -> Vec<(&ContainerConfig, bool)> {
        self.containers.iter().filter(|(c, _)| c.image.as_deref() == Some(id)).map(|(c, s)| (c, running(s))).collect()
    }

    /// Refuses to delete an image a running container uses, or without `force` any container.
    fn check_users(&self, arg: &str, id: &str, force: bool) -> Result<()> {
        let users = self.users(id);
        if let Some((c, _)) = users.iter().find(|(_, run)| *run) {
            bail!("remove image `{arg}`: running container {} uses it; stop the container first", show(c));
        }
        if let (Some((c, _)), false) = (users.first(), force) {
            bail!("remove image `{arg}`: container {} uses it; remove the container first, or use -f", show(c));
        }
        Ok(())
    }

    /// `rmi` of one argument.
    pub fn remove(&mut self, arg: &str, force: bool) -> Result<Vec<Event>> {
        let reference = reference_of(arg)?;
        let found = self.store.find(arg, reference.as_ref())?.ok_or_else(|| no_such(arg))?;
        let rec = found.record;
        let names = images::names_of(&self.store.tags, &rec.id);
        match found.name {
            Some(name) => {
                let untag = untag_set(&names, &name);
                if untag.len() < names.len() {
                    for n in &untag {
                        self.store.tags.remove(n);
                    }
                    self.store.save_tags()?;
                    return Ok(untag.into_iter().map(Event::Untagged).collect());
                }
                self.check_users(arg, &rec.id, force)?;
            }
            None => {
                if names.len() > 1 && !force && !single_reference(&names) {
                    bail!(
                        "remove image `{arg}`: the image is referenced in multiple repositories ({}); remove the \
                         names one by one, or use -f to remove them all",
                        names.join(", ")
                    );
                }
                self.check_users(arg, &rec.id, force)?;
            }
        }
        self.delete(&rec)
    }

    /// Deletes image `rec` with all its names, without checks: the caller decided.
    pub fn delete(&mut self, rec: &ImageRecord) -> Result<Vec<Event>> {
        let names = images::names_of(&self.store.tags, &rec.id);
        let removed = self.store.remove(rec, &self.lowers)?;
        for d in &removed.kept {
            eprintln!("warning: layer `{d}`: could not be moved out of the store; it stays there, unused");
        }
        self.reclaimed += removed.bytes;
        let mut events: Vec<Event> = names.into_iter().map(Event::Untagged).collect();
        events.push(Event::Deleted(rec.id.clone()));
        events.extend(removed.layers.into_iter().map(Event::Deleted));
        Ok(events)
    }

    /// Releases the lock and deletes what was removed; returns the bytes reclaimed.
    pub fn finish(self) -> Result<u64> {
        let reclaimed = self.reclaimed;
        if let Some(trash) = self.store.unlock() {
            delete_trash(&trash)?;
        }
        Ok(reclaimed)
    }
}

/// The names that go with `name`: itself, and when it is the repository's last tag, the
/// image's digest names in that repository (they would only keep a nameless image alive).
fn untag_set(names: &[String], name: &str) -> Vec<String> {
    let mut out = vec![name.to_string()];
    if is_canonical(name) {
        return out;
    }
    let repo = repo_of(name);
    let other_tag = names.iter().any(|n| n != name && !is_canonical(n) && repo_of(n) == repo);
    if !other_tag {
        out.extend(names.iter().filter(|n| is_canonical(n) && repo_of(n) == repo).cloned());
    }
    out
}

/// Docker's `isSingleReference`: at most one tag, and digest names of that one repository.
fn single_reference(names: &[String]) -> bool {
    if names.len() <= 1 {
        return names.len() == 1;
    }
    let tags: Vec<&String> = names.iter().filter(|n| !is_canonical(n)).collect();
    if tags.len() > 1 {
        return false;
    }
    let repos: BTreeSet<&str> = names.iter().filter(|n| is_canonical(n)).map(|n| repo_of(n)).collect();
    let single = tags.first().copied().or(names.first()).map(|n| repo_of(n));
    repos.len() == 1 && single.is_some_and(|s| repos.contains(s))
}

/// Deletes the trash: inside the user namespace when it holds layers.
fn delete_trash(trash: &Trash) -> Result<()> {
    let what = || format!("delete the removed images in `{}`", trash.dir.display());
    if !trash.has_layers {
        return crate::sandbox::remove_tree(&trash.dir).with_context(what);
    }
    let plan = super::run::id_maps(UsernsMode::Root, true)?;
    let how = Spawn::default();
    let stage = Stage1::spawn(&plan, Job::RemoveTree(trash.dir.clone()), how, || Ok(())).with_context(what)?;
    let result = match stage.expect_msg() {
        Ok(Msg::Done) => Ok(()),
        Ok(other) => Err(stage.fail(other)),
        Err(e) => Err(e),
    };
    stage.reap();
    result.with_context(what)
}

/// `rl rmi`.
pub fn run(root: Option<PathBuf>, runroot: Option<PathBuf>, args: RmiArgs) -> Result<i32> {
    let paths = Paths::resolve(root, runroot)?;
    let mut remover = Remover::new(&paths)?;
    let mut code = 0;
    for arg in &args.images {
        match remover.remove(arg, args.force) {
            Ok(events) => events.iter().for_each(|e| println!("{e}")),
            Err(e) => code = hint::report(&e),
        }
    }
    remover.finish()?;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn last_tag_takes_the_repository_digests_along() {
        let d = "@sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let names = v(&["r/a:1", &format!("r/a{d}"), &format!("r/b{d}")]);
        assert_eq!(untag_set(&names, "r/a:1"), v(&["r/a:1", &format!("r/a{d}")]));
        let names = v(&["r/a:1", "r/a:2", &format!("r/a{d}")]);
        assert_eq!(untag_set(&names, "r/a:1"), v(&["r/a:1"]));
        assert_eq!(untag_set(&names, &format!("r/a{d}")), v(&[&format!("r/a{d}")]));
        // A registry port is not a tag.
        let names = v(&["h:5000/a:1", &format!("h:5000/a{d}")]);
        assert_eq!(untag_set(&names, "h:5000/a:1").len(), 2);
    }

    #[test]
    fn single_reference_is_one_tag_and_its_digests() {
        let d = "@sha256:0000000000000000000000000000000000000000000000000000000000000000";
        let cases: [(&[&str], bool); 6] = [
            (&["r/a:1"], true),
            (&["r/a:1", "r/a:2"], false),
            (&["r/a:1", "r/b:1"], false),
            (&["r/a:1", "r/a@x"], true),
            (&["r/a:1", "r/b@x"], false),
            (&["r/a@x", "r/a:t@y"], true),
        ];
        for (names, want) in cases {
            let names: Vec<String> = names.iter().map(|n| n.replace("@x", d).replace("@y", d)).collect();
            assert_eq!(single_reference(&names), want, "{names:?}");
        }
    }
}
