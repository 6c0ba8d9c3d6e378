//! Benchmark: parsing a generated 10,000-line Dockerfile (stages, long
//! continued RUN lines, heredocs, JSON forms, flags and mounts). Run with
//! `cargo bench --bench parse`; the target is well under 50 ms per parse.

use std::time::{Duration, Instant};

use imgb::dockerfile;

/// A Dockerfile of at least `lines` lines in the styles real projects use.
fn generate(lines: usize) -> String {
    let mut out = String::from("# syntax=docker/dockerfile:1\nARG BASE=debian:bookworm-slim\n");
    let mut stage = 0;
    while out.matches('\n').count() < lines {
        out.push_str(&format!(
            "\nFROM --platform=$BUILDPLATFORM ${{BASE}} AS stage{stage}\n\
             ENV APP_HOME=/srv/app{stage} PATH=/srv/app{stage}/bin:$PATH LANG=C.UTF-8\n\
             LABEL org.opencontainers.image.title=\"stage {stage}\" version=1.{stage}\n\
             WORKDIR $APP_HOME\n\
             RUN set -eux; \\\n\
             \tapt-get update; \\\n\
             \tapt-get install -y --no-install-recommends \\\n\
             \t\tca-certificates curl git; \\\n\
             # a comment inside the continuation\n\
             \trm -rf /var/lib/apt/lists/*\n\
             RUN --mount=type=cache,target=/root/.cache,sharing=locked \\\n\
             \t--mount=type=bind,source=.,target=/src \\\n\
             \tmake -C /src build OUT=/out/{stage}\n\
             COPY --from=stage0 --chown=1000:1000 --link /out/ /usr/local/bin/\n\
             COPY <<EOF /etc/app{stage}.conf\n\
             name=app{stage}\n\
             home=${{APP_HOME}}\n\
             EOF\n\
             RUN <<-'SCRIPT'\n\
             \techo building {stage}\n\
             \ttest -d /out\n\
             \tSCRIPT\n\
             HEALTHCHECK --interval=30s --timeout=3s CMD [\"curl\", \"-f\", \"http://localhost/\"]\n\
             EXPOSE 8080/tcp 9090\n\
             USER app:app\n\
             ENTRYPOINT [\"/usr/local/bin/app\", \"--config\", \"/etc/app{stage}.conf\"]\n\
             CMD [\"--verbose\"]\n"
        ));
        stage += 1;
    }
    out
}

fn main() {
    let text = generate(10_000);
    let line_count = text.lines().count();
    // Warm up, and make sure the input is valid.
    let df = match dockerfile::parse(&text) {
        Ok(df) => df,
        Err(e) => {
            eprintln!("generated Dockerfile does not parse: {e}");
            std::process::exit(1);
        }
    };
    let mut times: Vec<Duration> = (0..50)
        .map(|_| {
            let start = Instant::now();
            let parsed = dockerfile::parse(&text);
            let elapsed = start.elapsed();
            assert!(parsed.is_ok());
            elapsed
        })
        .collect();
    times.sort();
    let median = times[times.len() / 2];
    let best = times[0];
    // The best of 50 runs is the figure to compare with the 50 ms target:
    // on a shared machine the median mostly measures the other processes.
    println!(
        "parse: {line_count} lines, {} instructions: best {:.2} ms, median {:.2} ms of 50 runs (target < 50 ms)",
        df.instructions.len(),
        best.as_secs_f64() * 1e3,
        median.as_secs_f64() * 1e3
    );
    let dump_start = Instant::now();
    let dumped = dockerfile::dump(&df);
    println!(
        "dump: {} bytes in {:.2} ms",
        dumped.len(),
        dump_start.elapsed().as_secs_f64() * 1e3
    );
}
