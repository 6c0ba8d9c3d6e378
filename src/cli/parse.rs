//! `imgb parse`: parse a Dockerfile and print it in BuildKit's dump format
//! or as JSON; render parse errors with file, line, snippet and hint.

use std::io::{Read, Write};

use anyhow::anyhow;

use crate::cli::args::ParseArgs;
use crate::cli::Failure;
use crate::dockerfile::{self, ParseError};

/// Renders a parse error for a person: `FILE:LINE: message`, the offending
/// lines with their numbers, and the hint.
pub fn render_error(file: &str, text: &str, err: &ParseError) -> String {
    let mut out = format!("{file}:{}: {}", err.line, err.message());
    let lines: Vec<&str> = text.lines().collect();
    // Show at most 5 lines of a long instruction.
    let last = err.end_line.min(err.line + 4);
    let width = last.to_string().len();
    for n in err.line..=last {
        if let Some(line) = lines.get(n.wrapping_sub(1)) {
            let line = line.strip_prefix('\u{feff}').unwrap_or(line);
            out.push_str(&format!("\n {n:>width$} | {line}"));
        }
    }
    if let Some(hint) = &err.hint {
        out.push_str(&format!("\nhint: {hint}"));
    }
    out
}

fn read(file: &str) -> Result<String, Failure> {
    let mut bytes = Vec::new();
    let read = if file == "-" {
        std::io::stdin().read_to_end(&mut bytes).map(|_| ())
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| ()))
    };
    read.map_err(|e| Failure::User(anyhow!("cannot read Dockerfile {file}: {e}")))?;
    String::from_utf8(bytes)
        .map_err(|e| Failure::User(anyhow!("{file}: the Dockerfile is not valid UTF-8 ({e})")))
}

/// Runs `imgb parse`.
pub fn run(args: &ParseArgs) -> Result<(), Failure> {
    let format = args.format.as_str();
    if format != "dump" && format != "json" {
        return Err(Failure::Usage(anyhow!(
            "unknown --format {format:?}: use dump or json"
        )));
    }
    let name = if args.file == "-" {
        "<stdin>"
    } else {
        &args.file
    };
    let text = read(&args.file)?;
    let parsed = dockerfile::parse(&text)
        .map_err(|e| Failure::User(anyhow!("{}", render_error(name, &text, &e))))?;
    for w in &parsed.warnings {
        eprintln!("warning: {name}:{}: {}", w.line, w.message);
    }
    let output = if format == "json" {
        let value = dockerfile::to_json(&parsed);
        let mut text = serde_json::to_string_pretty(&value)
            .map_err(|e| Failure::Usage(anyhow!("cannot encode JSON: {e}")))?;
        text.push('\n');
        text
    } else {
        dockerfile::dump(&parsed)
    };
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`imgb parse | head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::Usage(anyhow!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_shows_file_line_snippet_and_hint() {
        let text = "FROM alpine\nRUNN echo hi\n";
        let err = dockerfile::parse(text).expect_err("bad instruction");
        let shown = render_error("Dockerfile", text, &err);
        assert_eq!(
            shown,
            "Dockerfile:2: unknown instruction: RUNN\n 2 | RUNN echo hi\nhint: did you mean RUN?"
        );
    }
}
