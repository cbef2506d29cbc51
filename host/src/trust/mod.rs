//! Trust: which plugin files the host is willing to run at all.
//!
//! Loading a plugin runs its code with the host's rights, so whoever can change a plugin
//! file, or the directory it sits in, can run code as the host. Two policies:
//!
//! - `permissions` (the default), as sshd's `StrictModes`: the plugins directory and each
//!   plugin file must be writable by their owner only (not group or world), and owned by
//!   root or the host's own user. On Windows: their access control lists grant write,
//!   delete and permission changes to no one but the owner, Administrators, SYSTEM and
//!   TrustedInstaller.
//! - `pinned`: the same, and the file's SHA-256 must be listed in the trust file, managed
//!   with `plugin-host trust add|list|rm`.
//!
//! A refused file is never opened by a scanner, and never loaded.

mod store;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use self::store::{TrustStore, TrustStoreError, TrustedPlugin};

/// Which files the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrustMode {
    /// Files and directory writable by their owner only, owned by root or the host's user.
    #[default]
    Permissions,
    /// As `Permissions`, and the file's SHA-256 must be in the trust file.
    Pinned,
}

/// The trust policy in force: the mode, and for `Pinned` the trusted hashes.
#[derive(Debug, Clone, Default)]
pub struct TrustPolicy {
    mode: TrustMode,
    store: Option<TrustStore>,
}

impl TrustPolicy {
    /// Permissions only.
    pub fn permissions() -> Self {
        Self::default()
    }

    /// Permissions and a pinned SHA-256 from `store`.
    pub fn pinned(store: TrustStore) -> Self {
        Self {
            mode: TrustMode::Pinned,
            store: Some(store),
        }
    }

    /// Also trusts each `(sha256, file)` for this run, without writing the trust file:
    /// the libraries of artifacts pinned by digest or signed by a trusted key (see
    /// [`crate::sources`]). A policy that is not `pinned` needs no hashes.
    pub fn with_verified(mut self, verified: impl IntoIterator<Item = (String, String)>) -> Self {
        if let Some(store) = &mut self.store {
            for (sha256, file) in verified {
                store.add(&sha256, &file);
            }
        }
        self
    }

    /// The mode in force.
    pub fn mode(&self) -> TrustMode {
        self.mode
    }

    /// Whether the policy needs each file's hash.
    pub(crate) fn needs_hash(&self) -> bool {
        self.mode == TrustMode::Pinned
    }

    /// Refuses a plugins directory others may write to or that someone else owns.
    ///
    /// # Errors
    ///
    /// Why, naming the directory and the fix.
    pub(crate) fn check_dir(&self, dir: &Path) -> Result<(), Refusal> {
        let metadata = std::fs::metadata(dir).map_err(|error| Refusal::UnreadableDir {
            dir: dir.to_owned(),
            error,
        })?;
        Ok(crate::platform::check_owner_only(
            dir,
            "plugins directory",
            &metadata,
        )?)
    }

    /// Refuses a plugin file others may write to, someone else owns, or (pinned) whose
    /// hash is not trusted. `sha256` is asked for only when the policy needs it.
    ///
    /// # Errors
    ///
    /// Why, naming the file and the fix.
    pub(crate) fn check_file(
        &self,
        path: &Path,
        metadata: &std::fs::Metadata,
        sha256: impl FnOnce() -> std::io::Result<String>,
    ) -> Result<(), Refusal> {
        crate::platform::check_owner_only(path, "file", metadata)?;
        let Some(store) = self.store.as_ref().filter(|_| self.needs_hash()) else {
            return Ok(());
        };
        let hash = sha256().map_err(Refusal::Unhashable)?;
        if store.contains(&hash) {
            return Ok(());
        }
        Err(Refusal::NotPinned {
            hash,
            trust_file: store.path().to_owned(),
            path: path.to_owned(),
        })
    }
}

/// Why the trust policy refuses a plugin file or its directory.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// Someone but its owner could change it.
    #[error(transparent)]
    NotOwnersAlone(#[from] crate::platform::NotOwnersAlone),
    /// The plugins directory cannot be read.
    #[error("cannot read the plugins directory {}: {error}", .dir.display())]
    UnreadableDir {
        /// The directory.
        dir: PathBuf,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// The file cannot be read to hash it.
    #[error("cannot read it to hash it: {0}")]
    Unhashable(std::io::Error),
    /// Its hash is not in the trust file.
    #[error("its SHA-256 {hash} is not in the trust file {}; if you trust this build, `plugin-host trust add {}`", .trust_file.display(), .path.display())]
    NotPinned {
        /// Its SHA-256.
        hash: String,
        /// The trust file.
        trust_file: PathBuf,
        /// The file.
        path: PathBuf,
    },
}

/// The SHA-256 of everything `reader` yields, in lowercase hex.
///
/// # Errors
///
/// The reader's error.
pub fn sha256_hex(mut reader: impl std::io::Read) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buffer)? {
            0 => break,
            n => hasher.update(&buffer[..n]),
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect())
}

/// The SHA-256 of the file at `path`.
///
/// # Errors
///
/// The operating system's error.
pub fn sha256_of(path: &Path) -> std::io::Result<String> {
    sha256_hex(std::fs::File::open(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_of_known_bytes_is_the_known_hash() {
        assert_eq!(
            sha256_hex(&b"abc"[..]).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
