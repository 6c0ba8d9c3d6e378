//! `imgb build` end to end without RUN: FROM scratch, multi-stage COPY
//! --from, every COPY rule checked by unpacking the result with umoci and
//! reading the config with skopeo; the cache; reproducibility.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::built::{has, Built};
use crate::harness::{Context, Imgb};
use crate::world::{require_tool, run_ok};

fn build_in(imgb: &Imgb, ctx: &Context, extra: &[&str]) -> Built {
    Built::build(imgb, ctx.path(), extra, &[])
}

fn build(ctx: &Context) -> Built {
    let b = build_in(&Imgb::new(), ctx, &[]);
    b.run.success();
    b
}

fn tree_of(ctx: &Context) -> BTreeMap<String, String> {
    build(ctx).tree()
}

#[test]
fn hello_example_builds_and_is_valid() {
    let imgb = Imgb::new();
    let dir = tempfile::tempdir().expect("tmp");
    let layout = dir.path().join("layout");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/hello");
    let iid = dir.path().join("iid");
    let meta = dir.path().join("meta.json");
    let run = imgb.run([
        "build".to_string(),
        "-t".into(),
        "hello:1".into(),
        "-o".into(),
        format!("type=oci,dest={},tar=false", layout.display()),
        "--iidfile".into(),
        iid.display().to_string(),
        "--metadata-file".into(),
        meta.display().to_string(),
        example.display().to_string(),
    ]);
    run.success();
    let out = run_ok(
        Command::new(require_tool("oci-image-tool"))
            .args(["validate", "--type", "image", "--ref", "name=1"])
            .arg(&layout),
    );
    assert!(
        out.contains("Validation succeeded") || out.contains("OK"),
        "{out}"
    );
    let skopeo = |args: &[&str]| {
        run_ok(
            Command::new(require_tool("skopeo"))
                .args(args)
                .arg(format!("oci:{}:1", layout.display())),
        )
    };
    let config: serde_json::Value =
        serde_json::from_str(&skopeo(&["inspect", "--config"])).expect("json");
    assert_eq!(config["config"]["Cmd"], serde_json::json!(["/hello.txt"]));
    assert_eq!(
        config["config"]["Labels"]["org.opencontainers.image.title"],
        "hello"
    );
    assert_eq!(
        config["rootfs"]["diff_ids"].as_array().map(Vec::len),
        Some(2)
    );
    // --iidfile holds the config digest (Docker's image id), stdout too.
    let raw_config = skopeo(&["inspect", "--raw", "--config"]);
    let config_digest = format!("sha256:{}", crate::world::sha256_hex(raw_config.as_bytes()));
    assert_eq!(
        std::fs::read_to_string(&iid).expect("iidfile"),
        config_digest
    );
    assert_eq!(run.stdout.trim(), config_digest);
    let manifest_digest = skopeo(&["inspect", "--format", "{{.Digest}}"]);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta).expect("metadata")).expect("json");
    assert_eq!(meta["containerimage.digest"], manifest_digest.trim());
    assert_eq!(meta["containerimage.config.digest"], config_digest.as_str());
    assert_eq!(meta["image.name"], "hello:1");
    let bundle = dir.path().join("b");
    run_ok(
        Command::new(require_tool("umoci"))
            .args(["unpack", "--image"])
            .arg(format!("{}:1", layout.display()))
            .arg(&bundle),
    );
    assert_eq!(
        std::fs::read_to_string(bundle.join("rootfs/hello.txt")).expect("hello.txt"),
        "Hello from an image built by imgb.\n"
    );
}

#[test]
fn copy_rules_as_docker_has_them() {
    let ctx = Context::new()
        .file("Dockerfile", "FROM scratch\nWORKDIR /app\nCOPY src ./code/\nCOPY a.txt b.txt list/\nCOPY *.md docs/\nCOPY a.txt renamed.txt\nCOPY a.txt /deep/er/path/\nCOPY dir/ /\nCOPY --chown=7:8 --chmod=600 a.txt owned.txt\nCOPY --chmod=u+x,g-r a.txt sym.txt\nCOPY a.txt b.txt /app/list/\n")
        .file("src/main.rs", "fn main() {}")
        .file("src/lib/mod.rs", "// mod")
        .file("a.txt", "A")
        .file("b.txt", "B")
        .file("one.md", "1")
        .file("two.md", "2")
        .file("dir/top.txt", "T")
        .symlink("src/link", "main.rs");
    let tree = tree_of(&ctx);
    has(&tree, "app", "dir 755 0:0");
    has(&tree, "app/code/main.rs", "file 644 0:0 fn main() {}");
    has(&tree, "app/code/lib/mod.rs", "file 644 0:0 // mod");
    has(&tree, "app/code/link", "link 0:0 -> main.rs");
    assert!(
        !tree.contains_key("app/code/src"),
        "a directory source copies its contents"
    );
    has(&tree, "app/list/a.txt", "file 644 0:0 A");
    has(&tree, "app/list/b.txt", "file 644 0:0 B");
    has(&tree, "app/docs/one.md", "file 644 0:0 1");
    has(&tree, "app/docs/two.md", "file 644 0:0 2");
    has(&tree, "app/renamed.txt", "file 644 0:0 A");
    has(&tree, "deep/er/path/a.txt", "file 644 0:0 A");
    has(&tree, "deep/er", "dir 755 0:0");
    has(&tree, "top.txt", "file 644 0:0 T");
    has(&tree, "app/owned.txt", "file 600 7:8 A");
    has(&tree, "app/sym.txt", "file 704 0:0 A");
}

#[test]
fn several_sources_need_a_directory_destination() {
    let ctx = Context::new()
        .file("Dockerfile", "FROM scratch\nCOPY a b /dest\n")
        .file("a", "")
        .file("b", "");
    let built = build_in(&Imgb::new(), &ctx, &[]);
    built
        .run
        .exit_code(1)
        .stderr_has("must be a directory and end with a /")
        .stderr_has("Dockerfile:2");
}

#[test]
fn missing_and_ignored_sources_say_why() {
    let ctx = Context::new()
        .file("Dockerfile", "FROM scratch\nCOPY requirement.txt /\n")
        .file("requirements.txt", "x");
    let built = build_in(&Imgb::new(), &ctx, &[]);
    built
        .run
        .exit_code(1)
        .stderr_has("Dockerfile:2")
        .stderr_has("requirements.txt")
        .stderr_has("COPY requirement.txt /");
    let ctx = Context::new()
        .file("Dockerfile", "FROM scratch\nCOPY secret.key /\n")
        .file(".dockerignore", "# keys\n*.key\n")
        .file("secret.key", "x");
    let built = build_in(&Imgb::new(), &ctx, &[]);
    built
        .run
        .exit_code(1)
        .stderr_has(".dockerignore:2")
        .stderr_has("hint:");
    assert!(
        built.dir.path().join("layout").read_dir().is_err(),
        "no output after a failed build"
    );
}

#[test]
fn multi_stage_copy_from_keeps_owners_and_only_needed_stages_run() {
    let ctx = Context::new()
        .file(
            "Dockerfile",
            "FROM scratch AS build\nCOPY --chown=1000:1000 out/ /out/\n\nFROM scratch AS unused\nCOPY nothing-here /x\n\nFROM scratch\nCOPY --from=build /out/bin /usr/local/bin/app\nCOPY --from=0 /out /copied\n",
        )
        .file("out/bin", "#!app")
        .file("out/data/d.txt", "d");
    let built = build(&ctx);
    let tree = built.tree();
    has(&tree, "usr/local/bin/app", "file 644 1000:1000 #!app");
    has(&tree, "copied/data/d.txt", "file 644 1000:1000 d");
    assert!(
        !built.run.stderr.contains("nothing-here"),
        "the unused stage ran:\n{}",
        built.run.stderr
    );
}

#[test]
fn rebuilds_use_the_cache_exactly_as_far_as_inputs_are_unchanged() {
    let imgb = Imgb::new();
    let ctx = Context::new()
        .file(
            "Dockerfile",
            "FROM scratch\nCOPY first.txt /\nCOPY second.txt /\nCOPY third.txt /\n",
        )
        .file("first.txt", "1")
        .file("second.txt", "2")
        .file("third.txt", "3");
    let first = build_in(&imgb, &ctx, &[]);
    first.run.success();
    assert_eq!(
        first.run.stderr.matches("CACHED").count(),
        0,
        "{}",
        first.run.stderr
    );

    let again = build_in(&imgb, &ctx, &[]);
    again.run.success();
    assert_eq!(
        again.run.stderr.matches("CACHED").count(),
        3,
        "{}",
        again.run.stderr
    );
    assert_eq!(
        again.manifest_digest(),
        first.manifest_digest(),
        "a no-op rebuild gives the same image"
    );

    // Touching mtimes changes nothing.
    for f in ["first.txt", "second.txt", "third.txt"] {
        let file = std::fs::File::options()
            .write(true)
            .open(ctx.join(f))
            .expect("open");
        file.set_modified(
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(12345),
        )
        .expect("touch");
    }
    let touched = build_in(&imgb, &ctx, &[]);
    assert_eq!(
        touched.run.stderr.matches("CACHED").count(),
        3,
        "{}",
        touched.run.stderr
    );

    // The same context somewhere else: still cached.
    let moved = Context::new()
        .file(
            "Dockerfile",
            "FROM scratch\nCOPY first.txt /\nCOPY second.txt /\nCOPY third.txt /\n",
        )
        .file("first.txt", "1")
        .file("second.txt", "2")
        .file("third.txt", "3");
    let elsewhere = build_in(&imgb, &moved, &[]);
    assert_eq!(
        elsewhere.run.stderr.matches("CACHED").count(),
        3,
        "{}",
        elsewhere.run.stderr
    );

    // One changed file: that step and the ones after it run again.
    std::fs::write(ctx.join("second.txt"), "two").expect("write");
    let changed = build_in(&imgb, &ctx, &[]);
    changed.run.success();
    let lines: Vec<&str> = changed.run.stderr.lines().collect();
    assert_eq!(
        changed.run.stderr.matches("CACHED").count(),
        1,
        "{}",
        changed.run.stderr
    );
    let cached_at = lines
        .iter()
        .position(|l| l.ends_with("CACHED"))
        .expect("a cached line");
    assert!(
        lines[cached_at - 1].contains("COPY first.txt"),
        "{}",
        changed.run.stderr
    );
    assert_eq!(
        changed.tree().get("second.txt").map(String::as_str),
        Some("file 644 0:0 two")
    );

    // --no-cache runs everything.
    let fresh = build_in(&imgb, &ctx, &["--no-cache"]);
    assert_eq!(
        fresh.run.stderr.matches("CACHED").count(),
        0,
        "{}",
        fresh.run.stderr
    );
}

#[test]
fn same_inputs_give_the_same_digest_anywhere() {
    let make = |mtime: u64| {
        let ctx = Context::new()
            .file("Dockerfile", "FROM scratch\nCOPY . /src/\nENV A=1\n")
            .file("a/b/c.txt", "content")
            .file("x.bin", vec![7u8; 100_000]);
        for f in ["a/b/c.txt", "x.bin"] {
            let file = std::fs::File::options()
                .write(true)
                .open(ctx.join(f))
                .expect("open");
            file.set_modified(
                std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(mtime),
            )
            .expect("touch");
        }
        ctx
    };
    let (one, two) = (make(1_000_000), make(2_000_000));
    let a = build_in(
        &Imgb::new(),
        &one,
        &["--build-arg", "SOURCE_DATE_EPOCH=1700000000"],
    );
    let b = build_in(
        &Imgb::new(),
        &two,
        &["--build-arg", "SOURCE_DATE_EPOCH=1700000000"],
    );
    a.run.success();
    b.run.success();
    assert_eq!(a.manifest_digest(), b.manifest_digest());
    assert_eq!(a.config()["created"], "2023-11-14T22:13:20Z");
}

#[test]
fn docker_archive_output_is_readable_by_skopeo() {
    let ctx = Context::new()
        .file("Dockerfile", "FROM scratch\nCOPY f /f\n")
        .file("f", "data");
    let out = tempfile::tempdir().expect("tmp");
    let archive = out.path().join("img.tar");
    Imgb::new()
        .run([
            "build",
            "-t",
            "example.com/app:1",
            "-o",
            &format!("type=docker,dest={}", archive.display()),
            &ctx.path().display().to_string(),
        ])
        .success();
    let copied = out.path().join("copied");
    run_ok(
        Command::new(require_tool("skopeo"))
            .args(["copy", "--insecure-policy", "--quiet"])
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("oci:{}:x", copied.display())),
    );
    run_ok(
        Command::new(require_tool("umoci"))
            .args(["unpack", "--image"])
            .arg(format!("{}:x", copied.display()))
            .arg(out.path().join("b")),
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("b/rootfs/f")).expect("f"),
        "data"
    );
}

#[test]
fn copy_heredocs_parents_exclude_and_link() {
    let ctx = Context::new()
        .file(
            "Dockerfile",
            "FROM scratch\nARG NAME=world\nCOPY <<EOF /greeting.txt\nhello $NAME\nEOF\nCOPY <<'EOF' /literal.txt\nhello $NAME\nEOF\nCOPY --parents a/b/c.txt x/y.txt /kept/\nCOPY --exclude=*.log logs/ /logs/\nCOPY --link a/b/c.txt /linked/c.txt\n",
        )
        .file("a/b/c.txt", "C")
        .file("x/y.txt", "Y")
        .file("logs/keep.txt", "K")
        .file("logs/drop.log", "D");
    let tree = tree_of(&ctx);
    has(&tree, "greeting.txt", "file 644 0:0 hello world\n");
    has(&tree, "literal.txt", "file 644 0:0 hello $NAME\n");
    has(&tree, "kept/a/b/c.txt", "file 644 0:0 C");
    has(&tree, "kept/x/y.txt", "file 644 0:0 Y");
    has(&tree, "logs/keep.txt", "file 644 0:0 K");
    assert!(!tree.contains_key("logs/drop.log"), "{tree:#?}");
    has(&tree, "linked/c.txt", "file 644 0:0 C");
}

#[test]
fn a_linked_copy_is_reused_when_the_layers_below_change() {
    let imgb = Imgb::new();
    let ctx = Context::new()
        .file(
            "Dockerfile",
            "FROM scratch\nCOPY base.txt /\nCOPY --link app.txt /app/\nCOPY last.txt /\n",
        )
        .file("base.txt", "1")
        .file("app.txt", "A")
        .file("last.txt", "L");
    build_in(&imgb, &ctx, &[]).run.success();
    std::fs::write(ctx.join("base.txt"), "2").expect("write");
    let second = build_in(&imgb, &ctx, &[]);
    second.run.success();
    let lines: Vec<&str> = second.run.stderr.lines().collect();
    let cached: Vec<&str> = lines
        .windows(2)
        .filter(|w| w[1].ends_with("CACHED"))
        .map(|w| w[0])
        .collect();
    assert_eq!(cached.len(), 1, "{}", second.run.stderr);
    assert!(
        cached[0].contains("COPY --link app.txt"),
        "{}",
        second.run.stderr
    );
    let tree = second.tree();
    has(&tree, "base.txt", "file 644 0:0 2");
    has(&tree, "app/app.txt", "file 644 0:0 A");
    has(&tree, "last.txt", "file 644 0:0 L");
}

#[test]
fn rewriting_a_big_layer_copies_recorded_gzip_chunks_byte_for_byte() {
    // 12 MiB of text and noise (96 pgzip chunks), then a late file.
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect()
    };
    let text: Vec<u8> = b"let layer = build(cache, image); // imgb\n"
        .iter()
        .copied()
        .cycle()
        .take(4 << 20)
        .collect();
    let ctx = Context::new()
        .file("Dockerfile", "FROM scratch\nCOPY . /data/\n")
        .file("a-text", &text)
        .file("b-noise", noise(4 << 20))
        .file("c-text", &text)
        .file("zz-late", "original");
    let imgb = Imgb::new();
    let first = build_in(&imgb, &ctx, &[]);
    first.run.success();
    let records = imgb.home.path().join("gzip-chunks");
    let size = std::fs::metadata(&records).expect("chunks recorded").len();
    assert!(
        size > 0 && size.is_multiple_of(80),
        "{size} bytes of records"
    );

    // --no-cache writes the layer again from the records: the same bytes,
    // and nothing new on record.
    let again = build_in(&imgb, &ctx, &["--no-cache"]);
    again.run.success();
    assert_eq!(again.layer_digests(), first.layer_digests());
    assert_eq!(std::fs::metadata(&records).expect("records").len(), size);

    // A changed late file: the layer equals one compressed from scratch in
    // an empty state dir, and holds the new content.
    std::fs::write(ctx.join("zz-late"), "changed, and longer").expect("write");
    let changed = build_in(&imgb, &ctx, &[]);
    changed.run.success();
    let scratch = build_in(&Imgb::new(), &ctx, &[]);
    scratch.run.success();
    assert_ne!(changed.layer_digests(), first.layer_digests());
    assert_eq!(changed.layer_digests(), scratch.layer_digests());
    assert_eq!(
        changed.tree().get("data/zz-late").map(String::as_str),
        Some("file 644 0:0 changed, and longer")
    );
    assert!(std::fs::metadata(&records).expect("records").len() > size);
}
