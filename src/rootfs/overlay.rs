//! Kernel overlayfs inside the user namespace. `userxattr` makes overlayfs keep its whiteouts and
//! opaque markers in `user.overlay.*` xattrs, which an unprivileged namespace may write
//! (overlayfs.rst, "Non-privileged mounts"); the mount data must fit in one page.

use anyhow::{bail, Context, Result};
use nix::mount::{mount as sys_mount, MsFlags};

use crate::config::Dirs;

/// Escapes the characters overlayfs treats as separators in a path option.
fn escape(p: &std::path::Path) -> String {
    let s = p.to_string_lossy();
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, ':' | ',' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The mount data for `dirs`.
pub fn options(dirs: &Dirs) -> Result<String> {
    if dirs.lower.is_empty() {
        bail!("overlay: no lower layer");
    }
    let lower: Vec<String> = dirs.lower.iter().map(|p| escape(p)).collect();
    let data = format!(
        "lowerdir={},upperdir={},workdir={},userxattr",
        lower.join(":"),
        escape(&dirs.upper),
        escape(&dirs.work)
    );
    let page = 4096;
    if data.len() >= page {
        bail!("overlay: mount options of {} bytes do not fit in one page ({page})", data.len());
    }
    Ok(data)
}

/// Mounts kernel overlayfs at `dirs.merged`.
pub fn mount(dirs: &Dirs) -> Result<()> {
    let data = options(dirs)?;
    sys_mount(Some("overlay"), &dirs.merged, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
        .with_context(|| format!("mount overlay on `{}`", dirs.merged.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn options_escape_and_order() {
        let dirs = Dirs {
            lower: vec![PathBuf::from("/l/top"), PathBuf::from("/l/a:b,c")],
            upper: PathBuf::from("/u"),
            work: PathBuf::from("/w"),
            ..Default::default()
        };
        assert_eq!(options(&dirs).unwrap(), "lowerdir=/l/top:/l/a\\:b\\,c,upperdir=/u,workdir=/w,userxattr");
        let long = Dirs { lower: vec![PathBuf::from("/x".repeat(3000))], ..dirs.clone() };
        assert!(options(&long).unwrap_err().to_string().contains("one page"));
        assert!(options(&Dirs::default()).is_err());
    }
}
