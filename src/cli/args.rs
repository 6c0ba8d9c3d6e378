//! Command-line arguments (clap derive). Flags follow `docker build` where a
//! Docker user would expect them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const AFTER_HELP: &str = "\
Examples:
  imgb build .                                  build ./Dockerfile with . as context
  imgb build -t registry.example.com/app:1.2 --push .
  imgb parse -f Dockerfile --format dump        show how a Dockerfile parses
  imgb pull busybox:latest --platform linux/arm64/v8

Environment:
  IMGB_HOME      state directory (default: $XDG_DATA_HOME/imgb or ~/.local/share/imgb)
  DOCKER_CONFIG  where registry credentials are read (default: ~/.docker)
  IMGB_CERTS_DIR per-registry CA certificates, HOST:PORT/*.crt (default: /etc/docker/certs.d)
  IMGB_REGISTRY_CHUNK_SIZE  upload chunk size in bytes (default: 8388608)
  NO_COLOR       disables colour";

/// imgb: a daemonless container image builder.
#[derive(Debug, Parser)]
#[command(name = "imgb", version, about, after_help = AFTER_HELP)]
pub struct Cli {
    /// State directory (overrides IMGB_HOME).
    #[arg(long, global = true, value_name = "DIR")]
    pub root: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build an image from a Dockerfile and a context.
    #[command(after_help = "\
Examples:
  imgb build .
  imgb build -f docker/Dockerfile.prod -t app:1.2 --build-arg VERSION=1.2 .
  imgb build --target test --no-cache .
  imgb build -o type=oci,dest=app.tar .
  tar -C app -c . | imgb build -t app:dev -        context as a tar on stdin
  imgb build -t app:dev - < Dockerfile             a Dockerfile, no context
  imgb build --progress=rawjson . 2> events.jsonl  one JSON event per line
  id=$(imgb build -q .)                            only the image id

Progress: --progress auto|tty|plain|rawjson|quiet, or IMGB_PROGRESS /
BUILDKIT_PROGRESS; auto is tty on a terminal, else plain. NO_COLOR disables colour.")]
    Build(BuildArgs),
    /// Parse a Dockerfile and print its instructions.
    #[command(after_help = "\
Examples:
  imgb parse                       parse ./Dockerfile, print BuildKit's dump format
  imgb parse -f app/Dockerfile --format json")]
    Parse(ParseArgs),
    /// Pull an image from a registry into the local store.
    #[command(after_help = "\
Examples:
  imgb pull busybox
  imgb pull 127.0.0.1:5000/base:1 --platform linux/arm64/v8")]
    Pull(PullArgs),
    /// Push an image (from the store, an OCI layout or an archive) to a registry.
    #[command(after_help = "\
Examples:
  imgb push app:1.2 registry.example.com/app:1.2
  imgb push oci:./layout:latest registry.example.com/app:latest")]
    Push(PushArgs),
    /// Store credentials for a registry in $DOCKER_CONFIG/config.json.
    #[command(after_help = "\
Examples:
  echo \"$TOKEN\" | imgb login registry.example.com -u ci --password-stdin")]
    Login(LoginArgs),
    /// Remove stored credentials for a registry.
    #[command(after_help = "Examples:\n  imgb logout registry.example.com")]
    Logout(LogoutArgs),
    /// List the images in the local store.
    #[command(after_help = "\
Examples:
  imgb images
  imgb images --digests
  imgb images -q                   image ids only
  imgb images --format json        one JSON object per line")]
    Images(ImagesArgs),
    /// Show an image's manifest and config.
    #[command(after_help = "\
Examples:
  imgb inspect app:1.2
  imgb inspect oci:./layout:latest
  imgb inspect --format '{{.Config.Cmd}}' app:1.2
  imgb inspect --format '{{json .Config.Labels}}' app:1.2
  imgb inspect --format '{{index .Config.Labels \"version\"}}' app:1.2

--format takes a small subset of Go templates: {{.Path}}, {{json .Path}},
{{index .Path \"key\"}}, {{join .Path \"sep\"}}, {{upper .Path}}, {{lower .Path}}.")]
    Inspect(InspectArgs),
    /// Remove what no image or cache entry refers to.
    #[command(after_help = "\
Examples:
  imgb prune
  imgb prune --keep-storage 10GB
  imgb prune --filter until=24h     drop cache entries unused for a day
  imgb prune --all --filter until=168h")]
    Prune(PruneArgs),
    /// Show what takes space in the state directory.
    #[command(after_help = "Examples:\n  imgb du")]
    Du,
    /// Print a shell completion script.
    #[command(after_help = "\
Examples:
  imgb completions bash > /etc/bash_completion.d/imgb
  imgb completions zsh > \"${fpath[1]}/_imgb\"
  imgb completions fish > ~/.config/fish/completions/imgb.fish")]
    Completions(CompletionsArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The build context: a directory, or `-` for a tar on stdin.
    #[arg(value_name = "CONTEXT", default_value = ".")]
    pub context: String,
    /// The Dockerfile (default: CONTEXT/Dockerfile); `-` reads stdin.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub file: Option<String>,
    /// Name and optionally a tag (`name:tag`); repeatable.
    #[arg(short = 't', long = "tag", value_name = "NAME")]
    pub tags: Vec<String>,
    /// Set a build-time variable (`NAME=VALUE`, or `NAME` to take it from the environment).
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub build_args: Vec<String>,
    /// Build only the named stage and what it depends on.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,
    /// Do not use the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use the cache for the named stages.
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// Target platform (`os/arch[/variant]`).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Set a label on the image (`KEY=VALUE`); repeatable.
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Output destination (`type=oci,dest=FILE.tar`, `type=docker,dest=...`, `type=registry`).
    #[arg(short = 'o', long = "output", value_name = "SPEC")]
    pub outputs: Vec<String>,
    /// Push the built image to its registry (same as `--output type=registry`).
    #[arg(long)]
    pub push: bool,
    /// Progress output: auto, tty, plain, rawjson, quiet.
    #[arg(long, value_name = "MODE", env = "IMGB_PROGRESS")]
    pub progress: Option<String>,
    /// Write the image id (config digest) to this file.
    #[arg(long, value_name = "FILE")]
    pub iidfile: Option<PathBuf>,
    /// Write build metadata (buildx key names) to this file.
    #[arg(long = "metadata-file", value_name = "FILE")]
    pub metadata_file: Option<PathBuf>,
    /// Secret to expose to RUN --mount=type=secret (`id=ID,src=FILE` or `id=ID,env=VAR`).
    #[arg(long = "secret", value_name = "SPEC")]
    pub secrets: Vec<String>,
    /// Default network mode for RUN (default, none, host).
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// OCI runtime for RUN: a name looked up in PATH, /usr/sbin and /sbin, or a path.
    #[arg(
        long,
        value_name = "NAME|PATH",
        env = "IMGB_RUNTIME",
        default_value = "runc"
    )]
    pub runtime: String,
    /// How many independent stages build at once (default: four per CPU).
    #[arg(short = 'j', long, value_name = "N", env = "IMGB_JOBS", value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: Option<u16>,
    /// Print only the image id.
    #[arg(short, long)]
    pub quiet: bool,
    /// Layer compression: gzip, zstd or uncompressed.
    #[arg(long, value_name = "ALGORITHM", default_value = "gzip")]
    pub compression: String,
    /// Compression level (gzip 0-9, default 2; zstd 1-22, default 3).
    #[arg(long = "compression-level", value_name = "N")]
    pub compression_level: Option<i32>,
    /// Print the build plan instead of building.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub registry: RegistryFlags,
    /// Format of --dry-run output: text, json, dot.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// The Dockerfile to parse; `-` reads stdin.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "PATH",
        default_value = "Dockerfile"
    )]
    pub file: String,
    /// Output format: dump (BuildKit's parser-test format) or json.
    #[arg(long, value_name = "FORMAT", default_value = "dump")]
    pub format: String,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference (`name[:tag|@digest]`).
    pub reference: String,
    /// Platform to pick from a multi-platform image (`os/arch[/variant]`).
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Only download: do not unpack the layers for RUN.
    #[arg(long)]
    pub no_unpack: bool,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// What to push: an image in the store, `oci:DIR[:TAG]` or `oci-archive:FILE[:TAG]`.
    pub source: String,
    /// Where to push it (default: SOURCE's own name).
    pub destination: Option<String>,
    #[command(flatten)]
    pub registry: RegistryFlags,
}

/// Flags shared by the commands that talk to registries.
#[derive(Debug, Args, Default, Clone)]
pub struct RegistryFlags {
    /// Allow plain HTTP for this registry (`HOST[:PORT]`); repeatable.
    /// Loopback registries (localhost, 127.0.0.0/8, ::1) are always allowed.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host (`HOST[:PORT]`).
    pub registry: String,
    /// User name.
    #[arg(short, long)]
    pub username: Option<String>,
    /// Read the password from stdin.
    #[arg(long)]
    pub password_stdin: bool,
    #[command(flatten)]
    pub flags: RegistryFlags,
}

#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry host (`HOST[:PORT]`).
    pub registry: String,
}

#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Show manifest digests.
    #[arg(long)]
    pub digests: bool,
    /// Print image ids only.
    #[arg(short, long)]
    pub quiet: bool,
    /// Output format: table or json (one object per line).
    #[arg(long, value_name = "FORMAT")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// An image in the store or `oci:DIR[:TAG]`.
    pub reference: String,
    /// Render with a template instead of JSON (`{{.Config.Cmd}}`, `{{json .Config}}`).
    #[arg(short, long, value_name = "TEMPLATE")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove everything, including tagged images.
    #[arg(long)]
    pub all: bool,
    /// Keep this much storage (e.g. `10GB`).
    #[arg(long, value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// `until=DURATION` (`24h`, `90m`, `1h30m`): only what was last used
    /// (cache) or created (images, with --all) longer ago than that.
    #[arg(long, value_name = "FILTER")]
    pub filter: Vec<String>,
    /// Re-hash every blob and report those that do not match their name.
    #[arg(long)]
    pub verify: bool,
}
