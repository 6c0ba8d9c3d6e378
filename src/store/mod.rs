//! The content store under `IMGB_HOME`: content-addressed blobs
//! (`blobs/sha256/<hex>`) written to a temp file while hashing and renamed
//! into place, verification, locking between processes, references and GC.
//!
//! Uses `digest`; touches the file system.
