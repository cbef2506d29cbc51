//! Building an artifact in memory: the config, layers, manifests and index, each a blob
//! with its digest, in the order a registry must receive them.

use bytes::Bytes;
use serde_json::json;

use crate::{
    sha256_digest, Platform, Signer, ARTIFACT_TYPE, CONFIG_MEDIA_TYPE, INDEX_MEDIA_TYPE,
    LIBRARY_MEDIA_TYPE, MANIFEST_MEDIA_TYPE, SIGNATURE_ANNOTATION, TITLE_ANNOTATION,
};

/// One library of a plugin, for one platform.
#[derive(Debug, Clone)]
pub struct PluginFile {
    /// Its file name (`libmarket_data.so`), kept as the layer's title.
    pub file_name: String,
    /// The library, as built.
    pub library: Bytes,
    /// What it was built for.
    pub platform: Platform,
}

/// One blob: what it is, its digest and its bytes.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Its media type.
    pub media_type: String,
    /// `sha256:HEX` of `bytes`.
    pub digest: String,
    /// The content.
    pub bytes: Bytes,
}

impl Blob {
    fn new(media_type: &str, bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        Self {
            media_type: media_type.to_owned(),
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    fn json(media_type: &str, value: &serde_json::Value) -> Self {
        Self::new(media_type, serde_json::to_vec(value).unwrap_or_default())
    }

    fn descriptor(&self) -> serde_json::Value {
        json!({"mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len()})
    }
}

/// An artifact built in memory.
#[derive(Debug, Clone)]
pub struct Built {
    /// The image index, which a tag names.
    pub index: Blob,
    /// The manifests, one per platform.
    pub manifests: Vec<Blob>,
    /// The config and the libraries.
    pub blobs: Vec<Blob>,
}

/// Why an artifact could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// Two files for one platform.
    #[error("two libraries for platform {0}: an artifact holds one per platform")]
    SamePlatform(Platform),
    /// No file at all.
    #[error("no library to pack")]
    Empty,
}

impl Built {
    /// The artifact of `description` (the plugin's description as the scanner reads it,
    /// JSON) and its libraries, each manifest signed by every signer.
    ///
    /// # Errors
    ///
    /// [`BuildError`].
    pub fn new(
        description: &[u8],
        files: &[PluginFile],
        signers: &[Signer],
    ) -> Result<Self, BuildError> {
        if files.is_empty() {
            return Err(BuildError::Empty);
        }
        let config = Blob::new(CONFIG_MEDIA_TYPE, description.to_vec());
        let mut blobs = vec![config.clone()];
        let mut manifests = Vec::new();
        let mut entries = Vec::new();
        let mut platforms = Vec::new();
        for file in files {
            if platforms.contains(&file.platform) {
                return Err(BuildError::SamePlatform(file.platform.clone()));
            }
            platforms.push(file.platform.clone());
            let layer = Blob::new(LIBRARY_MEDIA_TYPE, file.library.clone());
            let mut layer_descriptor = layer.descriptor();
            layer_descriptor["annotations"] = json!({ TITLE_ANNOTATION: file.file_name });
            let manifest = Blob::json(
                MANIFEST_MEDIA_TYPE,
                &json!({
                    "schemaVersion": 2,
                    "mediaType": MANIFEST_MEDIA_TYPE,
                    "artifactType": ARTIFACT_TYPE,
                    "config": config.descriptor(),
                    "layers": [layer_descriptor],
                }),
            );
            let mut entry = manifest.descriptor();
            entry["platform"] =
                json!({"os": file.platform.os, "architecture": file.platform.architecture});
            entry["artifactType"] = json!(ARTIFACT_TYPE);
            if !signers.is_empty() {
                let signatures: Vec<String> =
                    signers.iter().map(|s| s.sign(&manifest.digest)).collect();
                entry["annotations"] = json!({ SIGNATURE_ANNOTATION: signatures.join(",") });
            }
            entries.push(entry);
            blobs.push(layer);
            manifests.push(manifest);
        }
        let index = Blob::json(
            INDEX_MEDIA_TYPE,
            &json!({
                "schemaVersion": 2,
                "mediaType": INDEX_MEDIA_TYPE,
                "artifactType": ARTIFACT_TYPE,
                "manifests": entries,
                "annotations": index_annotations(description),
            }),
        );
        Ok(Self {
            index,
            manifests,
            blobs,
        })
    }
}

/// The plugin's name and version as the standard annotations, for `skopeo inspect` and
/// registry browsers.
fn index_annotations(description: &[u8]) -> serde_json::Value {
    let value: serde_json::Value = serde_json::from_slice(description).unwrap_or_default();
    let mut annotations = serde_json::Map::new();
    for (key, field) in [
        (TITLE_ANNOTATION, "name"),
        ("org.opencontainers.image.version", "version"),
    ] {
        if let Some(text) = value.get(field).and_then(|v| v.as_str()) {
            annotations.insert(key.to_owned(), json!(text));
        }
    }
    serde_json::Value::Object(annotations)
}

#[cfg(test)]
impl Blob {
    /// A blob of hand-made bytes, for tests that forge one.
    pub(crate) fn forged(media_type: &str, text: String) -> Self {
        Self::new(media_type, text.into_bytes())
    }
}
