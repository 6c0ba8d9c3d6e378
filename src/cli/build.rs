//! `imgb build`: the pipeline end to end. Parse the Dockerfile, outline the
//! stage graph, resolve base images into the store, lower to a plan, run the
//! engine, commit the image and export it where `--output`/`-t` say.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};

use super::args::BuildArgs;
use super::parse::render_error;
use super::plan::{plan_failure, plan_options};
use super::progress::{Printer, ProgressMode, Summary};
use super::Failure;
use crate::cache::CacheIndex;
use crate::context::BuildContext;
use crate::dockerfile::{self, Span};
use crate::engine::{
    self, CachePolicy, EngineOptions, Executor, NoRuntime, Runc, Services, Snapshotter, StepFailure,
};
use crate::export::{self, ExportTarget};
use crate::image::{canonical_json, Descriptor, ResolvedImage};
use crate::layer::{Compression, LayerOptions};
use crate::plan::{self, Base, Platform};
use crate::store::ContentStore;

/// Runs `imgb build`.
pub fn run(state: &Path, args: &BuildArgs) -> Result<(), Failure> {
    let mode = ProgressMode::from_env(args.progress.as_deref(), args.quiet)
        .map_err(|e| Failure::Usage(anyhow!(e)))?;
    // Shared with the registry client's transfer callback.
    let printer = std::sync::Arc::new(Printer::new(mode, super::progress::colour_allowed()));

    check_names_and_outputs(args)?;

    // `-`: a context tar (or a lone Dockerfile) on stdin, unpacked into a
    // directory that lives as long as this build.
    let stdin_context = if args.context == "-" {
        if args.file.as_deref() == Some("-") {
            return Err(Failure::Usage(anyhow!(
                "the context and the Dockerfile cannot both be read from stdin"
            )));
        }
        Some(super::stdin_context::read(state)?)
    } else {
        None
    };
    let context_dir = match &stdin_context {
        Some(c) => c.context.dir().to_path_buf(),
        None => PathBuf::from(&args.context),
    };
    if !context_dir.is_dir() {
        return Err(Failure::User(anyhow!(
            "unable to prepare context: path {:?} not found or not a directory",
            args.context
        )));
    }
    let stdin_dockerfile = stdin_context.as_ref().and_then(|c| c.dockerfile.clone());
    let (dockerfile_name, dockerfile_path) = match (args.file.as_deref(), &stdin_dockerfile) {
        (Some(_), Some(_)) => {
            return Err(Failure::Usage(anyhow!(
                "stdin holds a Dockerfile, not a context tar: -f cannot be used with it"
            )))
        }
        (None, Some(_)) | (Some("-"), None) => ("<stdin>".to_string(), None),
        // Docker: with a context tar on stdin, -f names a file inside it.
        (Some(f), None) if stdin_context.is_some() => (f.to_string(), Some(context_dir.join(f))),
        (Some(f), None) => (f.to_string(), Some(PathBuf::from(f))),
        (None, None) => {
            let p = context_dir.join("Dockerfile");
            let name = if stdin_context.is_some() {
                "Dockerfile".to_string()
            } else {
                p.display().to_string()
            };
            (name, Some(p))
        }
    };
    let text = match stdin_dockerfile {
        Some(text) => text,
        None => read_dockerfile(dockerfile_path.as_deref(), &dockerfile_name)?,
    };
    let parsed = dockerfile::parse(&text)
        .map_err(|e| Failure::User(anyhow!("{}", render_error(&dockerfile_name, &text, &e))))?;
    for w in &parsed.warnings {
        printer.warning(&format!("{dockerfile_name}:{}: {}", w.line, w.message));
    }

    let opts = plan_options(args)?;
    let graph =
        plan::outline(&parsed, &opts).map_err(|e| plan_failure(&dockerfile_name, &text, e))?;

    let store = ContentStore::open(state)
        .with_context(|| format!("opening the state directory {}", state.display()))
        .map_err(Failure::Usage)?;
    let mut client_opts = super::registry::client_options(state, &args.registry);
    let transfers = std::sync::Arc::clone(&printer);
    client_opts.progress = Some(crate::registry::Progress::new(move |e| {
        transfers.transfer(e)
    }));
    let client = crate::registry::RegistryClient::new(client_opts);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Usage(anyhow!("cannot start the async runtime: {e}")))?;
    let bases = resolve_bases(&graph, &client, &store, &runtime, &printer)?;
    let base_configs: BTreeMap<String, crate::image::ImageConfig> = bases
        .iter()
        .map(|(k, v)| (k.clone(), v.config.clone()))
        .collect();
    let plan = plan::lower(&parsed, &graph, &base_configs, &opts)
        .map_err(|e| plan_failure(&dockerfile_name, &text, e))?;

    let layer = LayerOptions {
        compression: args
            .compression
            .parse::<Compression>()
            .map_err(|e| Failure::Usage(anyhow!("{e}")))?,
        level: args.compression_level,
        source_date_epoch: plan.source_date_epoch.map(|e| e.max(0) as u64),
    };
    let context = BuildContext::open(&context_dir, dockerfile_path.as_deref())
        .map_err(|e| Failure::User(anyhow!("{e}")))?;
    let cache = match (args.no_cache, args.no_cache_filter.is_empty()) {
        (true, _) => CachePolicy::Rebuild,
        (false, false) => CachePolicy::RebuildStages(args.no_cache_filter.clone()),
        (false, true) => CachePolicy::Reuse,
    };
    let engine_opts = EngineOptions {
        cancel: cancel_on_interrupt(),
        home: state.to_path_buf(),
        cache,
        layer,
        secrets: secrets(&args.secrets)?,
        network: network(args.network.as_deref())?,
        jobs: args.jobs.map_or(0, usize::from),
    };
    let snapshotter_kind = std::env::var("IMGB_SNAPSHOTTER")
        .unwrap_or_default()
        .parse()
        .map_err(|e: String| Failure::Usage(anyhow!("IMGB_SNAPSHOTTER: {e}")))?;
    let executor: Box<dyn Executor> = match find_runtime(&args.runtime) {
        Some(binary) => Box::new(Runc {
            binary,
            state: state.join("runc"),
        }),
        None => Box::new(NoRuntime {
            name: args.runtime.clone(),
        }),
    };
    let services = Services {
        store: &store,
        cache: &CacheIndex::new(&state.join("cache")),
        executor: &*executor,
        snapshotter: &Snapshotter::new(state, snapshotter_kind),
        reporter: &*printer,
    };
    let output = engine::build(&plan, &context, &bases, services, &engine_opts)
        .map_err(|f| step_failure(&dockerfile_name, &text, &plan, f))?;

    let manifest = export::commit_image(
        &store,
        &output.config,
        output.layers.clone(),
        Some(&output.created),
    )
    .map_err(|e| Failure::User(anyhow!("{e}")))?;
    let config_digest = crate::digest::Sha256Digest::of(
        &canonical_json(&output.config).map_err(|e| Failure::Usage(anyhow!("{e}")))?,
    );
    for tag in &args.tags {
        let name = normalise_tag(tag)?;
        store
            .set_ref(&name, &manifest.digest)
            .map_err(|e| Failure::User(anyhow!("tagging {tag}: {e}")))?;
    }
    let mut targets = Vec::new();
    for spec in &args.outputs {
        targets.push(ExportTarget::parse(spec).map_err(|e| Failure::Usage(anyhow!("{e}")))?);
    }
    if args.push {
        targets.push(ExportTarget::Registry { names: Vec::new() });
    }
    for target in &targets {
        if let ExportTarget::Registry {
            names: target_names,
        } = target
        {
            let push_names: Vec<String> = if target_names.is_empty() {
                args.tags.clone()
            } else {
                target_names.clone()
            };
            if push_names.is_empty() {
                return Err(Failure::Usage(anyhow!(
                    "--push needs a name: add -t REGISTRY/REPO:TAG"
                )));
            }
            for name in push_names {
                let dest = crate::registry::Reference::parse(&name)
                    .map_err(|e| Failure::Usage(anyhow!("invalid tag {name:?}: {e}")))?;
                let source = crate::registry::BlobSource::Store(store.clone());
                let stats = runtime
                    .block_on(crate::registry::push(
                        &client,
                        &source,
                        &manifest.digest,
                        &dest,
                    ))
                    .map_err(|e| Failure::User(anyhow!("pushing {name}: {e}")))?;
                printer.line(&format!(
                    "pushed {dest}: {} blob(s) uploaded, {} mounted, {} already there",
                    stats.uploaded, stats.mounted, stats.present
                ));
            }
            continue;
        }
        export::export(&store, &manifest, &args.tags, target)
            .map_err(|e| Failure::User(anyhow!("{e}")))?;
    }
    if let Some(path) = &args.iidfile {
        write_file(path, config_digest.to_string().as_bytes())?;
    }
    if let Some(path) = &args.metadata_file {
        // buildx passes the tags as typed (`reference.Parse`, not the
        // normalised `docker.io/library/...` form) as the exporter's name.
        let names = args.tags.clone();
        write_file(path, &metadata(&manifest, &config_digest, &names))?;
    }
    printer.summary(&Summary {
        image: &config_digest,
        manifest: &manifest.digest,
        cached: output.cached_steps,
        executed: output.executed_steps,
    });
    println!("{config_digest}");
    Ok(())
}

fn read_dockerfile(path: Option<&Path>, name: &str) -> Result<String, Failure> {
    let mut bytes = Vec::new();
    let read = match path {
        None => std::io::stdin().read_to_end(&mut bytes).map(|_| ()),
        Some(p) => std::fs::File::open(p).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| ())),
    };
    read.map_err(|e| Failure::User(anyhow!("failed to read Dockerfile {name}: {e}")))?;
    String::from_utf8(bytes)
        .map_err(|e| Failure::User(anyhow!("{name}: the Dockerfile is not valid UTF-8 ({e})")))
}

/// Base images must be in the store before the engine starts: FROM images
/// and `COPY --from`/`RUN --mount=from=` images, each for its platform.
fn resolve_bases(
    graph: &plan::StageGraph,
    client: &crate::registry::RegistryClient,
    store: &ContentStore,
    runtime: &tokio::runtime::Runtime,
    printer: &Printer,
) -> Result<BTreeMap<String, ResolvedImage>, Failure> {
    let mut wanted: BTreeMap<String, Platform> = BTreeMap::new();
    for image in &graph.images {
        wanted
            .entry(image.reference.clone())
            .or_insert_with(|| image.platform.clone());
    }
    for stage in &graph.stages {
        if let Base::Image { reference } = &stage.base {
            wanted
                .entry(reference.clone())
                .or_insert_with(|| stage.platform.clone());
        }
    }
    let mut bases = BTreeMap::new();
    for (reference, platform) in wanted {
        let registry_platform = crate::registry::Platform::parse(&platform.to_string())
            .map_err(|e| Failure::Usage(anyhow!("{e}")))?;
        printer.line(&format!("resolving {reference} for {platform}"));
        let image = runtime
            .block_on(crate::registry::resolve(
                client,
                store,
                &reference,
                &registry_platform,
            ))
            .map_err(|e| Failure::User(anyhow!("pulling base image {reference:?}: {e}")))?;
        bases.insert(
            reference.clone(),
            ResolvedImage {
                reference,
                manifest_digest: image.manifest_digest,
                config: image.config,
                layers: image.manifest.layers.clone(),
            },
        );
    }
    Ok(bases)
}

/// Docker checks tags and outputs before building: a typo in `-t` or `-o`
/// must not cost a whole build.
fn check_names_and_outputs(args: &BuildArgs) -> Result<(), Failure> {
    for tag in &args.tags {
        normalise_tag(tag)?;
    }
    let mut named_registry_output = false;
    for spec in &args.outputs {
        let target = ExportTarget::parse(spec).map_err(|e| Failure::Usage(anyhow!("{e}")))?;
        if let ExportTarget::Registry { names } = &target {
            named_registry_output |= !names.is_empty();
        }
    }
    if args.push && args.tags.is_empty() && !named_registry_output {
        return Err(Failure::Usage(anyhow!(
            "--push needs a name: add -t REGISTRY/REPO:TAG"
        )));
    }
    Ok(())
}

/// A flag that Ctrl-C (SIGINT) or SIGTERM sets: the engine then kills the
/// running container, starts no further step and cleans up its mounts and
/// temp dirs before imgb exits. A second signal exits at once.
fn cancel_on_interrupt() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    let flag = std::sync::Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    // Only one handler per process; a second build in-process keeps the first.
    let _ = ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
        eprintln!("interrupted: stopping the build and cleaning up (Ctrl-C again to quit now)");
    });
    flag
}

/// The runtime binary: a path as given, or a name searched in PATH and
/// the sbin directories (runc lives in /usr/sbin, often not in a user's PATH).
fn find_runtime(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = PathBuf::from(name);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| executable(p))
}

/// `--secret id=ID,src=FILE` (also `source=`, `type=file`) or
/// `id=ID,env=VAR`; `src` defaults to the env var named like the id when
/// neither is given, as buildx does.
fn secrets(specs: &[String]) -> Result<BTreeMap<String, engine::Secret>, Failure> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let usage = || {
            Failure::Usage(anyhow!(
                "invalid --secret {spec:?}: expected id=ID,src=FILE or id=ID,env=VAR"
            ))
        };
        let (mut id, mut src, mut env) = (None, None, None);
        for field in spec.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_string()),
                Some(("src" | "source", v)) => src = Some(v.to_string()),
                Some(("env", v)) => env = Some(v.to_string()),
                Some(("type", "file" | "env")) => {}
                _ => return Err(usage()),
            }
        }
        let id = id.filter(|i| !i.is_empty()).ok_or_else(usage)?;
        let value = match (src, env) {
            (Some(path), _) => std::fs::read(&path)
                .map_err(|e| Failure::User(anyhow!("reading secret {id:?} from {path}: {e}")))?,
            (None, Some(var)) => std::env::var(&var)
                .map_err(|_| Failure::User(anyhow!("secret {id:?}: ${var} is not set")))?
                .into_bytes(),
            (None, None) => std::env::var(&id).map_err(|_| usage())?.into_bytes(),
        };
        out.insert(id, engine::Secret(value));
    }
    Ok(out)
}

fn network(mode: Option<&str>) -> Result<Option<plan::NetworkMode>, Failure> {
    match mode {
        None => Ok(None),
        Some("default") => Ok(Some(plan::NetworkMode::Default)),
        Some("none") => Ok(Some(plan::NetworkMode::None)),
        Some("host") => Ok(Some(plan::NetworkMode::Host)),
        Some(other) => Err(Failure::Usage(anyhow!(
            "unknown --network {other:?}: use default, none or host"
        ))),
    }
}

/// The store name of a `-t` tag: Docker's normalised reference
/// (`app` -> `docker.io/library/app:latest`), as `imgb pull` records names.
fn normalise_tag(tag: &str) -> Result<String, Failure> {
    crate::registry::Reference::parse(tag)
        .map(|r| r.to_string())
        .map_err(|e| Failure::Usage(anyhow!("invalid tag {tag:?}: {e}")))
}

fn metadata(
    manifest: &Descriptor,
    config: &crate::digest::Sha256Digest,
    tags: &[String],
) -> Vec<u8> {
    let mut value = serde_json::json!({
        "containerimage.digest": manifest.digest.to_string(),
        "containerimage.config.digest": config.to_string(),
        "containerimage.descriptor": {
            "mediaType": manifest.media_type,
            "digest": manifest.digest.to_string(),
            "size": manifest.size,
        },
    });
    // BuildKit sets `image.name` only when the image has a name.
    if !tags.is_empty() {
        value["image.name"] = serde_json::json!(tags.join(","));
    }
    serde_json::to_vec_pretty(&value).unwrap_or_default()
}

/// Writes a small output file atomically.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp-{}",
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Failure::User(anyhow!("writing {}: {e}", path.display()))
        })
}

fn snippet(file: &str, text: &str, span: Span, message: &str, hint: Option<&str>) -> String {
    let mut out = format!("{file}:{}: {message}", span.start_line);
    let lines: Vec<&str> = text.lines().collect();
    let last = span.end_line.min(span.start_line + 4);
    let width = last.to_string().len();
    for n in span.start_line..=last {
        if let Some(line) = lines.get(n.wrapping_sub(1)) {
            out.push_str(&format!("\n {n:>width$} | {line}"));
        }
    }
    if let Some(hint) = hint {
        out.push_str(&format!("\nhint: {hint}"));
    }
    out
}

fn step_failure(file: &str, text: &str, plan: &plan::BuildPlan, failure: StepFailure) -> Failure {
    let step = plan
        .stages
        .get(failure.stage)
        .and_then(|s| s.steps.get(failure.step));
    let hint = match &failure.error {
        engine::EngineError::Context(crate::context::ContextError::Excluded { .. }) => {
            Some("remove the pattern from the ignore file, or add an exception (`!PATH`) after it")
        }
        engine::EngineError::Unsupported { .. } => None,
        _ => None,
    };
    match step {
        Some(step) => Failure::User(anyhow!(
            "{}",
            snippet(
                file,
                text,
                step.span,
                &format!("{}: {}", step.text, failure.error),
                hint
            )
        )),
        None => Failure::User(anyhow!("{}", failure.error)),
    }
}
