//! The per-user store: where containers (and, later, images and layers) live on disk, and the
//! lock that serialises changes to it. Runs in the `rl` parent process.

pub mod layout;
pub mod lock;

pub use layout::Paths;
