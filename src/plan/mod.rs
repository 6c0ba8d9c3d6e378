//! Planning: the stage graph (stages, their dependencies, target pruning,
//! bases to pull), ARG/ENV scoping, build args, predefined platform ARGs,
//! ONBUILD triggers, and lowering a Dockerfile into a `BuildPlan` of `Step`s.
//!
//! Pure: no I/O. Uses `dockerfile`, `image` and `digest`.
