//! Independent stages build side by side (`--jobs`): proven by two RUN
//! steps that meet through a shared cache mount, which only works when both
//! run at once; their output stays attributed to its own step; a failing
//! stage stops the others.

use std::time::{Duration, Instant};

use crate::built::Built;
use crate::harness::{Context, Imgb};
use crate::world::{self, require_tool, Flavour};

fn busybox_ref() -> String {
    let registry = world::registry(Flavour::Plain);
    world::push_busybox(registry, "parallel/busybox");
    format!("{}/parallel/busybox:latest", registry.addr)
}

/// A stage that marks its arrival in the shared cache mount, waits up to
/// `wait_tenths` tenths of a second for the `other` stage to arrive, and
/// records whether it did.
fn rendezvous_stage(base: &str, me: &str, other: &str, wait_tenths: u32) -> String {
    format!(
        "FROM {base} AS {me}\n\
         ARG RUN_ID\n\
         RUN --mount=type=cache,id=rendezvous,target=/r \\\n\
         \x20   echo hello-from-{me} && touch /r/$RUN_ID-{me} && i=0 && \\\n\
         \x20   while [ ! -e /r/$RUN_ID-{other} ] && [ $i -lt {wait_tenths} ]; do sleep 0.1; i=$((i+1)); done && \\\n\
         \x20   if [ -e /r/$RUN_ID-{other} ]; then echo together > /seen; else echo alone > /seen; fi\n"
    )
}

fn rendezvous(wait_tenths: u32) -> Context {
    let base = busybox_ref();
    let dockerfile = format!(
        "{}{}FROM scratch\nCOPY --from=a /seen /a\nCOPY --from=b /seen /b\n",
        rendezvous_stage(&base, "a", "b", wait_tenths),
        rendezvous_stage(&base, "b", "a", wait_tenths),
    );
    Context::new().file("Dockerfile", dockerfile)
}

fn seen(built: &Built) -> (String, String) {
    let root = built.rootfs();
    let read = |p: &str| {
        std::fs::read_to_string(root.join(p))
            .unwrap_or_else(|e| panic!("{p}: {e}"))
            .trim()
            .to_string()
    };
    (read("a"), read("b"))
}

/// The id BuildKit-style plain output gave the step whose label contains
/// `label`.
fn step_id(stderr: &str, label: &str) -> String {
    stderr
        .lines()
        .find(|l| l.starts_with('#') && l.contains(label))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no step {label:?} in:\n{stderr}"))
        .to_string()
}

#[test]
fn independent_stages_build_side_by_side_and_their_output_stays_apart() {
    require_tool("runc");
    let imgb = Imgb::new();
    let ctx = rendezvous(600);
    let built = Built::build(
        &imgb,
        ctx.path(),
        &["--jobs", "2", "--build-arg", "RUN_ID=side-by-side"],
        &[],
    );
    built.run.success();
    // Each stage saw the other arrive while it was running.
    assert_eq!(
        seen(&built),
        ("together".into(), "together".into()),
        "{}",
        built.run.stderr
    );
    // Each output line carries the id of the step that printed it.
    let stderr = &built.run.stderr;
    for me in ["a", "b"] {
        let id = step_id(stderr, &format!("[{me} 2/2] RUN"));
        let line = format!("{id} hello-from-{me}");
        assert!(
            stderr.lines().any(|l| l == line),
            "no {line:?} in:\n{stderr}"
        );
    }
}

#[test]
fn one_job_builds_one_stage_at_a_time() {
    require_tool("runc");
    let imgb = Imgb::new();
    let ctx = rendezvous(20);
    let built = Built::build(
        &imgb,
        ctx.path(),
        &["-j", "1", "--build-arg", "RUN_ID=one-job"],
        &[],
    );
    built.run.success();
    // The first stage waited alone; the second found the first's mark.
    let (a, b) = seen(&built);
    let mut both = [a, b];
    both.sort();
    assert_eq!(both, ["alone".to_string(), "together".to_string()]);
    // Zero jobs is a usage error.
    imgb.run(["build", "--jobs", "0", &ctx.path().display().to_string()])
        .exit_code(2);
}

#[test]
fn a_failing_stage_stops_the_stages_running_beside_it() {
    require_tool("runc");
    let imgb = Imgb::new();
    let base = busybox_ref();
    let ctx = Context::new().file(
        "Dockerfile",
        format!(
            "FROM {base} AS slow\nRUN sleep 120\n\
             FROM {base} AS broken\nRUN sleep 1; echo broke; exit 7\n\
             FROM scratch\nCOPY --from=slow /bin/sh /a\nCOPY --from=broken /bin/sh /b\n"
        ),
    );
    let started = Instant::now();
    let built = Built::build(&imgb, ctx.path(), &["--jobs", "2"], &[]);
    built
        .run
        .exit_code(1)
        .stderr_has("RUN sleep 1; echo broke; exit 7")
        .stderr_has("exit code: 7");
    // The slow stage's container was killed rather than waited for.
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "the build waited for the slow stage:\n{}",
        built.run.stderr
    );
    let runs = imgb.home.path().join("runs");
    let left: Vec<_> = std::fs::read_dir(&runs)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}
