//! The engine's cache behaviour, table-driven, with a fake executor: no
//! root, no OCI runtime, no overlay mount (the copy snapshotter). Kaniko's
//! `stageBuilder` tests are the model: build, change one thing, build
//! again, and check which steps came from the cache.

mod cache;
mod fake;
mod non_root;
