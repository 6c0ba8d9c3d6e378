//! Exporters: the OCI image layout, OCI and Docker archives, and push
//! orchestration.
//!
//! Uses `store`, `image` and `registry`; touches the file system and network.
