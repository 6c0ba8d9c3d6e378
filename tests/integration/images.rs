//! `imgb images`, `imgb inspect` (store and OCI layout, `--format`),
//! `imgb prune --filter`, and shell completions, driven as a user would.

use std::process::Command;

use crate::harness::{Context, Imgb};
use crate::world::require_tool;

fn labelled() -> Context {
    Context::new()
        .file(
            "Dockerfile",
            "FROM scratch\nCOPY a.txt /a.txt\nLABEL version=1.2\nCMD [\"/app\", \"--serve\"]\n",
        )
        .file("a.txt", "a\n")
}

#[test]
fn images_lists_tags_ids_sizes_and_ages() {
    let imgb = Imgb::new();
    let ctx = labelled();
    let built = imgb.run([
        "build",
        "-q",
        "-t",
        "app:1",
        "-t",
        "127.0.0.1:5000/team/app:2",
        ctx.path().to_str().unwrap(),
    ]);
    built.success();
    let id = built.stdout.trim().to_string();
    let short = &id["sha256:".len().."sha256:".len() + 12];

    let run = imgb.run(["images"]);
    run.success();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("REPOSITORY") && lines[0].contains("IMAGE ID"));
    let row = |repo: &str| {
        lines
            .iter()
            .find(|l| l.split_whitespace().next() == Some(repo))
            .unwrap_or_else(|| panic!("no row for {repo}:\n{}", run.stdout))
            .to_string()
    };
    for (repo, tag) in [("app", "1"), ("127.0.0.1:5000/team/app", "2")] {
        let cols: Vec<String> = row(repo).split_whitespace().map(String::from).collect();
        assert_eq!(cols[1], tag);
        assert_eq!(cols[2], short);
        assert!(row(repo).contains("ago"), "{}", run.stdout);
        assert!(cols.last().unwrap().ends_with('B'), "{}", run.stdout);
    }

    let quiet = imgb.run(["images", "-q"]);
    assert_eq!(quiet.stdout, format!("{short}\n{short}\n"));
    let json = imgb.run(["images", "--format", "json"]);
    for line in json.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["ID"], id.as_str());
        assert!(v["Digest"].as_str().unwrap().starts_with("sha256:"));
    }
    imgb.run(["images", "--format", "yaml"]).exit_code(2);
}

#[test]
fn inspect_store_and_layout_with_format() {
    let imgb = Imgb::new();
    let ctx = labelled();
    let out = tempfile::tempdir().unwrap();
    let layout = out.path().join("layout");
    let built = imgb.run([
        "build".as_ref(),
        "-q".as_ref(),
        "-t".as_ref(),
        "app:1".as_ref(),
        "-o".as_ref(),
        format!("type=oci,dest={},tar=false", layout.display()).as_ref(),
        ctx.path().as_os_str(),
    ]);
    built.success();
    let id = built.stdout.trim();

    let run = imgb.run(["inspect", "app:1"]);
    run.success();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let image = &v[0];
    assert_eq!(image["Id"], id);
    assert_eq!(image["RepoTags"][0], "docker.io/library/app:1");
    assert_eq!(image["Config"]["Labels"]["version"], "1.2");
    assert_eq!(image["Manifest"]["config"]["digest"], id);

    let fmt = |reference: &str, template: &str| {
        let run = imgb.run(["inspect", "--format", template, reference]);
        run.success();
        run.stdout
    };
    assert_eq!(fmt("app:1", "{{.Config.Cmd}}"), "[/app --serve]\n");
    assert_eq!(
        fmt("app:1", "{{json .Config.Cmd}}"),
        "[\"/app\",\"--serve\"]\n"
    );
    assert_eq!(
        fmt("app:1", "{{index .Config.Labels \"version\"}}"),
        "1.2\n"
    );
    // By image id prefix, as Docker allows.
    assert_eq!(fmt(&id[7..19], "{{.Id}}"), format!("{id}\n"));

    // An OCI layout: the same image, and skopeo agrees on the manifest.
    assert!(
        layout.join("index.json").is_file(),
        "the layout was written"
    );
    assert_eq!(
        fmt(&format!("oci:{}", layout.display()), "{{.Id}}"),
        format!("{id}\n")
    );
    let skopeo = Command::new(require_tool("skopeo"))
        .args(["inspect", "--config", "--raw"])
        .arg(format!("oci:{}", layout.display()))
        .output()
        .unwrap();
    let config: serde_json::Value = serde_json::from_slice(&skopeo.stdout).unwrap();
    assert_eq!(
        fmt(&format!("oci:{}", layout.display()), "{{json .Config}}").trim(),
        config["config"].to_string()
    );

    imgb.run(["inspect", "nope:1"])
        .exit_code(1)
        .stderr_has("no such image")
        .stderr_has("hint:");
    imgb.run(["inspect", "--format", "{{range .Config}}", "app:1"])
        .exit_code(2)
        .stderr_has("cannot understand");
}

#[test]
fn prune_filter_until_keeps_recent_images() {
    let imgb = Imgb::new();
    let ctx = labelled();
    imgb.run(["build", "-q", "-t", "new:1", ctx.path().to_str().unwrap()])
        .success();
    // SOURCE_DATE_EPOCH dates the image (config `created`) in 2001.
    let ctx = ctx.file("a.txt", "older\n");
    let mut old = imgb.cmd();
    old.env("SOURCE_DATE_EPOCH", "1000000000")
        .args(["build", "-q", "-t", "old:1"])
        .arg(ctx.path());
    crate::harness::Run::of(old).success();
    assert_eq!(imgb.run(["images", "-q"]).stdout.lines().count(), 2);

    let run = imgb.run(["prune", "--all", "--filter", "until=24h"]);
    run.success()
        .stdout_has("untagged: docker.io/library/old:1");
    assert!(!run.stdout.contains("new:1"), "{}", run.stdout);
    let left = imgb.run(["images"]);
    assert!(left.stdout.contains("new ") && !left.stdout.contains("old "));
    imgb.run(["prune", "--filter", "label=x"])
        .exit_code(2)
        .stderr_has("only until=DURATION");
    imgb.run(["prune", "--filter", "until=3d"])
        .exit_code(2)
        .stderr_has("invalid duration");
}

#[test]
fn completions_for_bash_zsh_and_fish() {
    let imgb = Imgb::new();
    imgb.run(["completions", "bash"])
        .success()
        .stdout_has("complete -F _imgb")
        .stdout_has("--progress");
    imgb.run(["completions", "zsh"])
        .success()
        .stdout_has("#compdef imgb");
    imgb.run(["completions", "fish"])
        .success()
        .stdout_has("complete -c imgb");
    imgb.run(["completions", "tcsh"]).exit_code(2);
}
