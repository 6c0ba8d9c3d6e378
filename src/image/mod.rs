//! The image model: the image config (a Docker-compatible superset of OCI's
//! that round-trips unknown fields), manifests and indexes, history entries,
//! `ChainId`, and canonical JSON for everything that gets digested.
//!
//! Pure: no I/O. Uses `digest`.
