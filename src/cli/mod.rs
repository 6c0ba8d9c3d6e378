//! The command line: arguments (clap), settings from the environment, output,
//! diagnostics and exit codes. The only module that prints, reads the
//! environment or decides how the process exits.
//!
//! Exit codes: 0 success; 1 the build or the input failed (bad Dockerfile,
//! failing step, registry refusal); 2 usage errors, internal errors and
//! commands not available yet.

pub mod args;
pub mod build;
pub mod images;
pub mod parse;
pub mod plan;
pub mod progress;
pub mod registry;
pub mod settings;
pub mod stdin_context;
pub mod store;
pub mod template;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};

/// Exit code for failures of the build or of its inputs.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for usage and internal errors.
pub const EXIT_USAGE: u8 = 2;

/// How a command ended, when it did not succeed.
#[derive(Debug)]
pub enum Failure {
    /// The user's input or the build failed (exit 1).
    User(anyhow::Error),
    /// Usage error, internal error or missing feature (exit 2).
    Usage(anyhow::Error),
}

impl Failure {
    fn exit_code(&self) -> u8 {
        match self {
            Failure::User(_) => EXIT_FAILURE,
            Failure::Usage(_) => EXIT_USAGE,
        }
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            let code = failure.exit_code();
            let (Failure::User(err) | Failure::Usage(err)) = failure;
            // Rendered once, here; red only on a terminal without NO_COLOR.
            let label = if progress::colour_allowed() {
                "\x1b[1;31merror\x1b[0m"
            } else {
                "error"
            };
            eprintln!("{label}: {err:#}");
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    // Completions need no state directory.
    if let Command::Completions(args) = &cli.command {
        use clap::CommandFactory;
        let mut command = Cli::command();
        clap_complete::generate(args.shell, &mut command, "imgb", &mut std::io::stdout());
        return Ok(());
    }
    let state = settings::state_dir(cli.root.as_deref(), |k| std::env::var(k).ok());
    let state = state.ok_or_else(|| {
        Failure::Usage(anyhow::anyhow!(
            "cannot find a state directory: set IMGB_HOME or HOME, or pass --root"
        ))
    })?;
    match cli.command {
        Command::Build(args) if args.dry_run => plan::dry_run(&args),
        Command::Build(args) => build::run(&state, &args),
        Command::Parse(args) => parse::run(&args),
        Command::Pull(args) => registry::pull(&state, args),
        Command::Push(args) => registry::push(&state, args),
        Command::Login(args) => registry::login(&state, args),
        Command::Logout(args) => registry::logout(args),
        Command::Images(args) => images::images(&state, &args),
        Command::Inspect(args) => images::inspect(&state, &args),
        Command::Completions(_) => Ok(()),
        Command::Prune(args) => store::prune(&state, &args),
        Command::Du => store::du(&state),
    }
}
