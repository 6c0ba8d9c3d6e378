//! What `imgb build` prints while it works and when it ends: `--progress`
//! plain and rawjson (snapshots), the live TTY view (under a pty from
//! `script`), `-q`, the context on stdin, `--iidfile`/`--metadata-file`
//! checked against skopeo, and error rendering.

use std::process::{Command, Stdio};

use crate::harness::{assert_snapshot, filter, Context, Imgb, Run};
use crate::world::{require_tool, run_ok};

const MULTI_STAGE: &str = "\
FROM scratch AS build
COPY a.txt /a.txt
COPY b.txt /b.txt

FROM scratch
COPY --from=build /a.txt /out/a.txt
COPY b.txt /b.txt
LABEL org.example.kind=test
";

fn multi_stage() -> Context {
    Context::new()
        .file("Dockerfile", MULTI_STAGE)
        .file("a.txt", "a\n")
        .file("b.txt", "b\n")
}

/// Builds once, changes b.txt, builds again with `progress`: the second run
/// has cached steps (a.txt) and uncached ones (b.txt and what follows).
fn second_build(progress: &str) -> (Imgb, Context, Run) {
    let imgb = Imgb::new();
    let ctx = multi_stage();
    let ctx_path = ctx.path().display().to_string();
    imgb.run(["build", "--progress=plain", &ctx_path]).success();
    let ctx = ctx.file("b.txt", "b, changed\n");
    let run = imgb.run(["build", &format!("--progress={progress}"), &ctx_path]);
    run.success();
    (imgb, ctx, run)
}

#[test]
fn plain_progress_snapshot() {
    let (imgb, ctx, run) = second_build("plain");
    let text = filter(
        &run.stderr,
        &[(ctx.path(), "CONTEXT"), (imgb.home.path(), "HOME")],
    );
    assert_snapshot("progress_plain_multi_stage", &text);
    assert!(run.stdout.starts_with("sha256:") && run.stdout.lines().count() == 1);
}

#[test]
fn rawjson_progress_is_one_event_per_line() {
    let (_imgb, _ctx, run) = second_build("rawjson");
    let mut normalised = String::new();
    for line in run.stderr.lines() {
        let mut event: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{}", run.stderr));
        // Durations vary; their presence and type are what is checked.
        if let Some(seconds) = event.get_mut("seconds") {
            assert!(seconds.is_f64(), "seconds is a number: {line}");
            *seconds = "<dur>".into();
        }
        normalised.push_str(&event.to_string());
        normalised.push('\n');
    }
    assert_snapshot("progress_rawjson_multi_stage", &filter(&normalised, &[]));
}

#[test]
fn progress_comes_from_the_environment_and_bad_values_are_usage_errors() {
    let ctx = multi_stage();
    let imgb = Imgb::new();
    let mut cmd = imgb.cmd();
    cmd.env("BUILDKIT_PROGRESS", "rawjson")
        .arg("build")
        .arg(ctx.path());
    let run = Run::of(cmd);
    run.success().stderr_has(r#""type":"step""#);
    let mut cmd = imgb.cmd();
    cmd.env("IMGB_PROGRESS", "plain")
        .arg("build")
        .arg(ctx.path());
    Run::of(cmd)
        .success()
        .stderr_has("#1 [build 1/2] COPY a.txt /a.txt");
    imgb.run(["build", "--progress=fancy", ctx.path().to_str().unwrap()])
        .exit_code(2)
        .stderr_has("use auto, tty, plain, rawjson or quiet");
}

#[test]
fn quiet_prints_only_the_image_id() {
    let ctx = multi_stage();
    let run = Imgb::new().run(["build", "-q", ctx.path().to_str().unwrap()]);
    run.success();
    assert_eq!(run.stderr, "", "nothing on stderr with -q");
    let id = run.stdout.trim();
    assert!(
        id.starts_with("sha256:") && id.len() == 71 && run.stdout.lines().count() == 1,
        "{run:?}"
    );
}

#[test]
fn tty_progress_is_a_live_view_ending_in_a_clean_summary() {
    let script = require_tool("script");
    let imgb = Imgb::new();
    let ctx = multi_stage();
    let ctx_path = ctx.path().display().to_string();
    imgb.run(["build", "--progress=plain", &ctx_path]).success();
    let ctx = ctx.file("b.txt", "changed\n");
    // `script` gives imgb a pty as stderr, so `auto` must pick the live view.
    let mut cmd = imgb.cmd();
    let inner = format!(
        "{} build {}",
        crate::harness::imgb_bin(),
        ctx.path().display()
    );
    cmd = {
        let mut c = Command::new(&script);
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.args(["-qec", &inner, "/dev/null"]);
        c
    };
    let run = Run::of(cmd);
    run.success();
    let out = run.stdout.replace("\r\n", "\n");
    // The live part: cursor movement and line clearing while steps run.
    assert!(out.contains("\x1b[2K"), "no live redraw:\n{out:?}");
    // The end: the final state reprinted as plain lines, then the summary.
    let tail: Vec<&str> = out
        .rsplit_once("[+] Building ")
        .map(|(_, t)| t.lines().collect())
        .unwrap_or_default();
    assert!(
        tail.first().is_some_and(|l| l.ends_with("(5/5) FINISHED")),
        "{out:?}"
    );
    let tail = filter(&tail[1..].join("\n"), &[]);
    assert_eq!(
        tail,
        " => CACHED [build 1/2] COPY a.txt /a.txt
 => [build 2/2] COPY b.txt /b.txt <dur>
 => [stage-1 1/3] COPY --from=build /a.txt /out/a.txt <dur>
 => [stage-1 2/3] COPY b.txt /b.txt <dur>
 => [stage-1 3/3] LABEL org.example.kind=test <dur>
built sha256:<digest> (1 steps cached, 3 run) manifest sha256:<digest>
sha256:<digest>"
    );
    // NO_COLOR (set by the harness) means no colour codes, only movement.
    for sgr in ["\x1b[1m", "\x1b[31m", "\x1b[34m", "\x1b[36m"] {
        assert!(!out.contains(sgr), "colour despite NO_COLOR:\n{out:?}");
    }
}

#[test]
fn context_tar_and_dockerfile_from_stdin() {
    let ctx = multi_stage();
    let imgb = Imgb::new();
    let scratch = tempfile::tempdir().unwrap();
    let tar = scratch.path().join("context.tar.gz");
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(ctx.path())
            .arg("-czf")
            .arg(&tar)
            .arg("."),
    );
    let stdin_of = |path: &std::path::Path| Stdio::from(std::fs::File::open(path).unwrap());
    let from_dir = imgb.run(["build", "-q", ctx.path().to_str().unwrap()]);
    from_dir.success();
    let mut cmd = imgb.cmd();
    cmd.args(["build", "-q", "-"]).stdin(stdin_of(&tar));
    let from_stdin = Run::of(cmd);
    from_stdin.success();
    assert_eq!(
        from_dir.stdout, from_stdin.stdout,
        "same context, same image"
    );
    let leftovers = std::fs::read_dir(imgb.home.path().join("context-tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leftovers, 0, "the unpacked context is deleted afterwards");

    // A lone Dockerfile on stdin: an empty context, as `docker build - < Dockerfile`.
    let solo = scratch.path().join("Dockerfile.solo");
    std::fs::write(&solo, "FROM scratch\nLABEL a=b\n").unwrap();
    let mut cmd = imgb.cmd();
    cmd.args(["build", "-q", "-"]).stdin(stdin_of(&solo));
    Run::of(cmd).success();
    // It has no context: COPY fails, naming the line.
    std::fs::write(&solo, "FROM scratch\nCOPY a.txt /\n").unwrap();
    let mut cmd = imgb.cmd();
    cmd.args(["build", "-q", "-"]).stdin(stdin_of(&solo));
    Run::of(cmd).exit_code(1).stderr_has("<stdin>:2:");

    // `-f -` with a directory context reads the same Dockerfile.
    let mut cmd = imgb.cmd();
    cmd.args(["build", "-q", "-f", "-"])
        .arg(ctx.path())
        .stdin(stdin_of(&ctx.join("Dockerfile")));
    let run = Run::of(cmd);
    run.success();
    assert_eq!(run.stdout, from_dir.stdout);

    imgb.run(["build", "-f", "-", "-"])
        .exit_code(2)
        .stderr_has("cannot both be read from stdin");
}

#[test]
fn iidfile_and_metadata_file_agree_with_skopeo() {
    let ctx = multi_stage();
    let imgb = Imgb::new();
    let out = tempfile::tempdir().unwrap();
    let (iid, meta, archive) = (
        out.path().join("iid"),
        out.path().join("meta.json"),
        out.path().join("image.tar"),
    );
    let run = imgb.run([
        "build".as_ref(),
        "-t".as_ref(),
        "example.com/team/app:1.0".as_ref(),
        "--iidfile".as_ref(),
        iid.as_os_str(),
        "--metadata-file".as_ref(),
        meta.as_os_str(),
        "-o".as_ref(),
        format!("type=oci,dest={}", archive.display()).as_ref(),
        ctx.path().as_os_str(),
    ]);
    run.success();
    let skopeo = |extra: &[&str]| {
        let mut cmd = Command::new(require_tool("skopeo"));
        cmd.arg("inspect")
            .args(extra)
            .arg("--raw")
            .arg(format!("oci-archive:{}", archive.display()));
        let out = cmd.output().expect("run skopeo");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        format!("sha256:{}", sha256_hex(&out.stdout))
    };
    let manifest_digest = skopeo(&[]);
    let config_digest = skopeo(&["--config"]);
    let iid = std::fs::read_to_string(&iid).unwrap();
    assert_eq!(
        iid, config_digest,
        "--iidfile holds the config digest, as Docker"
    );
    assert_eq!(run.stdout.trim(), iid);
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    assert_eq!(meta["containerimage.digest"], manifest_digest.as_str());
    assert_eq!(meta["containerimage.config.digest"], config_digest.as_str());
    assert_eq!(
        meta["containerimage.descriptor"]["digest"],
        manifest_digest.as_str()
    );
    assert_eq!(
        meta["containerimage.descriptor"]["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(meta["image.name"], "example.com/team/app:1.0");
}

#[test]
fn errors_show_the_line_once_with_a_hint() {
    let ctx = Context::new()
        .file("Dockerfile", "FROM scratch\nCOPY secret.txt /\n")
        .file("secret.txt", "x")
        .file(".dockerignore", "secret.txt\n");
    let run = Imgb::new().run(["build", "--progress=plain", ctx.path().to_str().unwrap()]);
    run.exit_code(1);
    assert_eq!(run.stdout, "", "stdout is for data only");
    let text = filter(&run.stderr, &[(ctx.path(), "CONTEXT")]);
    assert_eq!(text.matches("error:").count(), 1, "{text}");
    assert_snapshot("error_excluded_copy_source", &text);
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn rawjson_reports_registry_transfers_with_sizes() {
    use crate::world::{self, Flavour};
    let registry = world::registry(Flavour::Plain);
    world::push_busybox(registry, "progress/busybox");
    let imgb = crate::registry::imgb_for(registry);
    let ctx = Context::new()
        .file(
            "Dockerfile",
            format!("FROM {}/progress/busybox\nCOPY f /f\n", registry.addr),
        )
        .file("f", "x");
    let pushed = format!("{}/progress/app:1", registry.addr);
    let run = crate::registry::run(
        &imgb,
        registry,
        &[
            "build",
            "--progress=rawjson",
            "--push",
            "-t",
            &pushed,
            ctx.path().to_str().unwrap(),
        ],
    );
    run.success();
    let events: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    let transfers = |kind: &str| -> Vec<&serde_json::Value> {
        events
            .iter()
            .filter(|e| e["type"] == "transfer" && e["event"] == kind)
            .collect()
    };
    let fetched = transfers("fetched");
    assert!(!fetched.is_empty(), "{}", run.stderr);
    assert!(fetched.iter().all(|e| e["size"].as_u64() > Some(0)
        && e["digest"]
            .as_str()
            .is_some_and(|d| d.starts_with("sha256:"))));
    assert!(
        !transfers("uploaded").is_empty() || !transfers("mounted").is_empty(),
        "{}",
        run.stderr
    );
    assert!(!transfers("manifest").is_empty(), "{}", run.stderr);
}
