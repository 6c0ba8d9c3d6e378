//! The `imgb` binary: a thin shell around [`imgb::cli::main`].

fn main() -> std::process::ExitCode {
    imgb::cli::main()
}
