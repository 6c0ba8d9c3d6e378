//! The build context: `.dockerignore` with Docker's semantics, walking the
//! context, selecting COPY sources and computing their content checksums,
//! and the git checkout the context lives in (for provenance).
//!
//! Uses `digest`; reads the file system.

pub mod checksum;
pub mod git;
pub mod ignore;
pub mod pattern;
pub mod walk;

pub use checksum::{checksum, HashIndex};
pub use git::{git_checkout, GitCheckout};
pub use ignore::DockerIgnore;
pub use walk::{BuildContext, ContextError, Entry, EntryKind, FileStat, Selection};
