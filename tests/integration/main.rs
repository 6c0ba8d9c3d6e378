//! imgb's one integration-test binary: drives the real `imgb` binary against
//! real local registries, runc, skopeo and umoci.
//!
//! `world` starts the test world (registries, base images, tools);
//! `harness` runs imgb in a temp `IMGB_HOME` and filters output for snapshots.

mod harness;
mod world;

mod add;
mod build;
mod build_registry;
mod built;
mod cache_mounts;
mod cli;
mod export;
mod images;
mod parallel;
mod parse;
mod plan;
mod progress;
mod registry;
mod run;
mod smoke;
