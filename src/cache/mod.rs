//! The build cache: versioned, canonical cache keys defined apart from
//! execution, and the cache index that maps keys to layers.
//!
//! Uses `digest` and `image`; touches the file system.
