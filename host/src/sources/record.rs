//! What one pull of a source brought: kept beside the artifact cache, shown by `list`,
//! `inspect`, `check`, `status` and `/plugins`.

use std::{
    path::Path,
    time::{Duration, SystemTime},
};

use serde::{Deserialize, Serialize};

use crate::config::SourceConfig;

/// One source's last pull.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// The source's name.
    pub name: String,
    /// The reference pulled, as configured (`oci` or `oci-layout`).
    pub reference: String,
    /// The digest it resolved to.
    pub digest: String,
    /// The platform pulled.
    pub platform: String,
    /// When, in seconds since the Unix epoch.
    pub pulled_at: u64,
    /// The trusted key that signed it, if one did.
    pub signed_by: Option<String>,
    /// When no trusted key signed it: what its signatures were instead (absent in
    /// records written before it was kept).
    #[serde(default)]
    pub unsigned_why: Option<String>,
    /// The library's digest (`sha256:HEX`): its own SHA-256.
    pub library_digest: String,
    /// The library's file in the sources' plugins directory.
    pub file: String,
    /// The library's file name as packed.
    pub packed_as: String,
    /// Whether the reference pins a digest.
    pub pinned: bool,
}

impl SourceRecord {
    pub(super) fn new(
        source: &SourceConfig,
        fetched: &plugin_host_oci::Fetched,
        file: String,
    ) -> Self {
        let reference = source.reference();
        Self {
            name: source.display_name(),
            reference: reference.to_owned(),
            digest: fetched.digest.clone(),
            platform: fetched.platform.to_string(),
            pulled_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            signed_by: fetched.signed_by.clone(),
            unsigned_why: fetched.unsigned_why.clone(),
            library_digest: fetched.library_digest.clone(),
            file,
            packed_as: fetched.file_name.clone(),
            pinned: reference.contains("@sha256:"),
        }
    }

    /// Whether this pull is what `source` asks for on `platform`.
    pub(super) fn matches(
        &self,
        source: &SourceConfig,
        platform: &plugin_host_oci::Platform,
    ) -> bool {
        let reference = source.reference();
        self.reference == reference && self.platform == platform.to_string()
    }

    /// The library's SHA-256, hex.
    pub fn library_sha256(&self) -> String {
        self.library_digest.trim_start_matches("sha256:").to_owned()
    }

    /// When it was pulled, RFC 3339.
    pub fn pulled_at_text(&self) -> String {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(self.pulled_at);
        humantime::format_rfc3339_seconds(at).to_string()
    }

    pub(super) fn read(dir: &Path, name: &str) -> Option<Self> {
        let bytes = std::fs::read(dir.join(format!("{name}.json"))).ok()?;
        let record: Self = serde_json::from_slice(&bytes).ok()?;
        // The file it names is in the sources' plugins directory, nowhere else.
        let plain =
            !record.file.is_empty() && !record.file.contains(['/', '\\']) && record.file != "..";
        plain.then_some(record)
    }

    pub(super) fn write(&self, dir: &Path) -> std::io::Result<()> {
        use std::io::Write as _;
        std::fs::create_dir_all(dir)?;
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        file.write_all(&serde_json::to_vec_pretty(self).unwrap_or_default())?;
        file.persist(dir.join(format!("{}.json", self.name)))
            .map(drop)
            .map_err(|e| e.error)
    }
}
