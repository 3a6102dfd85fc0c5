//! Images: references ([`reference`]), the distribution protocol ([`registry`]), manifests and
//! platforms ([`manifest`]), digests ([`digest`]), the pull that ties them to the store
//! ([`pull`]), push, and image archives ([`archive`]: `rl save`, `rl load`). Runs in the `rl`
//! parent, except the unpacking and exporting halves, which stage 1 runs inside the user
//! namespace.

pub mod archive;
pub mod archive_load;
pub mod archive_save;
pub mod auth;
pub mod commit;
pub mod digest;
pub mod layer_export;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod read_ahead;
pub mod reference;
pub mod registries;
pub mod registry;
pub mod tls;

/// Runs `work` on each item with its fd, one scoped thread each (the stage-1 side of a pull or a
/// push: every layer streams through its own pipe at once); each result is the value or the
/// error text for the parent.
pub(crate) fn per_layer<I: Sync, T: Send>(
    items: &[I],
    fds: Vec<std::os::fd::OwnedFd>,
    work: impl Fn(&I, std::os::fd::OwnedFd) -> anyhow::Result<T> + Sync,
) -> Vec<Result<T, String>> {
    std::thread::scope(|s| {
        let work = &work;
        let handles: Vec<_> = items
            .iter()
            .zip(fds)
            .map(|(item, fd)| s.spawn(move || work(item, fd).map_err(|e| format!("{e:#}"))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("a layer thread panicked".into()))).collect()
    })
}
