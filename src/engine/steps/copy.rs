//! COPY and ADD: the key (the step's definition, the checksums of the
//! selected context files or the identity of the stage or image the files
//! come from, ADD's downloads), then, on a miss, the layer of the files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::cache::CacheKey;
use crate::context::{BuildContext, Selection};
use crate::digest::Sha256Digest;
use crate::plan::CopyStep;

use super::super::files::add::{self, AddSources};
use super::super::files::owner::{resolve_chown, Chmod};
use super::super::files::{self, CopySpec};
use super::super::lowerfs::LowerFs;
use super::super::report::At;
use super::super::session::Session;
use super::super::sources::Source;
use super::super::state::StageState;
use super::super::EngineError;
use super::{layer_format, Keys, LayerStep, Outcome};

pub struct Copy<'s> {
    step: &'s CopyStep,
    /// ADD's own part: archives, downloads (see `files::add`).
    add: Option<AddSources>,
    /// Heredoc files: name and content.
    inline: Vec<(String, Vec<u8>)>,
    /// Source paths (URLs and heredoc names taken out).
    sources: Vec<String>,
    source: Source,
    /// The selected context files (for a context source).
    selections: Vec<Selection>,
}

impl<'s> Copy<'s> {
    pub fn new(session: &Session, step: &'s CopyStep) -> Result<Copy<'s>, EngineError> {
        let add = match step.is_add {
            true => Some(AddSources::new(step, &session.opts.home)?),
            false => None,
        };
        let inline = step
            .heredocs
            .iter()
            .map(|h| (h.name.clone(), h.content.clone().into_bytes()))
            .collect();
        let sources = step
            .sources
            .iter()
            .filter(|s| !(step.is_add && add::is_url(s)))
            .filter(|s| {
                !step.heredocs.iter().any(|h| {
                    **s == h.name
                        || s.trim_start_matches("<<-")
                            .trim_start_matches("<<")
                            .trim_matches('"')
                            .trim_matches('\'')
                            == h.name
                })
            })
            .cloned()
            .collect();
        Ok(Copy {
            step,
            add,
            inline,
            sources,
            source: Source::Context,
            selections: Vec::new(),
        })
    }

    fn spec(&self) -> CopySpec<'_> {
        CopySpec {
            sources: &self.sources,
            inline: &self.inline,
            dest: &self.step.dest,
            parents: self.step.parents,
            excludes: &self.step.excludes,
            from_context: matches!(self.source, Source::Context),
        }
    }
}

/// The key of a COPY on top of `parent`, from its definition and its
/// inputs' identities. `--link`: the layer does not depend on what is below
/// it, so its key starts from nothing; the stage's chain still moves on.
pub fn key(
    parent: CacheKey,
    platform: &str,
    step: &CopyStep,
    inputs: &BTreeMap<String, Sha256Digest>,
    format: serde_json::Value,
) -> Keys {
    let mut json = serde_json::to_value(step).unwrap_or_default();
    json["layer"] = format;
    let key_parent = match step.link {
        true => CacheKey::base(None, platform),
        false => parent,
    };
    let key = CacheKey::step(key_parent, platform, &json, inputs);
    let chain = match step.link {
        true => {
            let link = serde_json::json!({ "link": key.to_string() });
            CacheKey::step(parent, platform, &link, &BTreeMap::new())
        }
        false => key,
    };
    Keys { key, chain }
}

impl LayerStep for Copy<'_> {
    fn keys(&mut self, session: &Session, state: &mut StageState) -> Result<Keys, EngineError> {
        let mut inputs: BTreeMap<String, Sha256Digest> = BTreeMap::new();
        for (name, bytes) in &self.inline {
            inputs.insert(format!("inline/{name}"), Sha256Digest::of(bytes));
        }
        self.source = session.source(&self.step.from)?;
        match self.source.identity() {
            None => {
                self.selections = files::select(session.context, &self.spec())?;
                for (i, selection) in self.selections.iter().enumerate() {
                    let sum = session.checksum(selection)?;
                    inputs.insert(format!("src/{i}/{}", selection.path), sum);
                }
            }
            Some(identity) => {
                inputs.insert("from".into(), identity);
            }
        }
        if let Some(add) = self.add.as_mut() {
            add.key_inputs(&mut inputs)?;
        }
        Ok(key(
            state.key,
            &state.platform,
            self.step,
            &inputs,
            layer_format(session),
        ))
    }

    fn execute(
        &mut self,
        session: &Session,
        state: &mut StageState,
        _at: At<'_>,
    ) -> Result<Outcome, EngineError> {
        let (store, snapshots) = session.layer_sources();
        if let Some(add) = self.add.as_mut() {
            add.fetch()?;
        }
        // A stage's or image's files: a view of its layers.
        let view = session.view(&self.source)?;
        let from_ctx = view
            .as_ref()
            .map(|view| BuildContext::without_ignore(view.path()))
            .transpose()?;
        let root = from_ctx.as_ref().unwrap_or(session.context);
        if from_ctx.is_some() {
            self.selections = files::select(root, &self.spec())?;
        }
        let owner = match &self.step.chown {
            Some(spec) => {
                let (passwd, group) = state.account_files(store, snapshots)?;
                Some(resolve_chown(spec, passwd.as_deref(), group.as_deref())?)
            }
            None => None,
        };
        let chmod = self.step.chmod.as_deref().map(Chmod::parse).transpose()?;
        let empty = LowerFs::empty();
        let lower = match self.step.link {
            true => &empty,
            false => state.lower(store, snapshots)?,
        };
        let spec = self.spec();
        let mut planned = files::plan(root, &self.selections, &spec, lower, owner, chmod.as_ref())?;
        if let Some(add) = self.add.as_mut() {
            let candidates: Vec<PathBuf> = self
                .selections
                .iter()
                .filter(|s| !s.is_dir)
                .filter_map(|s| s.entries.first())
                .map(|e| root.abs(&e.context_path))
                .collect();
            planned = add.finish(
                planned,
                &candidates,
                &self.step.dest,
                lower,
                owner,
                chmod.as_ref(),
            )?;
        }
        let layer = session.write_layer(&planned)?;
        Ok(Outcome::Layer(layer))
    }
}
