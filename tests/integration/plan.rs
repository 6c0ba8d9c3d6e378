//! `imgb build --dry-run`: the plan printed by the real binary as text,
//! JSON and Graphviz dot (rendered with the real `dot`), and plan errors
//! naming the Dockerfile line.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::harness::{Context, Imgb};
use crate::world;

fn hello_dir() -> String {
    world::repo_root()
        .join("examples/hello")
        .display()
        .to_string()
}

const MULTI: &str = "\
ARG GO=1.22
FROM golang:${GO} AS build
WORKDIR /src
COPY . .
RUN go build -o /out/app .

FROM texlive/texlive AS docs
RUN make pdf

FROM busybox AS assets
RUN mkdir /assets

FROM scratch AS final
COPY --from=build /out/app /app
COPY --from=assets /assets /assets
ENTRYPOINT [\"/app\"]

FROM final AS with-docs
COPY --from=docs /out.pdf /docs/
";

#[test]
fn dry_run_prints_a_readable_plan_of_the_hello_example() {
    let run = Imgb::new().run([
        "build",
        "--dry-run",
        "--platform",
        "linux/amd64",
        &hello_dir(),
    ]);
    run.success()
        .stdout_has("Build plan: 1 stage(s), target stage 0")
        .stdout_has("stage 0 (line 2): FROM scratch (empty filesystem) [linux/amd64]")
        .stdout_has("= COPY hello.txt /hello.txt # buildkit")
        .stdout_has("> copy [\"etc/\"] from context to /etc/")
        .stdout_has("= CMD [\"/hello.txt\"]");
    assert!(
        !run.stdout.contains("base image config unknown"),
        "scratch is exact:\n{}",
        run.stdout
    );
}

#[test]
fn dry_run_json_is_the_plan_for_tools() {
    let run = Imgb::new().run([
        "build",
        "--dry-run",
        "--format",
        "json",
        "--platform",
        "linux/arm64",
        &hello_dir(),
    ]);
    run.success();
    let plan: serde_json::Value = serde_json::from_str(&run.stdout).expect("stdout is JSON");
    assert_eq!(plan["target"], 0);
    let stage = &plan["stages"][0];
    assert_eq!(stage["base"]["kind"], "scratch");
    assert_eq!(stage["platform"]["architecture"], "arm64");
    assert_eq!(stage["platform"]["variant"], "v8");
    let steps = stage["steps"].as_array().expect("steps");
    let texts: Vec<&str> = steps
        .iter()
        .filter_map(|s| s["created_by"].as_str())
        .collect();
    assert_eq!(
        texts,
        vec![
            "LABEL org.opencontainers.image.title=hello org.opencontainers.image.description=imgb's example that needs no network",
            "COPY hello.txt /hello.txt # buildkit",
            "COPY etc/ /etc/ # buildkit",
            "WORKDIR /",
            "CMD [\"/hello.txt\"]",
        ]
    );
    assert_eq!(steps[1]["kind"]["value"]["dest"], "/hello.txt");
}

#[test]
fn target_prunes_unneeded_stages_and_their_bases() {
    let ctx = Context::new().file("Dockerfile", MULTI);
    let run = Imgb::new().run([
        "build",
        "--dry-run",
        "--target",
        "final",
        "--build-arg",
        "GO=1.23",
        "--build-arg",
        "NOBODY_USES_ME=1",
        ctx.path().to_str().expect("utf-8 path"),
    ]);
    run.success()
        .stdout_has("FROM image golang:1.23")
        .stdout_has("level 0: 0 \"build\", 2 \"assets\"")
        .stdout_has("level 1: 3 \"final\"")
        .stdout_has("[Warning] One or more build-args [NOBODY_USES_ME] were not consumed");
    assert!(!run.stdout.contains("texlive"), "{}", run.stdout);
    assert!(!run.stdout.contains("with-docs"), "{}", run.stdout);
}

#[test]
fn dot_output_renders_with_graphviz() {
    let dot = world::require_tool("dot");
    let ctx = Context::new().file("Dockerfile", MULTI);
    let run = Imgb::new().run([
        "build",
        "--dry-run",
        "--format",
        "dot",
        ctx.path().to_str().expect("utf-8 path"),
    ]);
    run.success()
        .stdout_has("digraph plan {")
        .stdout_has("\"stage0\" -> stage3 [label=\"COPY --from\"]")
        .stdout_has("\"image:texlive/texlive\" -> stage1 [label=\"FROM\"]");
    let mut child = Command::new(dot)
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run dot");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(run.stdout.as_bytes())
        .expect("write to dot");
    let out = child.wait_with_output().expect("dot finishes");
    let svg = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "dot failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(svg.contains("<svg"), "not SVG: {svg}");
    assert!(svg.contains("with&#45;docs"), "target stage missing: {svg}");
}

#[test]
fn plan_errors_name_the_dockerfile_line() {
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM busybox AS a\nCOPY --from=b /x /x\n\nFROM a AS b\nRUN touch /x\n",
    );
    let dir = ctx.path().to_str().expect("utf-8 path").to_string();
    Imgb::new()
        .run(["build", "--dry-run", &dir])
        .exit_code(1)
        .stderr_has("Dockerfile: line 4: circular dependency detected on stage: a -> b -> a")
        .stderr_has("   4 | FROM a AS b");
    Imgb::new()
        .run(["build", "--dry-run", "--target", "nope", &dir])
        .exit_code(1)
        .stderr_has("target stage \"nope\" could not be found (stages: a, b)");
    Imgb::new()
        .run(["build", "--dry-run", "--format", "yaml", &dir])
        .exit_code(2)
        .stderr_has("unknown --format");
}
