//! Layers: the deterministic tar writer, compression, diffs of two trees or of
//! an overlay upper dir, whiteouts, and safe unpacking.
//!
//! Uses `store` and `digest`; touches the file system.
