//! OCI image layout directories: `oci-layout`, `index.json` naming each tag, and
//! `blobs/sha256/HEX`. `plugin-host pack` writes one; a `oci-layout = "DIR:tag"` source
//! reads one.

use std::{
    io,
    path::{Path, PathBuf},
};

use oci_client::manifest::OciImageIndex;
use serde_json::json;

use crate::{build::Blob, Built, INDEX_MEDIA_TYPE};

/// The annotation of `index.json` that names a tag.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The most of a small file read whole: a layout's `index.json`, a Docker config file, a
/// key file (the distribution spec asks registries to take manifests of 4 MiB).
pub(crate) const SMALL_FILE_AT_MOST: u64 = 4 << 20;

/// A layout directory could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// The file system refused.
    #[error("OCI layout {path}: {error}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        error: io::Error,
    },
    /// `index.json` is not an image index.
    #[error("OCI layout {path}: index.json is not an OCI image index: {error}")]
    Index {
        /// The layout directory.
        path: PathBuf,
        /// What the parser said.
        error: serde_json::Error,
    },
    /// No such tag.
    #[error("OCI layout {path} has no tag {tag:?} (it has: {present})")]
    NoTag {
        /// The layout directory.
        path: PathBuf,
        /// The tag asked for.
        tag: String,
        /// The tags it has, comma-separated.
        present: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> LayoutError + '_ {
    move |error| LayoutError::Io {
        path: path.to_owned(),
        error,
    }
}

/// Where blob `digest` lives in layout `dir`.
pub(crate) fn blob_path(dir: &Path, digest: &str) -> PathBuf {
    let (algorithm, hex) = digest.split_once(':').unwrap_or(("sha256", digest));
    dir.join("blobs").join(algorithm).join(hex)
}

/// Writes `built` into layout `dir` (created if missing) under `tag`, keeping its other
/// tags; a tag already there now names this artifact.
///
/// # Errors
///
/// The directory cannot be written, or its `index.json` is not an image index.
pub fn pack_layout(dir: &Path, tag: &str, built: &Built) -> Result<(), LayoutError> {
    std::fs::create_dir_all(dir.join("blobs/sha256")).map_err(io_error(dir))?;
    write_atomically(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let all = built
        .blobs
        .iter()
        .chain(&built.manifests)
        .chain([&built.index]);
    for blob in all {
        let path = blob_path(dir, &blob.digest);
        if !path.exists() {
            write_atomically(&path, &blob.bytes)?;
        }
    }
    let mut index = read_index(dir)?.map_or_else(
        || json!({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}),
        |index| serde_json::to_value(index).unwrap_or_default(),
    );
    let entry = entry(&built.index, tag);
    if let Some(manifests) = index["manifests"].as_array_mut() {
        manifests.retain(|m| m["annotations"][REF_NAME].as_str() != Some(tag));
        manifests.push(entry);
    }
    let bytes = serde_json::to_vec_pretty(&index).unwrap_or_default();
    write_atomically(&dir.join("index.json"), &bytes)
}

fn entry(index: &Blob, tag: &str) -> serde_json::Value {
    json!({
        "mediaType": index.media_type,
        "digest": index.digest,
        "size": index.bytes.len(),
        "annotations": { REF_NAME: tag },
    })
}

/// `index.json` of `dir`, `None` when there is none yet.
fn read_index(dir: &Path) -> Result<Option<OciImageIndex>, LayoutError> {
    let path = dir.join("index.json");
    match crate::capped::read_file_of_at_most(&path, SMALL_FILE_AT_MOST) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|error| LayoutError::Index {
                path: dir.to_owned(),
                error,
            }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(LayoutError::Io { path, error }),
    }
}

/// The digest tag `tag` names in layout `dir` (a `sha256:` digest names itself).
pub(crate) fn resolve(dir: &Path, tag: &str) -> Result<String, LayoutError> {
    if tag.starts_with("sha256:") {
        return Ok(tag.to_owned());
    }
    let index = read_index(dir)?.ok_or_else(|| LayoutError::Io {
        path: dir.join("index.json"),
        error: io::ErrorKind::NotFound.into(),
    })?;
    let tag_of = |m: &oci_client::manifest::ImageIndexEntry| {
        m.annotations
            .as_ref()
            .and_then(|a| a.get(REF_NAME))
            .cloned()
    };
    if let Some(found) = index
        .manifests
        .iter()
        .find(|m| tag_of(m).as_deref() == Some(tag))
    {
        return Ok(found.digest.clone());
    }
    let present: Vec<String> = index.manifests.iter().filter_map(tag_of).collect();
    Err(LayoutError::NoTag {
        path: dir.to_owned(),
        tag: tag.to_owned(),
        present: if present.is_empty() {
            "none".to_owned()
        } else {
            present.join(", ")
        },
    })
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader sees all
/// of it or nothing.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), LayoutError> {
    use std::io::Write as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io_error(dir))?;
    file.write_all(bytes)
        .and_then(|()| file.as_file().sync_all())
        .map_err(io_error(path))?;
    file.persist(path).map_err(|e| LayoutError::Io {
        path: path.to_owned(),
        error: e.error,
    })?;
    Ok(())
}
