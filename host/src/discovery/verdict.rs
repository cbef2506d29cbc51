//! One shape for a plugin file's verdict, shown alike by `list --json`, `inspect --json`
//! and the admin API's `/plugins`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::ScanOutcome;
use crate::manifest::PluginInfo;

/// Why a file cannot be used, in a form for machines and people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileError {
    /// A short name for the kind of failure (`not_a_library`, `scanner_crashed`, ...).
    pub kind: String,
    /// The whole message: what happened, to which file, and what to do.
    pub message: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for FileError {}

/// One plugin file: usable with its manifest, or not with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The file.
    #[serde(serialize_with = "crate::util::serialize_path_lossy")]
    pub path: PathBuf,
    /// Whether the host can use it.
    pub usable: bool,
    /// Its manifest, when usable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin: Option<PluginInfo>,
    /// Why it cannot be used, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<FileError>,
    /// Whether the verdict came from the registry cache rather than a scan.
    pub cached: bool,
    /// Whether the library is mapped into the host (only a running host knows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loaded: Option<bool>,
    /// The source that delivered it, for a library pulled as an OCI artifact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<crate::sources::SourceRecord>,
}

impl Verdict {
    /// The verdict on `path` from its scan outcome.
    pub fn of(path: PathBuf, outcome: &ScanOutcome, cached: bool) -> Self {
        let (plugin, error) = match outcome {
            Ok(info) => (Some(info.clone()), None),
            Err(err) => (
                None,
                Some(FileError {
                    kind: err.kind().to_owned(),
                    message: err.to_string(),
                }),
            ),
        };
        Self {
            path,
            usable: plugin.is_some(),
            plugin,
            error,
            cached,
            loaded: None,
            source: None,
        }
    }
}
