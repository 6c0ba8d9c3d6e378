//! Golden tests of the planner: every directory under `testdata/plan/`
//! holds a `Dockerfile`, an optional `args` file and the expected output
//! (`expected.txt`: the text rendering or the error; `expected.json` when
//! present). `IMGB_UPDATE_SNAPSHOTS=1` rewrites the expected files.
//!
//! `args` lines: `target NAME`, `build-arg K=V`, `platform P`,
//! `build-platform P`, `label K=V`, `base-config REF FILE.json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::dockerfile::parse;
use crate::image::ImageConfig;
use crate::plan::{lower, outline, render_json, render_text, PlanOptions, Platform};

struct Case {
    dir: PathBuf,
    opts: PlanOptions,
    configs: BTreeMap<String, ImageConfig>,
}

fn load(dir: &Path) -> Case {
    let amd64 = Platform::linux_amd64();
    let mut opts = PlanOptions::new(amd64);
    let mut configs = BTreeMap::new();
    let args = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
    for line in args.lines().filter(|l| !l.trim().is_empty()) {
        let (key, rest) = line.split_once(' ').expect("`key value` lines");
        let kv = || {
            let (k, v) = rest.split_once('=').expect("K=V");
            (k.to_string(), v.to_string())
        };
        match key {
            "target" => opts.target = Some(rest.to_string()),
            "build-arg" => {
                let (k, v) = kv();
                opts.build_args.insert(k, v);
            }
            "label" => {
                let (k, v) = kv();
                opts.labels.insert(k, v);
            }
            "platform" => opts.platform = rest.parse().expect("platform"),
            "build-platform" => opts.build_platform = rest.parse().expect("platform"),
            "base-config" => {
                let (reference, file) = rest.split_once(' ').expect("REF FILE");
                let text = std::fs::read_to_string(dir.join(file)).expect("config file");
                let config: ImageConfig = serde_json::from_str(&text).expect("config JSON");
                configs.insert(reference.to_string(), config);
            }
            other => panic!("{}: unknown args line {other:?}", dir.display()),
        }
    }
    Case {
        dir: dir.to_path_buf(),
        opts,
        configs,
    }
}

/// The text and JSON outputs of one case (JSON is `None` for errors).
fn run(case: &Case) -> (String, Option<String>) {
    let text = std::fs::read_to_string(case.dir.join("Dockerfile")).expect("Dockerfile");
    let df = parse(&text).expect("golden Dockerfiles parse");
    let result =
        outline(&df, &case.opts).and_then(|graph| lower(&df, &graph, &case.configs, &case.opts));
    match result {
        Ok(plan) => (render_text(&plan), Some(render_json(&plan))),
        Err(e) => (format!("error (line {:?}): {e}\n", e.line()), None),
    }
}

fn check(path: &Path, actual: &str, failures: &mut Vec<String>) {
    if std::env::var_os("IMGB_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, actual).expect("write expected");
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected != actual {
        failures.push(format!(
            "{} differs:\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        ));
    }
}

#[test]
fn golden_plans() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/plan");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("testdata/plan")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "golden cases are missing");
    let mut failures = Vec::new();
    for dir in &dirs {
        let case = load(dir);
        let (text, json) = run(&case);
        check(&dir.join("expected.txt"), &text, &mut failures);
        if let Some(json) = json {
            let path = dir.join("expected.json");
            if path.exists() {
                check(&path, &json, &mut failures);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
