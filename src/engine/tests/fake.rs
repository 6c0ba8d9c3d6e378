//! The fakes and builders of the engine's tests: an executor that
//! interprets a tiny command language, a reporter that records statuses,
//! plans written step by step, and a world (state dir, context, store).

use std::collections::BTreeMap;
use std::fs;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use crate::cache::CacheIndex;
use crate::context::BuildContext;
use crate::image::{ImageConfig, ResolvedImage};
use crate::plan::{
    Base, BuildPlan, ConfigChange, CopyFrom, CopyStep, NetworkMode, Platform, RunStep,
    SecurityMode, Span, StagePlan, Step, StepKind,
};
use crate::store::ContentStore;

use super::super::{
    build, BuildOutput, CachePolicy, EngineError, EngineOptions, Event, Executor, Reporter,
    RunOutcome, RunRequest, Services, Snapshotter, SnapshotterKind, StepFailure, StepStatus,
};

/// Runs the last argument of a RUN as a command of its own: `write PATH
/// TEXT` writes TEXT to PATH in the rootfs; `fail CODE` exits with CODE.
/// Every command is recorded.
#[derive(Default)]
pub struct FakeExecutor {
    pub commands: Mutex<Vec<String>>,
}

impl Executor for FakeExecutor {
    fn run(
        &self,
        request: &RunRequest<'_>,
        output: &mut dyn FnMut(&str),
    ) -> Result<RunOutcome, EngineError> {
        let script = request.argv.last().cloned().unwrap_or_default();
        self.commands.lock().unwrap().push(script.clone());
        output(&format!("fake: {script}"));
        let words: Vec<&str> = script.split_whitespace().collect();
        match words.as_slice() {
            ["write", path, text @ ..] => {
                let file = request.rootfs.join(path.trim_start_matches('/'));
                fs::create_dir_all(file.parent().unwrap()).unwrap();
                fs::write(file, text.join(" ")).unwrap();
                Ok(RunOutcome { exit_code: 0 })
            }
            ["fail", code] => Ok(RunOutcome {
                exit_code: code.parse().unwrap(),
            }),
            _ => panic!("the fake executor cannot run {script:?}"),
        }
    }
}

/// Records the last status of every step, by stage and number.
#[derive(Default)]
pub struct Statuses(Mutex<BTreeMap<(String, usize), StepStatus>>);

impl Reporter for Statuses {
    fn report(&self, event: Event<'_>) {
        if let Event::Step {
            stage,
            index,
            status,
            ..
        } = event
        {
            self.0
                .lock()
                .unwrap()
                .insert((stage.to_string(), index), status);
        }
    }
}

/// A state dir with a content store and a build context.
pub struct World {
    pub dir: tempfile::TempDir,
    pub store: ContentStore,
}

/// One build's results.
pub struct Built {
    pub output: Result<BuildOutput, StepFailure>,
    /// Per step of every stage in plan order: `C` cached, `R` run, `-` a
    /// step without a layer (done, never cached), `.` not finished.
    pub statuses: String,
    /// The commands the executor ran.
    pub commands: Vec<String>,
}

impl World {
    pub fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("context")).unwrap();
        let store = ContentStore::open(&dir.path().join("home")).unwrap();
        World { dir, store }
    }

    pub fn home(&self) -> std::path::PathBuf {
        self.dir.path().join("home")
    }

    /// Writes a file of the context.
    pub fn file(&self, path: &str, text: &str) {
        let file = self.dir.path().join("context").join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(file, text).unwrap();
    }

    pub fn build(&self, plan: &BuildPlan, cache: CachePolicy) -> Built {
        let context = BuildContext::open(&self.dir.path().join("context"), None).unwrap();
        let executor = FakeExecutor::default();
        let statuses = Statuses::default();
        let snapshotter = Snapshotter::new(&self.home(), SnapshotterKind::Copy);
        let index = CacheIndex::new(&self.home().join("cache"));
        let services = Services {
            store: &self.store,
            cache: &index,
            executor: &executor,
            snapshotter: &snapshotter,
            reporter: &statuses,
        };
        let opts = EngineOptions {
            home: self.home(),
            cache,
            cancel: Arc::new(AtomicBool::new(false)),
            jobs: 2,
            ..EngineOptions::default()
        };
        let bases: BTreeMap<String, ResolvedImage> = BTreeMap::new();
        let output = build(plan, &context, &bases, services, &opts);
        let recorded = statuses.0.into_inner().unwrap();
        let mut text = String::new();
        for stage in &plan.stages {
            let name = super::super::stage::stage_name(stage);
            for (i, step) in stage.steps.iter().enumerate() {
                text.push(match recorded.get(&(name.clone(), i + 1)) {
                    None | Some(StepStatus::Running) => '.',
                    Some(StepStatus::Cached) => 'C',
                    Some(StepStatus::Done { .. }) if step.creates_layer() => 'R',
                    Some(StepStatus::Done { .. }) => '-',
                });
            }
            text.push(' ');
        }
        Built {
            output,
            statuses: text.trim_end().to_string(),
            commands: executor.commands.into_inner().unwrap(),
        }
    }
}

fn step(text: &str, kind: StepKind) -> Step {
    Step {
        span: Span {
            start_line: 1,
            end_line: 1,
        },
        text: text.to_string(),
        created_by: text.to_string(),
        onbuild: false,
        kind,
    }
}

fn copy_step(from: CopyFrom, source: &str, dest: &str, link: bool) -> Step {
    let text = format!("COPY {source} {dest}");
    step(
        &text,
        StepKind::Copy(CopyStep {
            is_add: false,
            sources: vec![source.to_string()],
            dest: dest.to_string(),
            from,
            chown: None,
            chmod: None,
            link,
            parents: false,
            excludes: Vec::new(),
            heredocs: Vec::new(),
            checksum: None,
            keep_git_dir: false,
            unpack: None,
        }),
    )
}

/// `COPY SOURCE DEST` from the context.
pub fn copy(source: &str, dest: &str) -> Step {
    copy_step(CopyFrom::Context, source, dest, false)
}

/// `COPY --link SOURCE DEST`.
pub fn copy_link(source: &str, dest: &str) -> Step {
    copy_step(CopyFrom::Context, source, dest, true)
}

/// `COPY --from=STAGE SOURCE DEST`.
pub fn copy_from(stage: usize, source: &str, dest: &str) -> Step {
    copy_step(CopyFrom::Stage(stage), source, dest, false)
}

/// `RUN SCRIPT` (see [`FakeExecutor`]).
pub fn run(script: &str) -> Step {
    step(
        &format!("RUN {script}"),
        StepKind::Run(RunStep {
            argv: vec!["/bin/sh".into(), "-c".into(), script.to_string()],
            env: vec!["K=V".into()],
            workdir: "/".into(),
            user: String::new(),
            mounts: Vec::new(),
            network: NetworkMode::Default,
            security: SecurityMode::Sandbox,
            heredocs: Vec::new(),
            cache_env: vec!["K=V".into()],
        }),
    )
}

pub fn workdir(dir: &str) -> Step {
    step(
        &format!("WORKDIR {dir}"),
        StepKind::Config(ConfigChange::Workdir(dir.to_string())),
    )
}

pub fn env(name: &str, value: &str) -> Step {
    step(
        &format!("ENV {name}={value}"),
        StepKind::Config(ConfigChange::Env(vec![(
            name.to_string(),
            value.to_string(),
        )])),
    )
}

/// A stage `id` named `name`, from scratch or from the stage `base`.
pub fn stage(id: usize, name: &str, base: Option<usize>, steps: Vec<Step>) -> StagePlan {
    let mut deps: Vec<usize> = base.into_iter().collect();
    for s in &steps {
        if let StepKind::Copy(CopyStep {
            from: CopyFrom::Stage(d),
            ..
        }) = &s.kind
        {
            deps.push(*d);
        }
    }
    deps.sort();
    deps.dedup();
    StagePlan {
        id,
        name: Some(name.to_string()),
        base: base.map_or(Base::Scratch, Base::Stage),
        platform: Platform::linux_amd64(),
        deps,
        steps,
        span: Span {
            start_line: 1,
            end_line: 1,
        },
        config: ImageConfig::default(),
        base_config_known: true,
    }
}

/// A plan of `stages` (in dependency order) whose target is the last.
pub fn plan(stages: Vec<StagePlan>) -> BuildPlan {
    BuildPlan {
        target: stages.len() - 1,
        levels: Vec::new(),
        images: Vec::new(),
        warnings: Vec::new(),
        source_date_epoch: None,
        labels: BTreeMap::new(),
        stages,
    }
}
