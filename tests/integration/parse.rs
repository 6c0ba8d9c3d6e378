//! `imgb parse`: the real binary on a Dockerfile on disk, in both output
//! formats, and a bad Dockerfile rendered for a person.

use crate::harness::{Context, Imgb};

const DOCKERFILE: &str = "\
# syntax=docker/dockerfile:1
ARG BASE=alpine:3.20
FROM ${BASE} AS build
RUN --mount=type=cache,target=/root/.cache \\
    make all
COPY --from=build --chmod=755 /out/app /bin/app
ENV A=1 B=\"two words\"
RUN <<EOF
echo hi
EOF
ONBUILD RUN [\"echo\", \"x\"]
CMD [\"app\"]
";

#[test]
fn dump_prints_buildkit_result_format() {
    let ctx = Context::new().file("Dockerfile", DOCKERFILE);
    let run = Imgb::new().run(["parse", "-f", &ctx.join("Dockerfile").to_string_lossy()]);
    run.success();
    assert_eq!(
        run.stdout,
        "(arg \"BASE=alpine:3.20\")\n\
         (from \"${BASE}\" \"AS\" \"build\")\n\
         (run [\"--mount=type=cache,target=/root/.cache\"] \"make all\")\n\
         (copy [\"--from=build\" \"--chmod=755\"] \"/out/app\" \"/bin/app\")\n\
         (env \"A\" \"1\" \"B\" \"\\\"two words\\\"\")\n\
         (run \"<<EOF\")\n\
         (onbuild (run \"echo\" \"x\"))\n\
         (cmd \"app\")\n"
    );
}

#[test]
fn json_has_stages_spans_flags_and_heredocs() {
    let ctx = Context::new().file("Dockerfile", DOCKERFILE);
    let run = Imgb::new().run([
        "parse",
        "--format",
        "json",
        "-f",
        &ctx.join("Dockerfile").to_string_lossy(),
    ]);
    run.success();
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("stdout is JSON");
    assert_eq!(v["directives"]["syntax"], "docker/dockerfile:1");
    assert_eq!(v["directives"]["escape"], "\\");
    assert_eq!(v["global_args"][0]["arguments"][0], "BASE=alpine:3.20");
    let stage = &v["stages"][0];
    assert_eq!(stage["name"], "build");
    assert_eq!(stage["base"], "${BASE}");
    let insts = stage["instructions"].as_array().expect("instructions");
    assert_eq!(insts.len(), 7);
    let run_mount = &insts[1];
    assert_eq!(run_mount["keyword"], "run");
    assert_eq!(run_mount["span"]["start_line"], 4);
    assert_eq!(run_mount["span"]["end_line"], 5);
    assert_eq!(
        run_mount["flags"][0],
        "--mount=type=cache,target=/root/.cache"
    );
    let heredoc = &insts[4];
    assert_eq!(heredoc["span"]["start_line"], 8);
    assert_eq!(heredoc["span"]["end_line"], 10);
    assert_eq!(heredoc["heredocs"][0]["name"], "EOF");
    assert_eq!(heredoc["heredocs"][0]["content"], "echo hi\n");
    assert_eq!(insts[5]["trigger"]["arguments"][1], "x");
    assert_eq!(v["warnings"].as_array().map(Vec::len), Some(0));
}

#[test]
fn stdin_and_warnings_go_to_the_right_streams() {
    let mut cmd = Imgb::new().cmd();
    cmd.args(["parse", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("spawn imgb");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(b"FROM alpine\nENV LEGACY value with spaces\n")
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("wait");
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "(from \"alpine\")\n(env \"LEGACY\" \"value with spaces\")\n"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: <stdin>:2: \"ENV key=value\" should be used"),
        "{stderr}"
    );
}

#[test]
fn errors_name_the_file_and_line_show_the_snippet_and_a_hint() {
    let ctx = Context::new().file(
        "Dockerfile",
        "FROM alpine\nRUN echo one\nCOPY --chmode=755 \\\n  a b\n",
    );
    let path = ctx.join("Dockerfile").to_string_lossy().into_owned();
    let run = Imgb::new().run(["parse", "-f", &path]);
    run.exit_code(1);
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        format!(
            "error: {path}:3: unknown flag: --chmode (for COPY)\n \
             3 | COPY --chmode=755 \\\n \
             4 |   a b\n\
             hint: did you mean --chmod?\n"
        )
    );
}

#[test]
fn unknown_instruction_missing_file_and_bad_format() {
    let ctx = Context::new().file("Dockerfile", "FROM alpine\nWORKDIR /app\nCOPPY . .\n");
    let path = ctx.join("Dockerfile").to_string_lossy().into_owned();
    Imgb::new()
        .run(["parse", "-f", &path])
        .exit_code(1)
        .stderr_has(":3: unknown instruction: COPPY")
        .stderr_has(" 3 | COPPY . .")
        .stderr_has("hint: did you mean COPY?");
    Imgb::new()
        .run(["parse", "-f", &ctx.join("nope").to_string_lossy()])
        .exit_code(1)
        .stderr_has("cannot read Dockerfile");
    Imgb::new()
        .run(["parse", "--format", "yaml", "-f", &path])
        .exit_code(2)
        .stderr_has("unknown --format");
}
