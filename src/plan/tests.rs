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
use crate::plan::{
    apply, lower, outline, render_json, render_text, Base, ConfigChange, CopyFrom, PlanOptions,
    Platform, StepKind,
};

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

fn plan_of(
    text: &str,
    opts: &PlanOptions,
    configs: &BTreeMap<String, ImageConfig>,
) -> crate::plan::BuildPlan {
    let df = parse(text).expect("parses");
    let graph = outline(&df, opts).expect("outline");
    lower(&df, &graph, configs, opts).expect("lower")
}

fn amd64() -> PlanOptions {
    PlanOptions::new(Platform::linux_amd64())
}

/// The stage's final config: its start config with every config step applied.
fn final_config(stage: &crate::plan::StagePlan) -> ImageConfig {
    let mut config = stage.config.clone();
    for step in &stage.steps {
        if let StepKind::Config(change) = &step.kind {
            apply(&mut config, change);
        }
    }
    config
}

#[test]
fn pruned_stages_pull_nothing() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/plan/target-prunes/Dockerfile"),
    )
    .expect("Dockerfile");
    let df = parse(&text).expect("parses");
    let mut opts = amd64();
    opts.target = Some("FINAL".to_string()); // stage names are case-insensitive
    let graph = outline(&df, &opts).expect("outline");
    let ids: Vec<usize> = graph.stages.iter().map(|s| s.id).collect();
    assert_eq!(ids, vec![1, 2]);
    let pulls: Vec<&str> = graph.images.iter().map(|i| i.reference.as_str()).collect();
    assert_eq!(pulls, vec!["golang:1.22"], "texlive must not be pulled");
    // The default target is the last stage, which needs everything.
    let all = outline(&df, &amd64()).expect("outline");
    assert_eq!(all.target, 3);
    assert_eq!(all.stages.len(), 4);
    assert_eq!(all.levels, vec![vec![0, 1], vec![2], vec![3]]);
}

#[test]
fn config_steps_apply_with_docker_rules() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/plan/config-instructions/Dockerfile"),
    )
    .expect("Dockerfile");
    let plan = plan_of(&text, &amd64(), &BTreeMap::new());
    let config = final_config(&plan.stages[0]);
    let c = config.config.expect("config");
    assert_eq!(c.working_dir.as_deref(), Some("/app/src"));
    assert_eq!(c.user.as_deref(), Some("1000:1000"));
    assert_eq!(
        c.env.expect("env"),
        vec![
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "A=1",
            "B=two words"
        ]
    );
    assert_eq!(c.shell, Some(vec!["/bin/sh".into(), "-ec".into()]));
    // ENTRYPOINT after a CMD of the same stage keeps that CMD.
    assert_eq!(
        c.cmd,
        Some(vec!["/bin/sh".into(), "-ec".into(), "echo hello".into()])
    );
    assert_eq!(c.args_escaped, Some(true));
    assert_eq!(c.entrypoint, Some(vec!["/entry.sh".into()]));
    let ports: Vec<String> = c.exposed_ports.expect("ports").into_keys().collect();
    assert_eq!(ports, vec!["443/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
    let volumes: Vec<String> = c.volumes.expect("volumes").into_keys().collect();
    assert_eq!(volumes, vec!["/cache", "/data"]);
    assert_eq!(c.stop_signal.as_deref(), Some("SIGTERM"));
    let hc = c.healthcheck.expect("healthcheck");
    assert_eq!(hc.interval, Some(30_000_000_000));
    assert_eq!(hc.retries, Some(3));
    assert_eq!(c.on_build, Some(vec!["RUN echo child".to_string()]));
    assert_eq!(config.author.as_deref(), Some("someone"));
    let labels = c.labels.expect("labels");
    assert_eq!(labels.get("version").map(String::as_str), Some("1.0"));
    // ONBUILD is the one step without a history entry.
    let no_history: Vec<&str> = plan.stages[0]
        .steps
        .iter()
        .filter(|s| !s.records_history())
        .map(|s| s.text.as_str())
        .collect();
    assert_eq!(no_history, vec!["ONBUILD RUN echo child"]);
}

#[test]
fn entrypoint_drops_the_inherited_cmd() {
    let mut base = ImageConfig::new("linux", "amd64");
    base.config = Some(crate::image::Config {
        cmd: Some(vec!["sh".into()]),
        ..Default::default()
    });
    let configs = BTreeMap::from([("busybox".to_string(), base)]);
    let plan = plan_of("FROM busybox\nENTRYPOINT [\"/e\"]\n", &amd64(), &configs);
    let c = final_config(&plan.stages[0]).config.expect("config");
    assert_eq!(c.cmd, None);
    assert_eq!(c.entrypoint, Some(vec!["/e".into()]));
    let plan = plan_of(
        "FROM busybox\nCMD [\"x\"]\nENTRYPOINT [\"/e\"]\n",
        &amd64(),
        &configs,
    );
    let c = final_config(&plan.stages[0]).config.expect("config");
    assert_eq!(c.cmd, Some(vec!["x".into()]));
}

#[test]
fn a_stage_base_passes_on_config_env_and_args() {
    let plan = plan_of(
        "FROM busybox AS a\nWORKDIR /w\nUSER nobody\nENV X=1\nARG Y=2\nFROM a\nRUN true\n",
        &amd64(),
        &BTreeMap::new(),
    );
    assert_eq!(plan.stages[1].base, Base::Stage(0));
    let StepKind::Run(run) = &plan.stages[1].steps[0].kind else {
        panic!("not RUN")
    };
    assert_eq!(run.workdir, "/w");
    assert_eq!(run.user, "nobody");
    assert!(run.env.contains(&"X=1".to_string()));
    assert!(run.env.contains(&"Y=2".to_string()));
    assert_eq!(
        plan.stages[1].steps[0].created_by,
        "RUN |1 Y=2 /bin/sh -c true # buildkit"
    );
    assert!(plan.stages[1].base_config_known);
}

#[test]
fn onbuild_copy_from_adds_a_dependency() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/plan/onbuild-stage/Dockerfile"),
    )
    .expect("Dockerfile");
    let plan = plan_of(&text, &amd64(), &BTreeMap::new());
    let child = &plan.stages[plan.target];
    assert_eq!(child.deps, vec![0, 1]);
    let first = &child.steps[0];
    assert!(first.onbuild);
    assert_eq!(first.span, child.span, "triggers point at the FROM line");
    let StepKind::Copy(copy) = &child.steps[1].kind else {
        panic!("not COPY")
    };
    assert_eq!(copy.from, CopyFrom::Stage(1));
    // The trigger does not carry over into the child's config.
    assert_eq!(final_config(child).config.and_then(|c| c.on_build), None);
}

#[test]
fn bad_onbuild_trigger_in_a_base_config_names_the_from_line() {
    let mut base = ImageConfig::new("linux", "amd64");
    base.config = Some(crate::image::Config {
        on_build: Some(vec!["FROM alpine".into()]),
        ..Default::default()
    });
    let configs = BTreeMap::from([("base".to_string(), base)]);
    let df = parse("# comment\nFROM base\n").expect("parses");
    let opts = amd64();
    let graph = outline(&df, &opts).expect("outline");
    let err = lower(&df, &graph, &configs, &opts).expect_err("FROM is no trigger");
    assert_eq!(err.line(), Some(2));
}

#[test]
fn from_with_a_variable_is_refused() {
    let df =
        parse("FROM busybox AS a\nFROM scratch\nARG S=a\nCOPY --from=$S /x /x\n").expect("parses");
    let err = outline(&df, &amd64()).expect_err("variables in --from");
    assert_eq!(err.line(), Some(4));
}

#[test]
fn workdir_resolves_and_copy_dest_keeps_slash() {
    use crate::plan::lower::{copy_dest, normalize_workdir};
    assert_eq!(normalize_workdir("/a", "b"), "/a/b");
    assert_eq!(normalize_workdir("/a", "/c/../d/"), "/d");
    assert_eq!(copy_dest("/app", "."), "/app/");
    assert_eq!(copy_dest("/app", "x/"), "/app/x/");
    assert_eq!(copy_dest("/app", "/abs"), "/abs");
    assert_eq!(copy_dest("/", "./"), "/");
}

#[test]
fn change_kinds_apply() {
    let mut config = ImageConfig::new("linux", "amd64");
    apply(
        &mut config,
        &ConfigChange::Env(vec![("A".into(), "1".into())]),
    );
    apply(
        &mut config,
        &ConfigChange::Env(vec![("A".into(), "2".into())]),
    );
    apply(&mut config, &ConfigChange::Arg);
    let c = config.config.expect("config");
    assert_eq!(c.env, Some(vec!["A=2".to_string()]));
}
