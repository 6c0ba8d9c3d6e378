//! The state a stage carries from step to step: its image config, layers,
//! cache key, and a lazily built view of its filesystem.

use crate::cache::CacheKey;
use crate::digest::Sha256Digest;
use crate::image::{ChainId, Descriptor, History, ImageConfig};
use crate::store::ContentStore;

use super::files::owner::{resolve_chown, Owner};
use super::lowerfs::LowerFs;
use super::snapshot::{Lower, Snapshots};
use super::EngineError;

/// A stage being built, or built.
#[derive(Debug, Clone)]
pub struct StageState {
    pub config: ImageConfig,
    /// Layer descriptors, bottom first.
    pub layers: Vec<Descriptor>,
    /// The key the next step's key builds on.
    pub key: CacheKey,
    /// The platform, as it goes into keys (`linux/amd64`).
    pub platform: String,
    /// The view of the stage's layers (built lazily, see [`Self::lower`]).
    pub(super) lower: Option<LowerFs>,
    /// When the latest layer was made (or the base image's `created`):
    /// metadata-only steps and the image take it, so a fully cached rebuild
    /// gives the same image id, as with BuildKit.
    pub last_created: Option<String>,
}

impl StageState {
    /// The stack of the stage's layers.
    pub fn stack(&self) -> Lower {
        Lower::new(&self.config.rootfs.diff_ids, &self.layers)
    }

    /// The view of the stage's layers. A view made for fewer layers (before
    /// the latest COPY or RUN) is extended with the new ones only: reading a
    /// big base image's layers again costs seconds.
    pub fn lower(
        &mut self,
        store: &ContentStore,
        snapshots: &Snapshots,
    ) -> Result<&LowerFs, EngineError> {
        let digests: Vec<Sha256Digest> = self.layers.iter().map(|d| d.digest).collect();
        let diff_ids = self.config.rootfs.diff_ids.clone();
        let reusable = self.lower.as_ref().is_some_and(|l| {
            l.layers().len() <= digests.len() && l.layers() == &digests[..l.layers().len()]
        });
        if !reusable {
            self.lower = None;
        }
        let lower = match self.lower.as_mut() {
            Some(lower) => lower,
            None => self.lower.insert(LowerFs::empty()),
        };
        let have = lower.layers().len();
        // One pass over the chain ids, and only when a layer is missing.
        let chains = match have < digests.len() && diff_ids.len() == digests.len() {
            true => ChainId::all(&diff_ids),
            false => Vec::new(),
        };
        for (k, digest) in digests.iter().enumerate().skip(have) {
            // A layer already unpacked (by `imgb pull` or an earlier RUN)
            // is read from its directory, not decompressed again.
            let dir = chains.get(k).and_then(|chain| {
                let dir = snapshots.existing_layer(chain)?;
                Some((dir, snapshots.listing_path(chain)))
            });
            let applied = match dir {
                Some((dir, listing)) => lower.apply_layer_dir(digest, &dir, Some(&listing)),
                None => lower.apply_layer(store, digest),
            };
            if let Err(e) = applied {
                // A half-applied view must not be reused.
                self.lower = None;
                return Err(e);
            }
        }
        self.lower.as_ref().ok_or_else(|| EngineError::Step {
            message: "filesystem view unavailable".into(),
        })
    }

    pub fn push_layer(&mut self, layer: Descriptor, diff_id: Sha256Digest, history: History) {
        self.last_created = history.created.clone();
        self.layers.push(layer);
        self.config.push_layer(diff_id, history);
    }

    /// The stage's `/etc/passwd` and `/etc/group`, for names in `--chown`
    /// and USER.
    pub fn account_files(
        &mut self,
        store: &ContentStore,
        snapshots: &Snapshots,
    ) -> Result<(Option<String>, Option<String>), EngineError> {
        let lower = self.lower(store, snapshots)?;
        let read = |path| -> Result<Option<String>, EngineError> {
            Ok(lower
                .read_file(store, path)?
                .map(|b| String::from_utf8_lossy(&b).into_owned()))
        };
        Ok((read("/etc/passwd")?, read("/etc/group")?))
    }

    /// The owner for the current USER (WORKDIR creates its directory owned
    /// by it, as BuildKit does); root when unset or unknown.
    pub fn user_owner(
        &mut self,
        store: &ContentStore,
        snapshots: &Snapshots,
    ) -> Result<Option<Owner>, EngineError> {
        let user = self.user().unwrap_or_default();
        if user.is_empty() || user == "root" || user == "0" {
            return Ok(None);
        }
        let (passwd, group) = self.account_files(store, snapshots)?;
        Ok(resolve_chown(&user, passwd.as_deref(), group.as_deref()).ok())
    }

    /// The config's USER, if set.
    pub fn user(&self) -> Option<String> {
        self.config.config.as_ref().and_then(|c| c.user.clone())
    }
}
