//! Supply-chain attestations: the SBOM (packages found in the image's
//! files, written as an SPDX 2.3 document) and SLSA provenance v1, each the
//! predicate of an in-toto statement that `image::attest` attaches to the
//! image index as BuildKit does.
//!
//! Pure: the scan's file selection and extraction work on streams handed in
//! by `layer::scan_files` (never a mounted rootfs); everything else is a
//! function of those files and the build's inputs. Uses `image`, `digest`.

pub mod packages;
pub mod provenance;
pub mod scan;
pub mod spdx;

pub use packages::{Ecosystem, OsRelease, Package};
pub use provenance::{GitSource, Material, ProvenanceInput, ProvenanceMode};
pub use spdx::SbomInput;
