//! `flock(2)`-based locks and atomic file writes for the store's state and index files.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

/// A lock held until dropped.
pub struct Lock {
    _guard: Flock<File>,
}

fn open_lock_file(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("open lock `{}`", path.display()))
}

/// Takes the exclusive lock on `path`, creating the lock file if needed (waits for other holders).
pub fn exclusive(path: &Path) -> Result<Lock> {
    let guard = Flock::lock(open_lock_file(path)?, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("lock `{}`", path.display()))?;
    Ok(Lock { _guard: guard })
}

/// Takes a shared lock on `path` (waits while someone holds it exclusively).
pub fn shared(path: &Path) -> Result<Lock> {
    let guard = Flock::lock(open_lock_file(path)?, FlockArg::LockShared)
        .map_err(|(_, e)| e)
        .with_context(|| format!("lock `{}`", path.display()))?;
    Ok(Lock { _guard: guard })
}

/// Takes the exclusive lock on `path` if nobody holds it (None if someone does).
pub fn try_exclusive(path: &Path) -> Result<Option<Lock>> {
    match Flock::lock(open_lock_file(path)?, FlockArg::LockExclusiveNonblock) {
        Ok(guard) => Ok(Some(Lock { _guard: guard })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e).with_context(|| format!("lock `{}`", path.display())),
    }
}

/// Writes `data` to `path` atomically and durably: a temp file beside it, fsync, rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    write_replace(path, data, true)
}

/// Writes `data` to `path` atomically (temp file, rename); with `durable`, fsync first so the
/// new content survives a crash. Without it the file may be lost in a crash but is never seen
/// half-written: for records that die with the process anyway (`--rm` containers).
pub fn write_replace(path: &Path, data: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&tmp)?;
        f.write_all(data)?;
        if durable {
            f.sync_all()?;
        }
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("write `{}`", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("rl-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let _l = exclusive(&dir.join("lock")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
