//! Where things live. The store (`--root`, `$RL_ROOT`, else `$XDG_DATA_HOME/rl`, else
//! `~/.local/share/rl`) keeps what survives a reboot: containers' config, state and writable
//! layers (later: images, layers, volumes). The run root (`--runroot`, `$RL_RUNROOT`, else
//! `$XDG_RUNTIME_DIR/rl`) keeps what dies with the session: mount points and generated files.
//! Both are 0700: on a shared host no other user may list or read them.
//!
//! Without `XDG_RUNTIME_DIR` (after `su` or `sudo -u`) rl does what Podman does: it falls back
//! to a private directory of the user's under /tmp, refusing one that someone else owns.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// The store and run-root locations for this invocation.
#[derive(Debug, Clone)]
pub struct Paths {
    pub root: PathBuf,
    pub runroot: PathBuf,
}

impl Paths {
    /// Resolves the locations from the global options and the environment.
    pub fn resolve(root: Option<PathBuf>, runroot: Option<PathBuf>) -> Result<Paths> {
        let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        let root = match root.or_else(|| env("RL_ROOT")) {
            Some(r) => r,
            None => match env("XDG_DATA_HOME") {
                Some(d) => d.join("rl"),
                None => match env("HOME") {
                    Some(h) => h.join(".local/share/rl"),
                    None => bail!("locate the store: neither --root, RL_ROOT, XDG_DATA_HOME nor HOME is set"),
                },
            },
        };
        let runroot = match runroot.or_else(|| env("RL_RUNROOT")) {
            Some(r) => r,
            None => match env("XDG_RUNTIME_DIR") {
                Some(d) => d.join("rl"),
                None => fallback_runtime_dir()?,
            },
        };
        let paths = Paths { root: absolute(root)?, runroot: absolute(runroot)? };
        private_dir(&paths.root)?;
        private_dir(&paths.runroot)?;
        Ok(paths)
    }

    /// All containers' records: `<root>/containers`.
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// One container's record and writable layer.
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }

    /// One container's runtime files (mount point, generated /etc files).
    pub fn container_run(&self, id: &str) -> PathBuf {
        self.runroot.join("containers").join(id)
    }

    /// The lock serialising changes to the set of containers (names, creation, removal).
    pub fn containers_lock(&self) -> PathBuf {
        self.root.join("containers.lock")
    }
}

fn absolute(p: PathBuf) -> Result<PathBuf> {
    if p.is_absolute() {
        return Ok(p);
    }
    Ok(std::env::current_dir().context("read the current directory")?.join(p))
}

/// Creates `dir` (and parents) if needed and makes sure it is 0700 and ours.
pub fn private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("create `{}`", dir.display()))?;
    let meta = fs::metadata(dir).with_context(|| format!("stat `{}`", dir.display()))?;
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        bail!("use `{}`: owned by uid {}, not by you (uid {uid})", dir.display(), meta.uid());
    }
    if meta.mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .with_context(|| format!("make `{}` private", dir.display()))?;
    }
    Ok(())
}

/// `/tmp/rl-run-<uid>`: private, refused if another user created it first.
fn fallback_runtime_dir() -> Result<PathBuf> {
    let uid = nix::unistd::geteuid().as_raw();
    let dir = std::env::temp_dir().join(format!("rl-run-{uid}"));
    eprintln!("note: XDG_RUNTIME_DIR is not set; using the private directory `{}` for runtime files", dir.display());
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_locations_win_and_become_private() {
        let base = std::env::temp_dir().join(format!("rl-layout-{}", std::process::id()));
        let p = Paths::resolve(Some(base.join("store")), Some(base.join("run"))).unwrap();
        assert_eq!(p.container("abc"), base.join("store/containers/abc"));
        assert_eq!(p.container_run("abc"), base.join("run/containers/abc"));
        let mode = fs::metadata(&p.root).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::remove_dir_all(&base).unwrap();
    }
}
