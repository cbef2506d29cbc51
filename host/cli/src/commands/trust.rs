//! `plugin-host trust add|list|rm`: the plugin builds a `pinned` host will run, by
//! SHA-256, kept in the trust file (`[host] trust_file`).

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use plugin_host::trust::{sha256_of, TrustStore};

use super::{CliResult, Failure, GlobalArgs, EXIT_FAILURE};

#[derive(Debug, clap::Args)]
pub(crate) struct TrustArgs {
    #[command(subcommand)]
    action: TrustAction,
}

#[derive(Debug, clap::Subcommand)]
enum TrustAction {
    /// Trust these plugin files as they are now (their SHA-256 goes in the trust file).
    Add {
        /// Plugin library files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the trusted builds.
    List,
    /// Stop trusting a build, by file name or SHA-256.
    Rm {
        /// A file (its name as added, or a path to hash) or a SHA-256.
        key: String,
    },
}

pub(crate) async fn run(global: &GlobalArgs, args: TrustArgs) -> CliResult {
    let config = global.config()?;
    let path = config.trust_file();
    let mut store = TrustStore::load(&path).map_err(Failure::usage)?;
    match args.action {
        TrustAction::Add { files } => {
            for file in files {
                let hash = sha256_of(&file)
                    .with_context(|| format!("cannot read {} to hash it", file.display()))?;
                let name = file
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                let verb = if store.add(&hash, &name) {
                    "trusted"
                } else {
                    "already trusted"
                };
                say!("{verb}: {hash}  {}", file.display());
            }
            store.save()?;
            say!("trust file: {}", path.display());
        }
        TrustAction::List => {
            say!("trust file: {}", path.display());
            for plugin in store.plugins() {
                say!(
                    "{}  {}  (added {})",
                    plugin.sha256,
                    plugin.file,
                    plugin.added
                );
            }
        }
        TrustAction::Rm { key } => {
            // A path to an existing file is removed by its current hash and its name.
            let by_hash = std::fs::metadata(&key)
                .is_ok()
                .then(|| sha256_of(key.as_ref()).ok())
                .flatten();
            let name = PathBuf::from(&key)
                .file_name()
                .map_or_else(|| key.clone(), |n| n.to_string_lossy().into_owned());
            let mut removed = store.remove(&key);
            removed.extend(store.remove(&name));
            if let Some(hash) = by_hash {
                removed.extend(store.remove(&hash));
            }
            if removed.is_empty() {
                say_err!("error: nothing in {} matches `{key}`", path.display());
                return Ok(ExitCode::from(EXIT_FAILURE));
            }
            store.save()?;
            for plugin in removed {
                say!("no longer trusted: {}  {}", plugin.sha256, plugin.file);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
