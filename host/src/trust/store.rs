//! The trust file: the SHA-256 of every plugin build the operator trusts, as TOML, one
//! `[[plugin]]` table each. `plugin-host trust add|list|rm` manage it; people may read
//! and edit it too.

use std::{
    path::{Path, PathBuf},
    time::SystemTime,
};

use serde::{Deserialize, Serialize};

/// One trusted plugin build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedPlugin {
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
    /// The file name it had when added (for people; the hash is what counts).
    pub file: String,
    /// When it was added (RFC 3339).
    pub added: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    #[serde(default, rename = "plugin")]
    plugins: Vec<TrustedPlugin>,
}

/// Why the trust file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TrustStoreError {
    /// Reading or writing failed.
    #[error("trust file {path}: {error}")]
    Io {
        /// The trust file.
        path: PathBuf,
        /// The operating system's error (in the message, not a `source`).
        error: std::io::Error,
    },
    /// The file is not a valid trust file.
    #[error("trust file {path} is not valid: {reason}; fix or remove it")]
    Invalid {
        /// The trust file.
        path: PathBuf,
        /// What did not parse.
        reason: String,
    },
}

/// The trusted plugin builds, as kept in one file.
#[derive(Debug, Clone, Default)]
pub struct TrustStore {
    path: PathBuf,
    plugins: Vec<TrustedPlugin>,
}

impl TrustStore {
    /// Reads the trust file at `path`; a missing file is an empty store.
    ///
    /// # Errors
    ///
    /// [`TrustStoreError`] when it exists but cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Self, TrustStoreError> {
        let text = match crate::util::read_text_at_most(path, crate::util::TEXT_FILE_AT_MOST) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(error) => {
                return Err(TrustStoreError::Io {
                    path: path.to_owned(),
                    error,
                })
            }
        };
        let file: StoreFile = toml::from_str(&text).map_err(|err| TrustStoreError::Invalid {
            path: path.to_owned(),
            reason: err.message().to_owned(),
        })?;
        Ok(Self {
            path: path.to_owned(),
            plugins: file.plugins,
        })
    }

    /// Where the store lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The trusted builds.
    pub fn plugins(&self) -> &[TrustedPlugin] {
        &self.plugins
    }

    /// Whether `sha256` is trusted.
    pub fn contains(&self, sha256: &str) -> bool {
        self.plugins.iter().any(|p| p.sha256 == sha256)
    }

    /// Trusts the build with `sha256` (once), remembering `file` as its name.
    pub fn add(&mut self, sha256: &str, file: &str) -> bool {
        if self.contains(sha256) {
            return false;
        }
        self.plugins.push(TrustedPlugin {
            sha256: sha256.to_owned(),
            file: file.to_owned(),
            added: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        });
        true
    }

    /// Removes the builds whose hash is `key`, or whose recorded file name is `key`.
    /// Returns what was removed.
    pub fn remove(&mut self, key: &str) -> Vec<TrustedPlugin> {
        let (removed, kept) = std::mem::take(&mut self.plugins)
            .into_iter()
            .partition(|p| p.sha256 == key || p.file == key);
        self.plugins = kept;
        removed
    }

    /// Writes the store back atomically (write, then rename), owner-writable only.
    ///
    /// # Errors
    ///
    /// [`TrustStoreError::Io`].
    pub fn save(&self) -> Result<(), TrustStoreError> {
        let io = |error| TrustStoreError::Io {
            path: self.path.clone(),
            error,
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let file = StoreFile {
            plugins: self.plugins.clone(),
        };
        let text = format!(
            "# Plugins this host trusts, by SHA-256. `plugin-host trust add FILE` adds one,\n# `plugin-host trust rm FILE|HASH` removes one.\n\n{}",
            toml::to_string(&file).map_err(|err| TrustStoreError::Invalid {
                path: self.path.clone(),
                reason: err.to_string(),
            })?
        );
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, text).map_err(io)?;
        crate::platform::owner_writes_only(&tmp).map_err(io)?;
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_round_trips_through_its_file_and_removes_by_name_or_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trusted.toml");
        let mut store = TrustStore::load(&path).expect("a missing file is empty");
        assert!(store.add("aa", "liba.so"));
        assert!(!store.add("aa", "liba.so"), "once");
        assert!(store.add("bb", "libb.so"));
        store.save().unwrap();
        let mut again = TrustStore::load(&path).unwrap();
        assert!(again.contains("aa") && again.contains("bb"));
        assert_eq!(again.remove("liba.so").len(), 1);
        assert_eq!(again.remove("bb").len(), 1);
        assert!(again.plugins().is_empty());
    }

    #[test]
    fn a_broken_trust_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trusted.toml");
        std::fs::write(&path, "[[plugin]]\nsha = 1\n").unwrap();
        let err = TrustStore::load(&path).unwrap_err();
        assert!(err.to_string().contains("trusted.toml"), "{err}");
    }
}
