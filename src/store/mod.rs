//! The per-user store: where containers (and, later, images and layers) live on disk, and the
//! lock that serialises changes to it. Runs in the `rl` parent process.

pub mod export;
pub mod images;
pub mod layout;
pub mod lock;
pub mod unpack;

pub use layout::Paths;
