//! A base image resolved to one platform, with its blobs in the content
//! store: what the engine builds on.

use crate::digest::Sha256Digest;

use super::{Descriptor, ImageConfig};

/// A base image already in the content store.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The reference as the plan names it.
    pub reference: String,
    pub manifest_digest: Sha256Digest,
    pub config: ImageConfig,
    /// Layer descriptors, bottom first.
    pub layers: Vec<Descriptor>,
}
