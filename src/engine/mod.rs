//! The build engine: executes a `BuildPlan` (stage DAG on a bounded worker
//! pool, cache lookups, snapshots, COPY/ADD, RUN through an `Executor`) and
//! commits layers.
//!
//! Uses `plan`, `cache`, `context`, `layer`, `store`, `image`; touches the file
//! system and runs processes.

pub mod owner;
