//! RUN end to end: the real imgb, real runc and overlayfs, busybox from the
//! local plain registry; results unpacked with umoci and run with runc.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::built::{walk_tree, Built};
use crate::harness::{Context, Imgb};
use crate::world::{self, require_tool, run_ok, Flavour};

/// `FROM` line for the busybox fixture in the plain registry.
fn from_busybox() -> String {
    let registry = world::registry(Flavour::Plain);
    world::push_busybox(registry, "run/busybox");
    format!("FROM {}/run/busybox:latest", registry.addr)
}

/// The unpacked rootfs, with content trimmed and links without owners:
/// path -> description.
fn tree(built: &Built) -> BTreeMap<String, String> {
    walk_tree(&built.rootfs(), |path, meta| {
        if meta.file_type().is_symlink() {
            format!(
                "link -> {}",
                std::fs::read_link(path).expect("link").display()
            )
        } else if meta.is_dir() {
            format!(
                "dir {:o} {}:{}",
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid()
            )
        } else {
            format!(
                "file {:o} {}:{} {}",
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid(),
                String::from_utf8_lossy(&std::fs::read(path).expect("read")).trim_end()
            )
        }
    })
}

fn build_with(imgb: &Imgb, ctx: &Context, extra: &[&str], env: &[(&str, &str)]) -> Built {
    Built::build(imgb, ctx.path(), extra, env)
}

fn build(imgb: &Imgb, ctx: &Context, extra: &[&str]) -> Built {
    let b = build_with(imgb, ctx, extra, &[]);
    b.run.success();
    b
}

/// No snapshot directory or mount is left behind.
fn assert_clean(imgb: &Imgb) {
    let tmp = imgb.home.path().join("runs");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let home = imgb.home.path().display().to_string();
    assert!(!mounts.contains(&home), "a mount is left under {home}");
}

#[test]
fn run_steps_add_change_and_delete_files_and_the_image_runs() {
    require_tool("runc");
    let imgb = Imgb::new();
    let ctx = Context::new().file(
        "Dockerfile",
        format!(
            "{}\n\
             RUN mkdir -p /app && echo hello > /app/a.txt && echo gone > /app/b.txt\n\
             RUN echo changed > /app/a.txt && rm /app/b.txt /etc/group && ln -s a.txt /app/link\n\
             RUN true\n\
             WORKDIR /work\n\
             USER app\n\
             RUN id > /tmp/id.txt && pwd > /tmp/pwd.txt\n\
             CMD [\"cat\", \"/app/a.txt\"]\n",
            from_busybox()
        ),
    );
    let built = build(&imgb, &ctx, &[]);
    let tree = tree(&built);
    let get = |p: &str| tree.get(p).map(String::as_str);
    assert_eq!(get("app/a.txt"), Some("file 644 0:0 changed"), "{tree:#?}");
    assert_eq!(get("app/b.txt"), None, "deleted in a later RUN");
    assert_eq!(get("etc/group"), None, "a deleted base file is whited out");
    assert_eq!(get("etc/passwd").map(|s| s.starts_with("file")), Some(true));
    assert_eq!(get("app/link"), Some("link -> a.txt"));
    assert_eq!(
        get("tmp/id.txt"),
        Some("file 644 1000:1000 uid=1000(app) gid=1000"),
        "USER resolved through /etc/passwd (no group file any more)"
    );
    assert_eq!(get("tmp/pwd.txt"), Some("file 644 1000:1000 /work"));
    for stub in ["proc", "dev", "sys", "etc/hosts", "etc/resolv.conf"] {
        assert_eq!(get(stub), None, "mount point {stub} leaked into a layer");
    }
    // One layer per RUN and WORKDIR on top of busybox's one; `RUN true`
    // gives an empty layer.
    assert_eq!(built.layer_digests().len(), 1 + 5);
    assert_clean(&imgb);

    // The image's CMD under runc.
    let out = built.run_cmd();
    assert_eq!(out.trim(), "changed");
}

#[test]
fn a_rebuild_is_fully_cached_and_runs_nothing() {
    require_tool("runc");
    let imgb = Imgb::new();
    let ctx = Context::new().file(
        "Dockerfile",
        format!(
            "{}\nRUN echo side-effect-$((40+2)) && echo 1 > /one\nRUN echo second-$((40+2)) > /two\n",
            from_busybox()
        ),
    );
    let first = build(&imgb, &ctx, &[]);
    assert!(
        first
            .run
            .stderr
            .lines()
            .any(|l| l.starts_with('#') && l.ends_with(" side-effect-42")),
        "output is prefixed like plain progress:\n{}",
        first.run.stderr
    );
    let again = build(&imgb, &ctx, &[]);
    assert_eq!(
        again.run.stderr.matches("CACHED").count(),
        2,
        "{}",
        again.run.stderr
    );
    assert!(
        !again.run.stderr.contains("side-effect-42"),
        "{}",
        again.run.stderr
    );
    assert!(
        !again.run.stderr.contains("second-42"),
        "{}",
        again.run.stderr
    );
    assert_eq!(again.layer_digests(), first.layer_digests());
}

#[test]
fn a_cache_mount_persists_across_builds() {
    require_tool("runc");
    let imgb = Imgb::new();
    let ctx = Context::new().file(
        "Dockerfile",
        format!(
            "{}\nRUN --mount=type=cache,target=/var/cache/x,id=x \
             if [ -f /var/cache/x/seen ]; then echo SEEN-$((1+1)); fi; \
             touch /var/cache/x/seen; echo done > /result\n",
            from_busybox()
        ),
    );
    let first = build(&imgb, &ctx, &[]);
    assert!(!first.run.stderr.contains("SEEN-2"), "{}", first.run.stderr);
    let tree = tree(&first);
    assert_eq!(
        tree.get("result").map(String::as_str),
        Some("file 644 0:0 done")
    );
    assert!(
        !tree.contains_key("var"),
        "the cache mount point is not in the layer: {tree:#?}"
    );
    let second = build(&imgb, &ctx, &["--no-cache"]);
    second.run.stderr_has("SEEN-2");
}

/// Every blob of an OCI layout, gzip-decompressed where it is gzip.
fn blobs(layout: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).expect("blobs") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read blob");
        if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut plain)
                .expect("gunzip");
            out.push(plain);
        }
        out.push(bytes);
    }
    out
}

#[test]
fn secrets_are_mounted_but_never_stored() {
    require_tool("runc");
    let imgb = Imgb::new();
    let secret = "TOPSECRET-7f3a9c-value";
    let ctx = Context::new().file(
        "Dockerfile",
        format!(
            "{}\n\
             RUN --mount=type=secret,id=s cat /run/secrets/s > /dev/null && test \"$(wc -c < /run/secrets/s)\" = 22 && touch /ok\n\
             RUN --mount=type=secret,id=s,env=TOKEN test \"${{#TOKEN}}\" = 22 && touch /ok2\n",
            from_busybox()
        ),
    );
    let file = tempfile::NamedTempFile::new().expect("secret file");
    std::fs::write(file.path(), secret).expect("write secret");
    let src = format!("id=s,src={}", file.path().display());
    let built = build(&imgb, &ctx, &["--secret", &src]);
    let tree = tree(&built);
    assert!(
        tree.contains_key("ok") && tree.contains_key("ok2"),
        "{tree:#?}"
    );
    assert!(
        !tree.contains_key("run"),
        "the secret's mount point stays out: {tree:#?}"
    );
    for blob in blobs(&built.layout()) {
        assert!(
            !blob.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is in a blob"
        );
    }
    assert!(!built.run.stderr.contains(secret));

    // `required` without --secret fails clearly.
    let ctx = Context::new().file(
        "Dockerfile",
        format!(
            "{}\nRUN --mount=type=secret,id=s,required cat /run/secrets/s\n",
            from_busybox()
        ),
    );
    build_with(&Imgb::new(), &ctx, &[], &[])
        .run
        .exit_code(1)
        .stderr_has("secret \"s\" is required");
}

#[test]
fn a_failing_run_shows_the_step_the_exit_code_and_its_output() {
    require_tool("runc");
    let imgb = Imgb::new();
    let ctx = Context::new().file(
        "Dockerfile",
        format!("{}\nRUN echo boom; exit 3\n", from_busybox()),
    );
    // What a killed imgb left behind is cleaned up by the next RUN.
    let stale = imgb.home.path().join("runs/999999-0/snap/upper");
    std::fs::create_dir_all(&stale).expect("stale dir");
    let failed = build_with(&imgb, &ctx, &[], &[]);
    failed
        .run
        .exit_code(1)
        .stderr_has("RUN echo boom; exit 3")
        .stderr_has("exit code: 3")
        .stderr_has("boom");
    assert_clean(&imgb);
    // Nothing was committed: the same build fails again instead of hitting
    // a cache.
    let again = build_with(&imgb, &ctx, &[], &[]);
    again.run.exit_code(1).stderr_has("exit code: 3");
    assert!(!again.run.stderr.contains("CACHED"), "{}", again.run.stderr);
}

#[test]
fn overlay_and_copy_snapshotters_give_the_same_layers() {
    require_tool("runc");
    let ctx = Context::new().file(
        "Dockerfile",
        format!(
            "{}\n\
             RUN mkdir -p /srv/d/e && echo a > /srv/d/e/f && echo b > /srv/g && chmod 600 /srv/g\n\
             RUN rm -r /srv/d && echo c >> /srv/g && rm /etc/group && chown 1000:1000 /srv/g && ln -s /srv/g /srv/l\n\
             RUN touch /root/r && mkdir /tmp/t && rmdir /tmp/t\n",
            from_busybox()
        ),
    );
    let epoch = [("SOURCE_DATE_EPOCH", "1700000000")];
    let with = |snapshotter: &str| {
        let imgb = Imgb::new();
        let mut env = epoch.to_vec();
        env.push(("IMGB_SNAPSHOTTER", snapshotter));
        let b = build_with(&imgb, &ctx, &[], &env);
        b.run.success();
        assert_clean(&imgb);
        b
    };
    let overlay = with("overlay");
    let copy = with("copy");
    let (a, b) = (overlay.layer_digests(), copy.layer_digests());
    if a != b {
        for (x, y) in a.iter().zip(&b) {
            if x != y {
                for (name, built, d) in [("overlay", &overlay, x), ("copy", &copy, y)] {
                    let blob = built
                        .layout()
                        .join("blobs/sha256")
                        .join(d.trim_start_matches("sha256:"));
                    let out = run_ok(
                        Command::new("tar")
                            .arg("--full-time")
                            .arg("-tvzf")
                            .arg(&blob),
                    );
                    eprintln!("--- {name} {d}\n{out}");
                }
            }
        }
    }
    assert_eq!(a, b);
    let tree = tree(&copy);
    assert_eq!(
        tree.get("srv/g").map(String::as_str),
        Some("file 600 1000:1000 b\nc")
    );
    assert!(
        !tree.contains_key("srv/d") && !tree.contains_key("etc/group"),
        "{tree:#?}"
    );
}

#[test]
fn heredoc_scripts_with_a_shebang_run_from_dev_pipes() {
    require_tool("runc");
    let imgb = Imgb::new();
    let ctx = Context::new().file(
        "Dockerfile",
        format!(
            "{}\nRUN <<EOF\n#!/bin/sh\necho from-heredoc > /h.txt\necho \"$0\" >> /h.txt\nEOF\n",
            from_busybox()
        ),
    );
    let tree = tree(&build(&imgb, &ctx, &[]));
    assert_eq!(
        tree.get("h.txt").map(String::as_str),
        Some("file 644 0:0 from-heredoc\n/dev/pipes/EOF")
    );
    assert!(!tree.contains_key("dev"), "{tree:#?}");
}

#[test]
fn a_missing_runtime_says_how_to_install_runc() {
    let ctx = Context::new().file("Dockerfile", format!("{}\nRUN true\n", from_busybox()));
    build_with(&Imgb::new(), &ctx, &["--runtime", "/nonexistent/runc"], &[])
        .run
        .exit_code(1)
        .stderr_has("apt-get install runc");
}

#[test]
fn bind_tmpfs_and_network_none_mounts() {
    require_tool("runc");
    let imgb = Imgb::new();
    let ctx = Context::new()
        .file("data/in.txt", "from-context")
        .file(
            "Dockerfile",
            format!(
                "{}\n\
                 RUN --mount=type=bind,source=data,target=/data cat /data/in.txt > /copied && if touch /data/x; then echo rw > /ro.txt; else echo ro > /ro.txt; fi\n\
                 RUN --mount=type=bind,source=data,target=/data,rw echo scribble > /data/in.txt && cat /data/in.txt > /rw.txt\n\
                 RUN --mount=type=tmpfs,target=/scratch echo t > /scratch/t && grep -q ' /scratch tmpfs' /proc/mounts && echo ok > /tmpfs.txt\n\
                 RUN --network=none grep -c : /proc/net/dev > /net.txt\n",
                from_busybox()
            ),
        );
    let tree = tree(&build(&imgb, &ctx, &[]));
    let get = |p: &str| tree.get(p).map(String::as_str);
    assert_eq!(
        get("copied"),
        Some("file 644 0:0 from-context"),
        "{tree:#?}"
    );
    assert_eq!(
        get("ro.txt"),
        Some("file 644 0:0 ro"),
        "bind mounts are read-only by default"
    );
    assert_eq!(get("rw.txt"), Some("file 644 0:0 scribble"));
    assert_eq!(
        std::fs::read_to_string(ctx.join("data/in.txt")).expect("context file"),
        "from-context",
        "rw bind changes are discarded"
    );
    assert_eq!(get("tmpfs.txt"), Some("file 644 0:0 ok"));
    assert_eq!(get("net.txt"), Some("file 644 0:0 1"), "only loopback");
    for gone in ["data", "scratch"] {
        assert_eq!(get(gone), None, "mount point {gone} leaked: {tree:#?}");
    }
    assert_clean(&imgb);
}

/// The classic Python application (`examples/python-app`) on the Debian +
/// python3 fixture from the local registry: pip installs from a local wheel
/// directory (no network), and the image runs.
#[test]
fn python_app_example_builds_on_debian_and_runs() {
    require_tool("runc");
    let debian = world::debian();
    let registry = world::registry(Flavour::Plain);
    registry.skopeo_copy_to(
        &format!("oci:{}:latest", debian.layout.display()),
        "run/debian-python:latest",
        &[],
    );
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/python-app");
    let imgb = Imgb::new();
    let base = format!("BASE={}/run/debian-python", registry.addr);
    let built = Built::build(&imgb, &example, &["--build-arg", &base], &[]);
    built.run.success();
    assert!(
        built
            .run
            .stderr
            .contains("Successfully installed greeting-1.0"),
        "{}",
        built.run.stderr
    );
    assert_eq!(
        built.run_cmd().trim(),
        "Hello, imgb! (from the greeting wheel)"
    );
}

/// `imgb prune` removes the unpacked snapshots (derived data); the next build
/// unpacks what it needs again.
#[test]
fn prune_removes_snapshots_and_builds_still_work() {
    require_tool("runc");
    let imgb = Imgb::new();
    let ctx = Context::new().file(
        "Dockerfile",
        format!("{}\nRUN echo one > /one\n", from_busybox()),
    );
    build_with(&imgb, &ctx, &[], &[]).run.success();
    let snapshots = imgb.home.path().join("snapshots");
    assert!(
        std::fs::read_dir(&snapshots)
            .map(|d| d.count())
            .unwrap_or(0)
            > 0,
        "RUN unpacked a snapshot"
    );
    imgb.run(["prune"]).success().stdout_has("snapshots:");
    assert_eq!(
        std::fs::read_dir(&snapshots)
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
    let again = build_with(&imgb, &ctx, &["--no-cache"], &[]);
    again.run.success();
    assert_eq!(
        tree(&again).get("one").map(String::as_str),
        Some("file 644 0:0 one")
    );
}

/// Ctrl-C (SIGINT) during a long RUN: the container is killed, imgb exits
/// non-zero soon after, and no mount or temp dir is left behind.
#[test]
fn ctrl_c_during_a_run_stops_the_build_and_cleans_up() {
    require_tool("runc");
    let imgb = Imgb::new();
    let ctx = Context::new().file(
        "Dockerfile",
        format!(
            "{}\nRUN echo started-$((40+2)) && sleep 60\n",
            from_busybox()
        ),
    );
    let mut cmd = imgb.cmd();
    cmd.args(["build", "--progress=plain"])
        .arg(ctx.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn imgb");
    let stderr = child.stderr.take().expect("stderr");
    // Wait until the command runs, reading progress as it comes.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("started-42") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(std::time::Duration::from_secs(120))
        .expect("the RUN started");
    let started = std::time::Instant::now();
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("try_wait") {
            break exit;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "imgb did not stop"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(!exit.success(), "an interrupted build failed");
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
    assert_clean(&imgb);
}

/// An image of more than 100 layers (RUN and COPY steps alternating) builds
/// on the overlay snapshotter, whose lowerdir list would be far longer than
/// a page with absolute paths; every RUN sees all the layers below it, and
/// no RUN unpacks or copies a whole rootfs (only per-layer dirs exist).
#[test]
fn a_hundred_and_more_layers_mount_and_run() {
    require_tool("runc");
    let steps = 55;
    let mut dockerfile = format!("{}\nRUN mkdir /r /c\n", from_busybox());
    let mut ctx = Context::new();
    for i in 0..steps {
        ctx = ctx.file(&format!("c{i}.txt"), format!("copied {i}\n"));
        dockerfile.push_str(&format!("COPY c{i}.txt /c/\n"));
        // Each RUN reads what the COPY just below it added; every tenth
        // deletes a file an early layer added.
        let delete = if i % 10 == 9 {
            format!(" && rm /c/c{}.txt", i - 9)
        } else {
            String::new()
        };
        dockerfile.push_str(&format!("RUN cat /c/c{i}.txt > /r/{i}{delete}\n"));
    }
    dockerfile.push_str("RUN ls /r | wc -l > /count && ls /c | wc -l >> /count\n");
    dockerfile.push_str("CMD [\"cat\", \"/count\"]\n");
    let ctx = ctx.file("Dockerfile", dockerfile);
    let imgb = Imgb::new();
    let built = build_with(&imgb, &ctx, &[], &[("IMGB_SNAPSHOTTER", "overlay")]);
    built.run.success();
    assert_eq!(built.layer_digests().len(), 1 + 1 + 2 * steps + 1);
    let tree = tree(&built);
    assert_eq!(
        tree.get("r/54").map(String::as_str),
        Some("file 644 0:0 copied 54")
    );
    assert_eq!(tree.get("c/c0.txt"), None, "deleted by a later RUN");
    assert_eq!(
        tree.get("c/c1.txt").map(String::as_str),
        Some("file 644 0:0 copied 1")
    );
    let deleted = steps / 10;
    assert_eq!(
        built.run_cmd().split_whitespace().collect::<Vec<_>>(),
        [steps.to_string(), (steps - deleted).to_string()]
    );
    let snapshots = imgb.home.path().join("snapshots");
    let layers = std::fs::read_dir(snapshots.join("layers"))
        .expect("layer dirs")
        .count();
    assert!(layers > 100, "one dir per layer: {layers}");
    assert!(
        !snapshots.join("merged").exists(),
        "no RUN needed a merged rootfs"
    );
    assert_clean(&imgb);
}

/// Stages built side by side on the same base unpack its layer at the same
/// time: both use one layer dir, and nothing half-made is left.
#[test]
fn parallel_stages_share_the_base_layer_snapshot() {
    require_tool("runc");
    let from = from_busybox();
    let mut dockerfile = String::new();
    for name in ["a", "b", "c"] {
        dockerfile.push_str(&format!(
            "{from} AS {name}\nRUN echo {name} > /{name}\nUSER app\nRUN id -u > /tmp/{name}-uid\n"
        ));
    }
    dockerfile.push_str(&format!(
        "{from}\nCOPY --from=a /a /tmp/a-uid /\nCOPY --from=b /b /tmp/b-uid /\nCOPY --from=c /c /\n"
    ));
    let ctx = Context::new().file("Dockerfile", dockerfile);
    let imgb = Imgb::new();
    let built = build(&imgb, &ctx, &["--jobs", "3"]);
    let tree = tree(&built);
    for name in ["a", "b", "c"] {
        assert_eq!(
            tree.get(name).map(String::as_str),
            Some(format!("file 644 0:0 {name}").as_str()),
            "{tree:#?}"
        );
    }
    assert_eq!(
        tree.get("a-uid").map(String::as_str),
        Some("file 644 1000:1000 1000"),
        "USER read /etc/passwd from the layer dirs"
    );
    let layers = imgb.home.path().join("snapshots/layers");
    let names: Vec<String> = std::fs::read_dir(&layers)
        .expect("layer dirs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".tmp")),
        "temp dirs left: {names:?}"
    );
    // The base, and two RUN layers per stage.
    assert_eq!(names.len(), 1 + 3 * 2, "{names:?}");
    assert_clean(&imgb);
}
