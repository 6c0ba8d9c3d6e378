//! The build context: `.dockerignore` with Docker's semantics, walking the
//! context, selecting COPY sources and computing their content checksums.
//!
//! Uses `digest`; reads the file system.

pub mod checksum;
pub mod ignore;
pub mod pattern;
pub mod walk;

pub use checksum::{checksum, HashIndex};
pub use ignore::DockerIgnore;
pub use walk::{BuildContext, ContextError, Entry, EntryKind, FileStat, Selection};
