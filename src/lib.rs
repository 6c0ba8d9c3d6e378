//! # imgb: a daemonless container image builder
//!
//! `imgb build .` reads a Dockerfile and its context, builds the image and
//! writes it out. The crate is a pipeline of typed hand-offs; each phase is a
//! module, and an earlier phase never imports a later one:
//!
//! ```text
//! Dockerfile text ──dockerfile::parse──▶ Dockerfile (typed instructions, spans)
//!   ──plan::outline──▶ StageGraph (stages, deps, target, bases needed)
//!   ──registry::resolve (async; bases pulled into the ContentStore)──▶ ResolvedImage per base
//!   ──plan::lower──▶ BuildPlan (stages of Steps, ARG/ENV expanded)
//!   ──engine::build (stage DAG on a worker pool; cache; COPY/RUN)──▶ BuildOutput
//!   ──export──▶ OCI layout dir | OCI archive | docker archive | registry push
//! ```
//!
//! | module | owns | effects |
//! |---|---|---|
//! | [`dockerfile`] | syntax, shell-word lexer, `$VAR` expansion, typed instructions | none |
//! | [`plan`] | stage graph, ARG/ENV scoping, target pruning, lowering to steps | none |
//! | [`image`] | image config, manifests, indexes, attestation manifests, canonical JSON | none |
//! | [`attest`] | SBOM (package catalogers, SPDX) and SLSA provenance documents | none |
//! | [`digest`] | `Sha256Digest`, hashing reader and writer | none |
//! | [`store`] | the content-addressed blob store under `IMGB_HOME` | fs |
//! | [`context`] | the build context, `.dockerignore`, content checksums | fs (read) |
//! | [`layer`] | deterministic tar layers, compression, diffs, safe unpacking | fs |
//! | [`cache`] | cache keys and the cache index | fs |
//! | [`engine`] | executing a build plan | fs, processes |
//! | [`registry`] | pull and push (the only async module) | network |
//! | [`export`] | OCI layout, archives, push orchestration | fs, network |
//! | [`cli`] | arguments, settings from the environment, output, exit codes | stdout/stderr, env |
//!
//! The `architecture` test at the bottom of this file reads `src/**` and fails
//! when a module names a `crate::` path its row does not allow.

pub mod attest;
pub mod cache;
pub mod cli;
pub mod context;
pub mod digest;
pub mod dockerfile;
pub mod engine;
pub mod export;
pub mod image;
pub mod layer;
pub mod plan;
pub mod registry;
pub mod store;

#[cfg(test)]
mod architecture {
    //! Keeps the module table of `../shared/ARCHITECTURE.md` true: a module may
    //! only name the `crate::` paths listed for it here.

    use std::path::{Path, PathBuf};

    /// (module, modules it may use). `cli` may use everything.
    const ALLOWED: &[(&str, &[&str])] = &[
        ("digest", &[]),
        ("dockerfile", &[]),
        ("plan", &["dockerfile", "image", "digest"]),
        ("image", &["digest"]),
        ("attest", &["image", "digest"]),
        ("store", &["digest"]),
        ("context", &["digest"]),
        ("layer", &["store", "digest"]),
        ("cache", &["digest", "image"]),
        (
            "engine",
            &[
                "plan", "cache", "context", "layer", "store", "image", "digest",
            ],
        ),
        ("registry", &["store", "image", "digest"]),
        ("export", &["store", "image", "registry", "digest"]),
    ];

    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read src dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// Every `crate::NAME` mentioned in `text` (outside `//` comments).
    fn crate_paths(text: &str) -> Vec<String> {
        let mut found = Vec::new();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            let mut rest = code;
            while let Some(pos) = rest.find("crate::") {
                let after = &rest[pos + "crate::".len()..];
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.push(name);
                }
                rest = after;
            }
        }
        found
    }

    #[test]
    fn modules_only_use_what_the_architecture_allows() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let mut violations = Vec::new();
        for file in files {
            let rel = file.strip_prefix(&src).expect("under src");
            let first = rel
                .components()
                .next()
                .and_then(|c| c.as_os_str().to_str())
                .unwrap_or("")
                .trim_end_matches(".rs")
                .to_string();
            let Some((_, allowed)) = ALLOWED.iter().find(|(m, _)| *m == first) else {
                continue; // cli, lib.rs, main.rs: unrestricted
            };
            let text = std::fs::read_to_string(&file).expect("read source");
            for used in crate_paths(&text) {
                if used != first && !allowed.contains(&used.as_str()) {
                    violations.push(format!("{} uses crate::{used}", rel.display()));
                }
            }
        }
        assert!(
            violations.is_empty(),
            "module boundaries broken:\n{}",
            violations.join("\n")
        );
    }

    #[test]
    fn the_checker_sees_forbidden_paths() {
        let paths =
            crate_paths("use crate::registry::Client; // crate::cli\nlet x = crate::digest::X;");
        assert_eq!(paths, vec!["registry".to_string(), "digest".to_string()]);
    }
}
