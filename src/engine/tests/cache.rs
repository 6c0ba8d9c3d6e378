//! Cache hits and misses, as a table: a first build, one change, a second
//! build, and the status of every step of the second build.

use crate::cache::CacheIndex;
use crate::image::canonical_json;
use crate::plan::BuildPlan;

use super::super::{CachePolicy, EngineError};
use super::fake::{copy, copy_from, copy_link, env, plan, run, stage, workdir, World};

/// The usual stage: `C` = `COPY a.txt`, `E` = `ENV`, `R` = `RUN`, `C` =
/// `COPY b.txt`, `W` = `WORKDIR /work`.
fn app() -> BuildPlan {
    plan(vec![stage(
        0,
        "app",
        None,
        vec![
            copy("a.txt", "/a.txt"),
            env("K", "V"),
            run("write /out hello"),
            copy("b.txt", "/b.txt"),
            workdir("/work"),
        ],
    )])
}

/// `app` with another RUN command.
fn app_other_run() -> BuildPlan {
    let mut p = app();
    p.stages[0].steps[2] = run("write /out bye");
    p
}

/// `app` with `COPY --link b.txt`.
fn app_link() -> BuildPlan {
    let mut p = app();
    p.stages[0].steps[3] = copy_link("b.txt", "/b.txt");
    p
}

/// A build stage whose RUN output the app stage copies.
fn two_stages() -> BuildPlan {
    plan(vec![
        stage(
            0,
            "build",
            None,
            vec![copy("a.txt", "/src/a.txt"), run("write /bin/tool made")],
        ),
        stage(
            1,
            "app",
            None,
            vec![copy("b.txt", "/b.txt"), copy_from(0, "/bin/tool", "/tool")],
        ),
    ])
}

/// The app stage on top of the build stage (`FROM build`).
fn stage_base() -> BuildPlan {
    plan(vec![
        stage(0, "build", None, vec![copy("a.txt", "/a.txt")]),
        stage(1, "app", Some(0), vec![run("write /out x")]),
    ])
}

/// What changes between the two builds.
enum Change {
    Nothing,
    /// A context file is written.
    File(&'static str, &'static str),
    /// The second build uses another plan.
    Plan(fn() -> BuildPlan),
    /// The cache records stay, the blob of the step `index` of the first
    /// stage is gone (a pruned store).
    BlobGone(usize),
}

struct Case {
    name: &'static str,
    plan: fn() -> BuildPlan,
    change: Change,
    /// The second build's policy.
    policy: CachePolicy,
    /// The second build's statuses (see `Built::statuses`).
    second: &'static str,
    /// The commands the second build ran.
    runs: usize,
}

const CASES: &[fn() -> Case] = &[
    || Case {
        name: "an unchanged rebuild is cached throughout",
        plan: app,
        change: Change::Nothing,
        policy: CachePolicy::Reuse,
        second: "C-CCC",
        runs: 0,
    },
    || Case {
        name: "a changed source misses its COPY and every later step",
        plan: app,
        change: Change::File("a.txt", "changed"),
        policy: CachePolicy::Reuse,
        second: "R-RRR",
        runs: 1,
    },
    || Case {
        name: "a late change keeps the steps before it",
        plan: app,
        change: Change::File("b.txt", "changed"),
        policy: CachePolicy::Reuse,
        second: "C-CRR",
        runs: 0,
    },
    || Case {
        name: "a file no step selects changes nothing",
        plan: app,
        change: Change::File("unused.txt", "new"),
        policy: CachePolicy::Reuse,
        second: "C-CCC",
        runs: 0,
    },
    || Case {
        name: "another command misses its RUN and what follows",
        plan: app,
        change: Change::Plan(app_other_run),
        policy: CachePolicy::Reuse,
        second: "C-RRR",
        runs: 1,
    },
    || Case {
        name: "--no-cache runs every step",
        plan: app,
        change: Change::Nothing,
        policy: CachePolicy::Rebuild,
        second: "R-RRR",
        runs: 1,
    },
    || Case {
        name: "--no-cache-filter runs the named stage's steps",
        plan: app,
        change: Change::Nothing,
        policy: CachePolicy::RebuildStages(vec!["APP".into()]),
        second: "R-RRR",
        runs: 1,
    },
    || Case {
        name: "--no-cache-filter of another stage reuses this one",
        plan: app,
        change: Change::Nothing,
        policy: CachePolicy::RebuildStages(vec!["other".into()]),
        second: "C-CCC",
        runs: 0,
    },
    || Case {
        name: "a record whose blob is gone is a miss; later keys do not depend on outputs",
        plan: app,
        change: Change::BlobGone(2),
        policy: CachePolicy::Reuse,
        second: "C-RCC",
        runs: 1,
    },
    || Case {
        name: "COPY --link hits whatever is below it; the chain moves on",
        plan: app_link,
        change: Change::File("a.txt", "changed"),
        policy: CachePolicy::Reuse,
        second: "R-RCR",
        runs: 1,
    },
    || Case {
        name: "COPY --from a changed stage misses",
        plan: two_stages,
        change: Change::File("a.txt", "changed"),
        policy: CachePolicy::Reuse,
        second: "RR CR",
        runs: 1,
    },
    || Case {
        name: "COPY --from an unchanged stage hits",
        plan: two_stages,
        change: Change::File("b.txt", "changed"),
        policy: CachePolicy::Reuse,
        second: "CC RR",
        runs: 0,
    },
    || Case {
        name: "a stage on a changed stage misses",
        plan: stage_base,
        change: Change::File("a.txt", "changed"),
        policy: CachePolicy::Reuse,
        second: "R R",
        runs: 1,
    },
];

#[test]
fn cache_hits_and_misses() {
    let mut failures = Vec::new();
    for case in CASES {
        let case = case();
        let world = World::new();
        for (name, text) in [("a.txt", "a"), ("b.txt", "b")] {
            world.file(name, text);
        }
        let first_plan = (case.plan)();
        let first = world.build(&first_plan, CachePolicy::Reuse);
        let first_output = first.output.expect(case.name);
        assert!(
            !first.statuses.contains('C'),
            "{}: a cold build is not cached: {}",
            case.name,
            first.statuses
        );
        let mut second_plan = first_plan;
        match case.change {
            Change::Nothing => {}
            Change::File(name, text) => world.file(name, text),
            Change::Plan(other) => second_plan = other(),
            Change::BlobGone(index) => {
                let digest = first_output.layers[layer_of(&second_plan, index)].digest;
                std::fs::remove_file(world.store.blob_path(&digest)).unwrap();
            }
        }
        let second = world.build(&second_plan, case.policy);
        let output = second.output.expect(case.name);
        if second.statuses != case.second || second.commands.len() != case.runs {
            failures.push(format!(
                "{}: statuses {} (want {}), {} command(s) run (want {})",
                case.name,
                second.statuses,
                case.second,
                second.commands.len(),
                case.runs
            ));
        }
        if case.second.chars().all(|c| c != 'R') {
            // A fully cached rebuild gives the same image.
            assert_eq!(
                canonical_json(&output.config).unwrap(),
                canonical_json(&first_output.config).unwrap(),
                "{}",
                case.name
            );
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

/// The index of the layer that step `index` of the first stage made.
fn layer_of(plan: &BuildPlan, index: usize) -> usize {
    plan.stages[0].steps[..index]
        .iter()
        .filter(|s| s.creates_layer())
        .count()
}

/// A failed RUN records nothing: the next build runs it again, and the
/// failure names the step.
#[test]
fn a_failed_step_is_not_cached() {
    let world = World::new();
    world.file("a.txt", "a");
    let failing = || {
        plan(vec![stage(
            0,
            "app",
            None,
            vec![copy("a.txt", "/a.txt"), run("fail 3"), env("K", "V")],
        )])
    };
    for attempt in 0..2 {
        let built = world.build(&failing(), CachePolicy::Reuse);
        let failure = built.output.expect_err("the RUN fails");
        assert_eq!((failure.stage, failure.step), (0, 1));
        assert!(
            matches!(failure.error, EngineError::RunFailed { exit_code: 3, .. }),
            "{:?}",
            failure.error
        );
        assert_eq!(built.commands, ["fail 3"], "attempt {attempt}");
        let want = if attempt == 0 { "R.." } else { "C.." };
        assert_eq!(built.statuses, want, "attempt {attempt}");
    }
}

/// WORKDIR of a directory that exists adds no layer; the answer is
/// recorded without one, and reused.
#[test]
fn workdir_of_an_existing_directory_is_recorded_without_a_layer() {
    let world = World::new();
    world.file("work/f", "f");
    let p = || {
        plan(vec![stage(
            0,
            "app",
            None,
            vec![copy("work", "/work/"), workdir("/work")],
        )])
    };
    let first = world.build(&p(), CachePolicy::Reuse);
    assert_eq!(first.statuses, "RR");
    assert_eq!(first.output.unwrap().layers.len(), 1);
    let index = CacheIndex::new(&world.home().join("cache"));
    let records = index.records();
    assert_eq!(records.len(), 2);
    assert_eq!(records.iter().filter(|r| r.layer.is_none()).count(), 1);
    let second = world.build(&p(), CachePolicy::Reuse);
    assert_eq!(second.statuses, "CR", "history only, never a layer");
    assert_eq!(second.output.unwrap().layers.len(), 1);
}
