//! `RUN --mount=type=cache` beyond persistence (tested in `run`): seeding
//! with `from=`/`source=`, and `sharing=locked|private` between stages that
//! build side by side.

use crate::built::Built;
use crate::harness::{Context, Imgb};
use crate::world::{self, require_tool, Flavour};

fn busybox_ref() -> String {
    let registry = world::registry(Flavour::Plain);
    world::push_busybox(registry, "cachemounts/busybox");
    format!("{}/cachemounts/busybox:latest", registry.addr)
}

fn read(built: &Built, path: &str) -> String {
    std::fs::read_to_string(built.rootfs().join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}\n{}", built.run.stderr))
        .trim()
        .to_string()
}

#[test]
fn a_cache_mount_from_a_stage_starts_with_that_stages_files() {
    require_tool("runc");
    let base = busybox_ref();
    let imgb = Imgb::new();
    let mount = "--mount=type=cache,id=seeded,from=seed,source=/data,target=/c";
    let ctx = Context::new().file(
        "Dockerfile",
        format!(
            "FROM {base} AS seed\nRUN mkdir -p /data && echo seeded > /data/x\n\
             FROM {base}\n\
             RUN {mount} cat /c/x > /out && echo more > /c/y\n\
             RUN {mount} cat /c/y > /out2\n"
        ),
    );
    let built = Built::build(&imgb, ctx.path(), &[], &[]);
    built.run.success();
    assert_eq!(read(&built, "out"), "seeded");
    // What the first RUN wrote into the cache is there for the second.
    assert_eq!(read(&built, "out2"), "more");
    // The cache's contents never reach a layer.
    assert!(!built.rootfs().join("c/x").exists());
}

/// Two stages that use the cache mount `id=shared-dir` with `sharing`, side
/// by side; each records what it saw.
fn two_users(sharing: &str, script: &str) -> Context {
    let base = busybox_ref();
    let stage = |me: &str| {
        format!(
            "FROM {base} AS {me}\n\
             RUN --mount=type=cache,id=shared-dir,sharing={sharing},target=/c ME={me}; {script}\n"
        )
    };
    Context::new().file(
        "Dockerfile",
        format!(
            "{}{}FROM scratch\nCOPY --from=a /seen /a\nCOPY --from=b /seen /b\n",
            stage("a"),
            stage("b")
        ),
    )
}

#[test]
fn a_locked_cache_mount_has_one_user_at_a_time() {
    require_tool("runc");
    let imgb = Imgb::new();
    let ctx = two_users(
        "locked",
        "if [ -e /c/busy ]; then echo overlap > /seen; else echo alone > /seen; fi; \
         touch /c/busy; sleep 2; rm /c/busy",
    );
    let built = Built::build(&imgb, ctx.path(), &["--jobs", "2"], &[]);
    built.run.success();
    assert_eq!(read(&built, "a"), "alone");
    assert_eq!(read(&built, "b"), "alone");
}

#[test]
fn a_busy_private_cache_mount_gives_the_second_user_its_own() {
    require_tool("runc");
    let imgb = Imgb::new();
    let ctx = two_users(
        "private",
        "touch /c/$ME; sleep 3; ls /c | tr '\\n' ' ' > /seen",
    );
    let built = Built::build(&imgb, ctx.path(), &["--jobs", "2"], &[]);
    built.run.success();
    // Each saw only its own mark: two instances of one cache id.
    assert_eq!(read(&built, "a"), "a");
    assert_eq!(read(&built, "b"), "b");
    let dirs: Vec<String> = std::fs::read_dir(imgb.home.path().join("cache-mounts"))
        .expect("cache-mounts")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert_eq!(dirs.len(), 2, "{dirs:?}");
}
