//! Images: references ([`reference`]), the distribution protocol ([`registry`]), manifests and
//! platforms ([`manifest`]), digests ([`digest`]) and the pull that ties them to the store
//! ([`pull`]). Runs in the `rl` parent, except the unpacking half of [`pull`], which stage 1 runs
//! inside the user namespace.

pub mod auth;
pub mod digest;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod reference;
pub mod registries;
pub mod registry;
