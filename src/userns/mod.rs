//! User namespace id maps: which host ids the container's ids stand for ([`subid`] reads
//! /etc/subuid and /etc/subgid, [`map`] plans the maps and writes them with
//! `newuidmap`/`newgidmap`). Runs in the `rl` parent, for a child that has just unshared its
//! user namespace and waits for the maps before it does anything else.

pub mod map;
pub mod pause;
pub mod share;
pub mod subid;

pub use map::{IdMapping, MapPlan, UsernsMode};
