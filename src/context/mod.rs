//! The build context: `.dockerignore` with Docker's semantics, walking the
//! context, selecting COPY sources and computing their content checksums.
//!
//! Uses `digest`; reads the file system.
