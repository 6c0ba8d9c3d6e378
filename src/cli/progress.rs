//! Progress output on stderr: `plain` lines in BuildKit's style, readable in
//! CI logs (`#N [stage 1/3] COPY . .`, then `#N CACHED` or `#N DONE 0.1s`),
//! or nothing (`quiet`).

use std::io::Write;
use std::sync::Mutex;

use crate::engine::{Event, Reporter, StepStatus};

/// Which progress output to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Plain,
    Quiet,
}

impl ProgressMode {
    /// `--progress` (or `IMGB_PROGRESS`/`BUILDKIT_PROGRESS`); `auto` and
    /// `tty` print plain lines for now.
    pub fn parse(value: Option<&str>, quiet: bool) -> Result<ProgressMode, String> {
        if quiet {
            return Ok(ProgressMode::Quiet);
        }
        match value.unwrap_or("auto") {
            "auto" | "tty" | "plain" => Ok(ProgressMode::Plain),
            "quiet" => Ok(ProgressMode::Quiet),
            other => Err(format!(
                "unknown --progress {other:?}: use auto, tty, plain or quiet"
            )),
        }
    }
}

/// Prints events to stderr.
pub struct Printer {
    mode: ProgressMode,
    state: Mutex<PrinterState>,
}

#[derive(Default)]
struct PrinterState {
    counter: usize,
    current: Option<usize>,
}

impl Printer {
    pub fn new(mode: ProgressMode) -> Self {
        Printer {
            mode,
            state: Mutex::new(PrinterState::default()),
        }
    }

    /// A message line (`#N` numbering is for steps only).
    pub fn line(&self, text: &str) {
        if self.mode == ProgressMode::Quiet {
            return;
        }
        let _ = writeln!(std::io::stderr().lock(), "{text}");
    }
}

impl Reporter for Printer {
    fn report(&self, event: Event<'_>) {
        if self.mode == ProgressMode::Quiet {
            if let Event::Message(text) = event {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut err = std::io::stderr().lock();
        match event {
            Event::Message(text) => {
                let _ = writeln!(err, "{text}");
            }
            // BuildKit's plain progress: the step's number before each line.
            Event::Output(line) => {
                let _ = writeln!(err, "#{} {line}", state.current.unwrap_or(state.counter));
            }
            Event::Step {
                stage,
                index,
                total,
                text,
                status,
            } => match status {
                StepStatus::Running => {
                    state.counter += 1;
                    state.current = Some(state.counter);
                    let _ = writeln!(err, "#{} [{stage} {index}/{total}] {text}", state.counter);
                }
                StepStatus::Cached => {
                    let _ = writeln!(err, "#{} CACHED", state.current.unwrap_or(state.counter));
                }
                StepStatus::Done { seconds } => {
                    let _ = writeln!(
                        err,
                        "#{} DONE {seconds:.1}s",
                        state.current.unwrap_or(state.counter)
                    );
                }
            },
        }
    }
}
