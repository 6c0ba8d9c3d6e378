//! Applying a [`ConfigChange`] to an image config with Docker's rules, so
//! the engine never re-implements them.

use std::collections::BTreeMap;

use crate::image::{Config, Empty, ImageConfig};
use crate::plan::ConfigChange;

/// `PATH` that BuildKit sets when an image has none (Linux).
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Sets `key=value` in an env list, replacing an existing entry in place
/// (BuildKit's `addEnv`).
pub(crate) fn add_env(env: &mut Vec<String>, key: &str, value: &str) {
    let entry = format!("{key}={value}");
    match env
        .iter_mut()
        .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key)
    {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

/// Applies one change to `config` (history is the engine's: it records
/// [`crate::plan::Step::created_by`]).
pub fn apply(config: &mut ImageConfig, change: &ConfigChange) {
    if let ConfigChange::Maintainer(name) = change {
        config.author = Some(name.clone());
        return;
    }
    let c: &mut Config = config.config.get_or_insert_with(Config::default);
    match change {
        ConfigChange::Env(pairs) => {
            let env = c.env.get_or_insert_with(Vec::new);
            for (k, v) in pairs {
                add_env(env, k, v);
            }
        }
        ConfigChange::Label(pairs) => {
            let labels = c.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in pairs {
                labels.insert(k.clone(), v.clone());
            }
        }
        ConfigChange::User(user) => c.user = Some(user.clone()),
        ConfigChange::Workdir(dir) => c.working_dir = Some(dir.clone()),
        ConfigChange::Expose(ports) => {
            let set = c.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in ports {
                set.insert(p.clone(), Empty {});
            }
        }
        ConfigChange::Volume(paths) => {
            let set = c.volumes.get_or_insert_with(BTreeMap::new);
            for p in paths {
                set.insert(p.clone(), Empty {});
            }
        }
        ConfigChange::Entrypoint { argv, reset_cmd } => {
            c.entrypoint = Some(argv.clone());
            // Docker quirk: ENTRYPOINT drops the CMD inherited from the
            // base unless this stage set a CMD before it.
            if *reset_cmd {
                c.cmd = None;
            }
        }
        ConfigChange::Cmd(argv) => {
            c.cmd = Some(argv.clone());
            // Docker quirk: BuildKit marks every CMD ArgsEscaped (a Windows
            // flag) on all platforms.
            c.args_escaped = Some(true);
        }
        ConfigChange::Shell(shell) => c.shell = Some(shell.clone()),
        ConfigChange::StopSignal(sig) => c.stop_signal = Some(sig.clone()),
        ConfigChange::Healthcheck(h) => c.healthcheck = Some(h.clone()),
        ConfigChange::Onbuild(trigger) => c
            .on_build
            .get_or_insert_with(Vec::new)
            .push(trigger.clone()),
        ConfigChange::Maintainer(_) | ConfigChange::Arg => {}
    }
}
