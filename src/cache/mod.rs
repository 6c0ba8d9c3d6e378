//! The build cache: versioned, canonical cache keys defined apart from
//! execution, and the cache index that maps keys to the layers they made.
//!
//! A key is `sha256("imgb-cache-key/vN\n" || canonical JSON of {parent,
//! platform, step, inputs})`. The step is the normalised, fully expanded
//! instruction (no secrets, no proxy ARGs); inputs are content checksums
//! (never mtimes, inodes, owners or the context's location). Anything left
//! out of the key must be normalised out of the layer. Frozen vectors in
//! `testdata/cache/keys.json` make any change of key deliberate: bump
//! [`KEY_VERSION`] when the meaning of a key changes.
//!
//! Uses `digest`; the index touches the file system.

mod index;

pub use index::{CacheError, CacheIndex, CacheRecord, CachedLayer};

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::digest::{DigestError, Sha256Digest};

/// The version in every key's preamble.
pub const KEY_VERSION: u32 = 1;

/// A cache key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CacheKey(Sha256Digest);

impl CacheKey {
    /// The key of a stage's starting point: a base image (by manifest or
    /// config digest) or `scratch` (`None`), on a platform.
    pub fn base(image: Option<&Sha256Digest>, platform: &str) -> CacheKey {
        let step = serde_json::json!({
            "base": image.map(|d| d.to_string()).unwrap_or_else(|| "scratch".to_string()),
        });
        CacheKey::compute(None, platform, &step, &BTreeMap::new())
    }

    /// The key of a step on top of `parent`.
    pub fn step(
        parent: CacheKey,
        platform: &str,
        step: &serde_json::Value,
        inputs: &BTreeMap<String, Sha256Digest>,
    ) -> CacheKey {
        CacheKey::compute(Some(parent), platform, step, inputs)
    }

    fn compute(
        parent: Option<CacheKey>,
        platform: &str,
        step: &serde_json::Value,
        inputs: &BTreeMap<String, Sha256Digest>,
    ) -> CacheKey {
        let document = serde_json::json!({
            "parent": parent.map(|p| p.to_string()),
            "platform": platform,
            "step": step,
            "inputs": inputs,
        });
        let mut bytes = format!("imgb-cache-key/v{KEY_VERSION}\n").into_bytes();
        bytes.extend_from_slice(&canonical(&document));
        CacheKey(Sha256Digest::of(&bytes))
    }

    pub fn digest(&self) -> &Sha256Digest {
        &self.0
    }
}

/// Canonical JSON: object keys sorted (serde_json's map is a BTreeMap here),
/// no insignificant whitespace.
fn canonical(value: &serde_json::Value) -> Vec<u8> {
    // serde_json::Value's Map is ordered by key unless `preserve_order` is
    // enabled, which this crate never does; re-sort defensively anyway.
    fn sort(value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let sorted: BTreeMap<&String, serde_json::Value> =
                    map.iter().map(|(k, v)| (k, sort(v))).collect();
                serde_json::Value::Object(sorted.into_iter().map(|(k, v)| (k.clone(), v)).collect())
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.iter().map(sort).collect())
            }
            other => other.clone(),
        }
    }
    serde_json::to_vec(&sort(value)).unwrap_or_default()
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", self.0)
    }
}

impl FromStr for CacheKey {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(CacheKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Vector {
        description: String,
        parent: Option<String>,
        base: Option<String>,
        platform: String,
        step: Option<serde_json::Value>,
        #[serde(default)]
        inputs: BTreeMap<String, Sha256Digest>,
        key: String,
    }

    #[test]
    fn frozen_key_vectors() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/cache/keys.json");
        let vectors: Vec<Vector> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert!(vectors.len() >= 8);
        for v in vectors {
            let got = match (&v.parent, &v.step) {
                (Some(parent), Some(step)) => {
                    CacheKey::step(parent.parse().unwrap(), &v.platform, step, &v.inputs)
                }
                _ => {
                    let base = v
                        .base
                        .as_deref()
                        .filter(|b| *b != "scratch")
                        .map(|b| b.parse().unwrap());
                    CacheKey::base(base.as_ref(), &v.platform)
                }
            };
            assert_eq!(got.to_string(), v.key, "{}", v.description);
        }
    }

    #[test]
    fn every_part_of_a_key_matters() {
        let parent = CacheKey::base(None, "linux/amd64");
        let step = serde_json::json!({"copy": {"dest": "/app"}});
        let inputs: BTreeMap<String, Sha256Digest> =
            [("src".to_string(), Sha256Digest::of(b"a"))].into();
        let key = CacheKey::step(parent, "linux/amd64", &step, &inputs);
        assert_ne!(
            key,
            CacheKey::step(
                CacheKey::base(None, "linux/arm64"),
                "linux/amd64",
                &step,
                &inputs
            )
        );
        assert_ne!(key, CacheKey::step(parent, "linux/arm64", &step, &inputs));
        assert_ne!(
            key,
            CacheKey::step(
                parent,
                "linux/amd64",
                &serde_json::json!({"copy": {"dest": "/b"}}),
                &inputs
            )
        );
        let other: BTreeMap<String, Sha256Digest> =
            [("src".to_string(), Sha256Digest::of(b"b"))].into();
        assert_ne!(key, CacheKey::step(parent, "linux/amd64", &step, &other));
        assert_eq!(
            key,
            CacheKey::step(parent, "linux/amd64", &step, &inputs),
            "deterministic"
        );
    }

    #[test]
    fn key_order_in_step_json_does_not_matter() {
        let parent = CacheKey::base(None, "linux/amd64");
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":{"y":2,"x":3}}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"b":{"x":3,"y":2},"a":1}"#).unwrap();
        let none = BTreeMap::new();
        assert_eq!(
            CacheKey::step(parent, "linux/amd64", &a, &none),
            CacheKey::step(parent, "linux/amd64", &b, &none)
        );
    }
}
