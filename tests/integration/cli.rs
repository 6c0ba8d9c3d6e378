//! The command line as a user first meets it: `--version`, `--help` with
//! examples, usage errors, and subcommands that are not there yet.

use crate::harness::Imgb;

#[test]
fn version_prints_the_crate_version() {
    let run = Imgb::new().run(["--version"]);
    run.success()
        .stdout_has(&format!("imgb {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn help_lists_every_command_with_examples() {
    let run = Imgb::new().run(["--help"]);
    run.success();
    for command in [
        "build",
        "parse",
        "pull",
        "push",
        "login",
        "logout",
        "images",
        "inspect",
        "prune",
        "du",
        "completions",
    ] {
        assert!(
            run.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(command)),
            "--help lacks {command}:\n{}",
            run.stdout
        );
    }
    run.stdout_has("Examples:");
    for command in [
        "build",
        "parse",
        "pull",
        "push",
        "login",
        "logout",
        "images",
        "inspect",
        "prune",
        "du",
        "completions",
    ] {
        Imgb::new()
            .run([command, "--help"])
            .success()
            .stdout_has("Examples:");
    }
}

#[test]
fn unknown_flags_are_usage_errors() {
    Imgb::new()
        .run(["build", "--no-such-flag"])
        .exit_code(2)
        .stderr_has("--no-such-flag");
}

#[test]
fn bad_tags_and_outputs_are_refused_before_building() {
    let ctx = crate::harness::Context::new()
        .file("Dockerfile", "FROM scratch\nCOPY a /a\n")
        .file("a", "a");
    let dir = ctx.path().to_str().unwrap();
    for (args, message) in [
        (vec!["-t", "Bad Name"], "invalid tag"),
        (vec!["-o", "type=bogus"], "unknown type"),
        (vec!["--push"], "--push needs a name"),
    ] {
        let mut all = vec!["build", "--progress=plain"];
        all.extend(args);
        all.push(dir);
        let run = Imgb::new().run(all);
        run.exit_code(2).stderr_has(message);
        assert!(
            !run.stderr.contains("#1 "),
            "built before refusing:\n{}",
            run.stderr
        );
    }
}
