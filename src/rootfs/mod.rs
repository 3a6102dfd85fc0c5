//! The container's root filesystem: an overlay of read-only lower layers and the container's
//! writable upper dir, mounted by the stage-1 process inside its user and mount namespaces —
//! with kernel overlayfs ([`overlay`], `userxattr`, Linux ≥ 5.11) or, when the kernel refuses,
//! fuse-overlayfs ([`fuse`]) — at the container's merged dir.

pub mod fuse;
pub mod overlay;

use std::path::Path;

use anyhow::Result;

use crate::config::{Dirs, OverlayBackend};
use crate::hint::{hinted, Problem};

/// A mounted rootfs; for fuse-overlayfs it owns the daemon.
pub enum Mounted {
    Kernel,
    Fuse(fuse::Daemon),
}

impl Mounted {
    /// Unmounts `merged` (the fuse daemon then exits by itself) and reaps the daemon.
    pub fn unmount(self, merged: &Path) -> Result<()> {
        let r = nix::mount::umount2(merged, nix::mount::MntFlags::MNT_DETACH);
        if let Mounted::Fuse(d) = self {
            d.finish();
        }
        r.map_err(|e| anyhow::anyhow!("unmount `{}`: {e}", merged.display()))
    }
}

/// Mounts the overlay described by `dirs` with `backend`.
pub fn mount(dirs: &Dirs, backend: OverlayBackend) -> Result<Mounted> {
    match backend {
        OverlayBackend::Kernel => overlay::mount(dirs).map(|()| Mounted::Kernel),
        OverlayBackend::Fuse => fuse::mount(dirs).map(Mounted::Fuse),
        OverlayBackend::Auto => match overlay::mount(dirs) {
            Ok(()) => Ok(Mounted::Kernel),
            Err(kernel_err) => match fuse::mount(dirs) {
                Ok(d) => Ok(Mounted::Fuse(d)),
                Err(fuse_err) => Err(hinted(
                    Problem::OverlayUnavailable,
                    format!("mount the rootfs: kernel overlay failed ({kernel_err:#}); fuse-overlayfs failed ({fuse_err:#})"),
                )),
            },
        },
    }
}
