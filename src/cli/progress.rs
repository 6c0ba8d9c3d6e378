//! Progress output on stderr, in one of four shapes:
//!
//! * `plain`: BuildKit-style lines readable in CI logs
//!   (`#N [stage 1/3] COPY . .`, then `#N CACHED` or `#N DONE 0.1s`);
//! * `tty`: a live view (indicatif), one line per step with a spinner and
//!   its running time, ending with a `FINISHED` line and a summary;
//! * `rawjson`: one JSON object per line for tools (schema in the README,
//!   "Progress output");
//! * `quiet`: nothing but warnings.
//!
//! Steps are keyed by (stage, index) rather than "the current one", so the
//! output stays right if the engine ever runs stages side by side.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::digest::Sha256Digest;
use crate::engine::{Event, Reporter, StepStatus};

/// Which progress output to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    Tty,
    Plain,
    RawJson,
    Quiet,
}

impl ProgressMode {
    /// Picks the mode: `-q` wins, then `--progress` (which clap fills from
    /// `IMGB_PROGRESS`), then `BUILDKIT_PROGRESS`, then `auto`. `auto` is
    /// `tty` when stderr is a terminal and `plain` otherwise, as in buildx.
    pub fn resolve(
        flag: Option<&str>,
        buildkit_env: Option<&str>,
        quiet: bool,
        stderr_is_terminal: bool,
    ) -> Result<ProgressMode, String> {
        if quiet {
            return Ok(ProgressMode::Quiet);
        }
        let value = [flag, buildkit_env]
            .into_iter()
            .flatten()
            .find(|v| !v.is_empty())
            .unwrap_or("auto");
        match value {
            "auto" if stderr_is_terminal => Ok(ProgressMode::Tty),
            "auto" | "plain" => Ok(ProgressMode::Plain),
            "tty" => Ok(ProgressMode::Tty),
            "rawjson" => Ok(ProgressMode::RawJson),
            "quiet" | "none" => Ok(ProgressMode::Quiet),
            other => Err(format!(
                "unknown --progress {other:?}: use auto, tty, plain, rawjson or quiet"
            )),
        }
    }

    /// [`ProgressMode::resolve`] with this process's environment and stderr.
    pub fn from_env(flag: Option<&str>, quiet: bool) -> Result<ProgressMode, String> {
        let buildkit = std::env::var("BUILDKIT_PROGRESS").ok();
        Self::resolve(
            flag,
            buildkit.as_deref(),
            quiet,
            std::io::stderr().is_terminal(),
        )
    }
}

/// Whether colour may be used: never when `NO_COLOR` is set to anything
/// non-empty (no-color.org), and only on a terminal.
pub fn colour_allowed() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()) && std::io::stderr().is_terminal()
}

/// The end of a successful build, for the last progress line.
pub struct Summary<'a> {
    pub image: &'a Sha256Digest,
    pub manifest: &'a Sha256Digest,
    pub cached: usize,
    pub executed: usize,
}

/// Prints events to stderr in the chosen mode. Dropping it before
/// [`Printer::summary`] marks the unfinished steps as failed.
pub struct Printer {
    mode: ProgressMode,
    colour: bool,
    started: Instant,
    state: Mutex<PrinterState>,
}

#[derive(Default)]
struct PrinterState {
    counter: usize,
    finished: usize,
    ids: HashMap<(String, usize), usize>,
    /// Steps started and not finished: when the build ends early, the
    /// step that failed.
    running: std::collections::BTreeMap<usize, String>,
    live: Option<LiveView>,
}

/// The `tty` view: a header line and one bar per step.
struct LiveView {
    multi: MultiProgress,
    header: ProgressBar,
    bars: HashMap<usize, (ProgressBar, String)>,
    /// Finished step lines, reprinted as plain text when the view closes.
    lines: Vec<String>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl LiveView {
    fn new(colour: bool) -> LiveView {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(style(if colour {
            "{spinner:.cyan} [+] Building {elapsed} {msg}"
        } else {
            "{spinner} [+] Building {elapsed} {msg}"
        }));
        header.enable_steady_tick(Duration::from_millis(100));
        LiveView {
            multi,
            header,
            bars: HashMap::new(),
            lines: Vec::new(),
        }
    }

    /// Removes the live area and prints its final state as ordinary lines,
    /// so the terminal ends with a clean, scrollable record.
    fn close(self, header: String, unfinished: impl Fn(&str) -> String) {
        let mut failed = Vec::new();
        for (bar, label) in self.bars.into_values() {
            bar.finish_and_clear();
            failed.push(unfinished(&label));
        }
        self.header.finish_and_clear();
        let _ = self.multi.clear();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{header}");
        for line in self.lines.iter().chain(&failed) {
            let _ = writeln!(err, "{line}");
        }
    }
}

impl Printer {
    pub fn new(mode: ProgressMode, colour: bool) -> Self {
        let live = (mode == ProgressMode::Tty).then(|| LiveView::new(colour));
        Printer {
            mode,
            colour: colour && mode == ProgressMode::Tty,
            started: Instant::now(),
            state: Mutex::new(PrinterState {
                live,
                ..PrinterState::default()
            }),
        }
    }

    /// A message line (`#N` numbering is for steps only); shown in every
    /// mode but `quiet`.
    pub fn line(&self, text: &str) {
        if self.mode != ProgressMode::Quiet {
            self.message(text);
        }
    }

    /// A warning: shown in every mode, `quiet` included.
    pub fn warning(&self, text: &str) {
        self.message(&format!("warning: {text}"));
    }

    fn message(&self, text: &str) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match (self.mode, &state.live) {
            (ProgressMode::RawJson, _) => {
                emit_json(&serde_json::json!({"type": "message", "text": text}));
            }
            (_, Some(live)) => {
                if live.multi.println(text).is_err() {
                    eprintln!("{text}");
                }
            }
            _ => eprintln!("{text}"),
        }
    }

    /// A line a RUN step printed, under the step's number (BuildKit's plain
    /// format `#N line`); a `{"type":"output"}` event in rawjson.
    fn output(&self, stage: &str, index: usize, line: &str) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Stages run side by side: the line belongs to its own step's id.
        let id = state
            .ids
            .get(&(stage.to_string(), index))
            .copied()
            .unwrap_or(state.counter);
        match (self.mode, &state.live) {
            (ProgressMode::Quiet, _) => {}
            (ProgressMode::RawJson, _) => {
                emit_json(&serde_json::json!({"type": "output", "id": id, "line": line}));
            }
            (_, Some(live)) => {
                if live.multi.println(format!("#{id} {line}")).is_err() {
                    eprintln!("#{id} {line}");
                }
            }
            _ => eprintln!("#{id} {line}"),
        }
    }

    /// The last progress line of a successful build.
    pub fn summary(&self, summary: &Summary<'_>) {
        let line = format!(
            "built {} ({} steps cached, {} run) manifest {}",
            summary.image, summary.cached, summary.executed, summary.manifest
        );
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Plain => eprintln!("{line}"),
            ProgressMode::RawJson => emit_json(&serde_json::json!({
                "type": "summary",
                "image": summary.image.to_string(),
                "manifest": summary.manifest.to_string(),
                "cached": summary.cached,
                "executed": summary.executed,
                "seconds": self.started.elapsed().as_secs_f64(),
            })),
            ProgressMode::Tty => {
                let steps = state.counter;
                if let Some(live) = state.live.take() {
                    let header = format!(
                        "[+] Building {:.1}s ({steps}/{steps}) FINISHED",
                        self.started.elapsed().as_secs_f64()
                    );
                    live.close(header, |label| format!(" => {label}"));
                }
                let line = if self.colour {
                    format!("\x1b[1m{line}\x1b[0m")
                } else {
                    line
                };
                eprintln!("{line}");
            }
        }
    }

    /// A registry transfer: blobs pulled for base images and pushed with
    /// `--push`, with their sizes, and retries.
    pub fn transfer(&self, event: &crate::registry::Event) {
        use crate::registry::Event as T;
        if self.mode == ProgressMode::RawJson {
            let value = match event {
                T::Fetched { digest, size } => {
                    serde_json::json!({"type": "transfer", "event": "fetched", "digest": digest.to_string(), "size": size})
                }
                T::Uploaded { digest, size } => {
                    serde_json::json!({"type": "transfer", "event": "uploaded", "digest": digest.to_string(), "size": size})
                }
                T::AlreadyPresent { digest } => {
                    serde_json::json!({"type": "transfer", "event": "present", "digest": digest.to_string()})
                }
                T::Mounted { digest, from } => {
                    serde_json::json!({"type": "transfer", "event": "mounted", "digest": digest.to_string(), "from": from})
                }
                T::ManifestPut { target } => {
                    serde_json::json!({"type": "transfer", "event": "manifest", "target": target})
                }
                T::Retrying { .. } => {
                    serde_json::json!({"type": "transfer", "event": "retrying", "text": event_text(event)})
                }
            };
            emit_json(&value);
        } else {
            self.line(&event_text(event));
        }
    }

    fn step(&self, stage: &str, index: usize, total: usize, text: &str, status: StepStatus) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let key = (stage.to_string(), index);
        let id = match (status, state.ids.get(&key)) {
            (StepStatus::Running, _) | (_, None) => {
                state.counter += 1;
                let id = state.counter;
                state.ids.insert(key, id);
                id
            }
            (_, Some(id)) => *id,
        };
        let label = format!("[{stage} {index}/{total}] {text}");
        if status == StepStatus::Running {
            state.running.insert(id, label.clone());
        } else {
            state.finished += 1;
            state.running.remove(&id);
        }
        match self.mode {
            ProgressMode::Quiet => {}
            ProgressMode::Plain => {
                let mut err = std::io::stderr().lock();
                let _ = match status {
                    StepStatus::Running => writeln!(err, "#{id} {label}"),
                    StepStatus::Cached => writeln!(err, "#{id} CACHED"),
                    StepStatus::Done { seconds } => writeln!(err, "#{id} DONE {seconds:.1}s"),
                };
            }
            ProgressMode::RawJson => {
                let mut event = serde_json::json!({
                    "type": "step",
                    "id": id,
                    "stage": stage,
                    "index": index,
                    "total": total,
                    "name": text,
                    "status": match status {
                        StepStatus::Running => "running",
                        StepStatus::Cached => "cached",
                        StepStatus::Done { .. } => "done",
                    },
                });
                if let StepStatus::Done { seconds } = status {
                    event["seconds"] = serde_json::json!(seconds);
                }
                emit_json(&event);
            }
            ProgressMode::Tty => {
                let (finished, counter, colour) = (state.finished, state.counter, self.colour);
                if let Some(live) = state.live.as_mut() {
                    live.header.set_message(format!("({finished}/{counter})"));
                    live.tty_step(id, &label, status, colour);
                }
            }
        }
    }
}

impl LiveView {
    fn tty_step(&mut self, id: usize, label: &str, status: StepStatus, colour: bool) {
        let paint = |code: &str, text: &str| {
            if colour {
                format!("\x1b[{code}m{text}\x1b[0m")
            } else {
                text.to_string()
            }
        };
        match status {
            StepStatus::Running => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(style(" {spinner} => {msg} {elapsed}"));
                bar.set_message(label.to_string());
                bar.enable_steady_tick(Duration::from_millis(100));
                self.bars.insert(id, (bar, label.to_string()));
            }
            StepStatus::Cached | StepStatus::Done { .. } => {
                let (bar, label) = self
                    .bars
                    .remove(&id)
                    .unwrap_or_else(|| (self.multi.add(ProgressBar::new_spinner()), label.into()));
                bar.set_style(style("{msg}"));
                let line = match status {
                    StepStatus::Done { seconds } => {
                        paint("34", &format!(" => {label} {seconds:.1}s"))
                    }
                    _ => paint("36", &format!(" => CACHED {label}")),
                };
                bar.finish_with_message(line.clone());
                self.lines.push(line);
            }
        }
    }
}

impl Drop for Printer {
    /// A bar still running when the build ends is the step that failed:
    /// leave it marked, so the live view does not end on a spinner.
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for id in state.running.keys() {
            match self.mode {
                ProgressMode::Plain => eprintln!("#{id} ERROR"),
                ProgressMode::RawJson => emit_json(&serde_json::json!({
                    "type": "step", "id": id, "status": "error",
                })),
                ProgressMode::Tty | ProgressMode::Quiet => {}
            }
        }
        if let Some(live) = state.live.take() {
            let colour = self.colour;
            let header = format!(
                "[+] Building {:.1}s FAILED",
                self.started.elapsed().as_secs_f64()
            );
            live.close(header, |label| {
                let line = format!(" => ERROR {label}");
                if colour {
                    format!("\x1b[31m{line}\x1b[0m")
                } else {
                    line
                }
            });
        }
    }
}

fn event_text(event: &crate::registry::Event) -> String {
    use crate::registry::Event as T;
    let short = |d: &Sha256Digest| d.hex()[..12].to_string();
    let size = |n: &u64| super::store::human_size(*n);
    match event {
        T::Fetched { digest, size: n } => format!("pulled {} ({})", short(digest), size(n)),
        T::Uploaded { digest, size: n } => format!("pushed {} ({})", short(digest), size(n)),
        T::AlreadyPresent { digest } => format!("{}: already there", short(digest)),
        T::Mounted { digest, from } => format!("{}: mounted from {from}", short(digest)),
        T::ManifestPut { target } => format!("manifest put as {target}"),
        T::Retrying {
            registry,
            what,
            attempt,
            reason,
            delay,
        } => format!(
            "{registry}: {what} failed ({reason}); retry {attempt} in {:.1}s",
            delay.as_secs_f64()
        ),
    }
}

fn emit_json(value: &serde_json::Value) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{value}");
}

impl Reporter for Printer {
    fn report(&self, event: Event<'_>) {
        match event {
            // Plan warnings: shown even with -q, as before.
            Event::Message(text) => self.message(text),
            Event::Output { stage, index, line } => self.output(stage, index, line),
            Event::Step {
                stage,
                index,
                total,
                text,
                status,
            } => self.step(stage, index, total, text, status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_resolve_like_buildx() {
        let r = ProgressMode::resolve;
        assert_eq!(r(None, None, false, true), Ok(ProgressMode::Tty));
        assert_eq!(r(None, None, false, false), Ok(ProgressMode::Plain));
        assert_eq!(r(Some("auto"), None, false, false), Ok(ProgressMode::Plain));
        assert_eq!(
            r(None, Some("rawjson"), false, true),
            Ok(ProgressMode::RawJson)
        );
        // The flag wins over BUILDKIT_PROGRESS; an empty value is unset.
        assert_eq!(
            r(Some("plain"), Some("tty"), false, true),
            Ok(ProgressMode::Plain)
        );
        assert_eq!(
            r(Some(""), Some("tty"), false, false),
            Ok(ProgressMode::Tty)
        );
        assert_eq!(r(Some("tty"), None, true, true), Ok(ProgressMode::Quiet));
        assert_eq!(r(Some("quiet"), None, false, true), Ok(ProgressMode::Quiet));
        assert!(r(Some("fancy"), None, false, true)
            .unwrap_err()
            .contains("rawjson"));
    }
}
