//! Progress events from transfers, for the CLI to show: each blob's fate
//! and each retry. Events carry digests, sizes, repository names and
//! statuses only; never a credential or a token.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::digest::Sha256Digest;

/// Something that happened during a pull or push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A blob was downloaded into the store.
    Fetched { digest: Sha256Digest, size: u64 },
    /// A blob was already in the store (pull) or in the repository (push).
    AlreadyPresent { digest: Sha256Digest },
    /// A blob was uploaded.
    Uploaded { digest: Sha256Digest, size: u64 },
    /// A blob was mounted from another repository of the same registry.
    Mounted { digest: Sha256Digest, from: String },
    /// A manifest or index was put under a tag or digest.
    ManifestPut { target: String },
    /// A request failed transiently and is tried again after `delay`.
    Retrying {
        registry: String,
        what: String,
        attempt: u32,
        reason: String,
        delay: Duration,
    },
}

/// A callback receiving [`Event`]s; called from concurrent transfers.
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(&Event) + Send + Sync>);

impl Progress {
    pub fn new(f: impl Fn(&Event) + Send + Sync + 'static) -> Progress {
        Progress(Arc::new(f))
    }

    pub fn emit(&self, event: &Event) {
        (self.0)(event)
    }
}

impl fmt::Debug for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Progress(..)")
    }
}
