//! Fetching one plugin artifact: the index (or a bare manifest), the entry of the wanted
//! platform and its signatures, the manifest, the description, and the library into a
//! content-addressed store. Every digest is checked before anything is kept; the library
//! reaches its place in the store by an atomic rename, and only once its digest matched.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use oci_client::{
    errors::OciDistributionError,
    manifest::{ImageIndexEntry, OciDescriptor, OciImageIndex, OciImageManifest},
    Reference,
};

use crate::{
    capped::Capped,
    layout::{self, blob_path, LayoutError},
    sha256_digest,
    sign::{check, Signed},
    Platform, Registry, TrustedKey, CONFIG_MEDIA_TYPE, INDEX_MEDIA_TYPE, LIBRARY_MEDIA_TYPE,
    SIGNATURE_ANNOTATION, TITLE_ANNOTATION,
};

/// Where an artifact comes from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A registry, and a reference in it (a tag or a digest).
    Registry {
        /// The client.
        registry: Registry,
        /// The reference.
        reference: Reference,
    },
    /// An OCI layout directory, and a tag in it (or a digest).
    Layout {
        /// The directory.
        dir: PathBuf,
        /// The tag.
        tag: String,
    },
}

/// What a fetch wants.
#[derive(Debug, Clone, Copy)]
pub struct Want<'a> {
    /// The platform whose library to fetch.
    pub platform: &'a Platform,
    /// The keys whose signatures count.
    pub keys: &'a [TrustedKey],
    /// Refuse what no trusted key signed.
    pub require_signature: bool,
    /// The content-addressed store: a library lands in `STORE/blobs/sha256/HEX`.
    pub store: &'a Path,
}

/// A fetched artifact.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The digest the reference resolved to (the index's, or the bare manifest's).
    pub digest: String,
    /// The platform manifest's digest: what signatures sign.
    pub manifest_digest: String,
    /// The platform fetched.
    pub platform: Platform,
    /// The plugin's description (the config blob), JSON.
    pub description: Bytes,
    /// The library's file name, as packed.
    pub file_name: String,
    /// The library's digest: its own SHA-256.
    pub library_digest: String,
    /// The library, in the store.
    pub library: PathBuf,
    /// The trusted key that signed it, if one did.
    pub signed_by: Option<String>,
    /// When no trusted key signed it: what its signatures were instead.
    pub unsigned_why: Option<String>,
}

/// Why an artifact was refused or could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The registry refused or could not be reached.
    #[error("{reference}: {}", crate::registry_error(error))]
    Registry {
        /// The reference.
        reference: String,
        /// What the client said.
        error: OciDistributionError,
    },
    /// The layout directory could not be read.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Content does not match its digest.
    #[error("content of {digest} does not match that digest (it hashes to {actual}): refused as tampered")]
    Tampered {
        /// The digest that was asked for.
        digest: String,
        /// What the content hashes to.
        actual: String,
    },
    /// Not a plugin-host artifact, or not one this host reads.
    #[error("{digest} is not a plugin-host plugin artifact: {why}")]
    NotPlugin {
        /// The manifest or index.
        digest: String,
        /// What is wrong with it.
        why: String,
    },
    /// No library for this platform.
    #[error("{digest} has no library for platform {want} (it has: {present}); build the plugin for {want} or set the source's platform")]
    NoPlatform {
        /// The index.
        digest: String,
        /// The platform wanted.
        want: Platform,
        /// The platforms present, comma-separated.
        present: String,
    },
    /// A signature is required and none of a trusted key is there.
    #[error("{digest} is not signed by a trusted key ({found}); require_signature is on and the trusted keys are: {keys}")]
    Unsigned {
        /// The manifest.
        digest: String,
        /// What was found instead, in words.
        found: String,
        /// The trusted keys, `name (id)`.
        keys: String,
    },
    /// A trusted key's signature does not match the manifest.
    #[error("signature by key {key} does not match {digest}: refused as tampered")]
    BadSignature {
        /// The manifest.
        digest: String,
        /// The key, `name (id)`.
        key: String,
    },
    /// The store could not be written.
    #[error("artifact cache {path}: {error}")]
    Store {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        error: std::io::Error,
    },
}

/// What an artifact says of itself, read without its library: the index (or bare
/// manifest), the manifest of the wanted platform with its signatures checked, and the
/// description. What `plugin-host inspect oci://...` shows.
#[derive(Debug, Clone)]
pub struct Described {
    /// The digest the reference resolved to.
    pub digest: String,
    /// The platform manifest's digest.
    pub manifest_digest: String,
    /// The platform.
    pub platform: Platform,
    /// The plugin's description, JSON.
    pub description: Bytes,
    /// The library's file name, as packed.
    pub file_name: String,
    /// The library's descriptor.
    library: OciDescriptor,
    /// The trusted key that signed it, if one did.
    pub signed_by: Option<String>,
    /// When no trusted key signed it: what its signatures were instead.
    pub unsigned_why: Option<String>,
}

impl Described {
    /// The library's digest: its own SHA-256.
    pub fn library_digest(&self) -> &str {
        &self.library.digest
    }

    /// The library's size in bytes, as its descriptor says.
    pub fn library_size(&self) -> u64 {
        u64::try_from(self.library.size).unwrap_or(0)
    }
}

/// Reads what the artifact `origin` names says of itself, for `want`, without pulling
/// its library (`want.store` is not touched).
///
/// # Errors
///
/// As [`fetch`], but for the library itself.
pub async fn describe(origin: &Origin, want: Want<'_>) -> Result<Described, FetchError> {
    let (top, digest) = origin.top().await?;
    let (entry, judged) = choose(&top, &digest, want)?;
    let (manifest_digest, manifest_bytes) = match &entry {
        Some(entry) => (entry.digest.clone(), origin.manifest(&entry.digest).await?),
        None => (digest.clone(), top.clone()),
    };
    let manifest: OciImageManifest = parse(&manifest_bytes, &manifest_digest)?;
    let not_plugin = |why: &str| FetchError::NotPlugin {
        digest: manifest_digest.clone(),
        why: why.to_owned(),
    };
    if manifest.config.media_type != CONFIG_MEDIA_TYPE {
        return Err(not_plugin(&format!(
            "its config is {}",
            manifest.config.media_type
        )));
    }
    let [layer] = manifest.layers.as_slice() else {
        return Err(not_plugin("it must have exactly one layer, the library"));
    };
    if layer.media_type != LIBRARY_MEDIA_TYPE {
        return Err(not_plugin(&format!("its layer is {}", layer.media_type)));
    }
    if !(0..=MAX_LIBRARY).contains(&layer.size) {
        return Err(not_plugin(&format!(
            "its library is said to be {} bytes; at most {MAX_LIBRARY} are taken",
            layer.size
        )));
    }
    let file_name = layer
        .annotations
        .as_ref()
        .and_then(|a| a.get(TITLE_ANNOTATION))
        .filter(|name| is_plain_file_name(name))
        .ok_or_else(|| not_plugin("its layer names no plain file name"))?
        .clone();
    let description = origin
        .small_blob(&manifest.config.digest, MAX_SMALL_BLOB)
        .await?;
    let platform = entry
        .and_then(|e| e.platform)
        .map_or_else(|| want.platform.clone(), |p| platform_of(&p));
    Ok(Described {
        digest,
        manifest_digest,
        platform,
        description,
        file_name,
        library: layer.clone(),
        signed_by: judged.signed_by,
        unsigned_why: judged.unsigned_why,
    })
}

/// Fetches the artifact `origin` names, for `want`: what [`describe`] reads, and the
/// library into the store.
///
/// # Errors
///
/// [`FetchError`]: every refusal names the digest, the platform or the key concerned.
pub async fn fetch(origin: &Origin, want: Want<'_>) -> Result<Fetched, FetchError> {
    let described = describe(origin, want).await?;
    let library = origin.blob_to_store(&described.library, want.store).await?;
    Ok(Fetched {
        library_digest: described.library.digest.clone(),
        digest: described.digest,
        manifest_digest: described.manifest_digest,
        platform: described.platform,
        description: described.description,
        file_name: described.file_name,
        library,
        signed_by: described.signed_by,
        unsigned_why: described.unsigned_why,
    })
}

fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

fn platform_of(platform: &oci_client::manifest::Platform) -> Platform {
    Platform {
        os: platform.os.to_string(),
        architecture: platform.architecture.to_string(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], digest: &str) -> Result<T, FetchError> {
    serde_json::from_slice(bytes).map_err(|error| FetchError::NotPlugin {
        digest: digest.to_owned(),
        why: error.to_string(),
    })
}

/// For an index: the entry of the wanted platform and who signed it. For a bare manifest
/// (`None`): unsigned, so refused when a signature is required.
fn choose(
    top: &[u8],
    digest: &str,
    want: Want<'_>,
) -> Result<(Option<ImageIndexEntry>, Judged), FetchError> {
    let media_type = serde_json::from_slice::<serde_json::Value>(top)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned));
    if media_type.as_deref() != Some(INDEX_MEDIA_TYPE) {
        let signed = check(None, digest, want.keys);
        return judge(signed, digest, want).map(|by| (None, by));
    }
    let index: OciImageIndex = parse(top, digest)?;
    let present = |e: &ImageIndexEntry| e.platform.as_ref().map(platform_of);
    let Some(entry) = index
        .manifests
        .iter()
        .find(|e| present(e).as_ref() == Some(want.platform))
    else {
        let platforms: Vec<String> = index
            .manifests
            .iter()
            .filter_map(present)
            .map(|p| p.to_string())
            .collect();
        return Err(FetchError::NoPlatform {
            digest: digest.to_owned(),
            want: want.platform.clone(),
            present: if platforms.is_empty() {
                "none".into()
            } else {
                platforms.join(", ")
            },
        });
    };
    let annotation = entry
        .annotations
        .as_ref()
        .and_then(|a| a.get(SIGNATURE_ANNOTATION));
    let signed = check(annotation.map(String::as_str), &entry.digest, want.keys);
    judge(signed, &entry.digest, want).map(|by| (Some(entry.clone()), by))
}

/// What was made of one artifact's signatures.
struct Judged {
    /// The trusted key that signed it.
    signed_by: Option<String>,
    /// Else what its signatures were.
    unsigned_why: Option<String>,
}

/// Whether `signed` is acceptable under `want`: a mismatching trusted signature never is.
fn judge(signed: Signed, digest: &str, want: Want<'_>) -> Result<Judged, FetchError> {
    let keys = || {
        let labels: Vec<String> = want.keys.iter().map(TrustedKey::label).collect();
        if labels.is_empty() {
            "none configured".into()
        } else {
            labels.join(", ")
        }
    };
    let unsigned = |found: String| FetchError::Unsigned {
        digest: digest.to_owned(),
        found,
        keys: keys(),
    };
    let why = match signed {
        Signed::By(name) => {
            return Ok(Judged {
                signed_by: Some(name),
                unsigned_why: None,
            })
        }
        Signed::Mismatch(key) => {
            return Err(FetchError::BadSignature {
                digest: digest.to_owned(),
                key,
            })
        }
        Signed::Unsigned => "it has no signature".to_owned(),
        Signed::ByUnknown(ids) => format!(
            "signed only by key {}, which no [[trust.keys]] entry names",
            ids.join(", ")
        ),
    };
    if want.require_signature {
        return Err(unsigned(why));
    }
    Ok(Judged {
        signed_by: None,
        unsigned_why: Some(why),
    })
}

fn verified(bytes: Bytes, digest: &str) -> Result<Bytes, FetchError> {
    let actual = sha256_digest(&bytes);
    if actual == digest {
        Ok(bytes)
    } else {
        Err(FetchError::Tampered {
            digest: digest.to_owned(),
            actual,
        })
    }
}

fn store_error(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |error| FetchError::Store {
        path: path.to_owned(),
        error,
    }
}

impl Origin {
    fn registry_error(reference: &Reference, error: OciDistributionError) -> FetchError {
        FetchError::Registry {
            reference: reference.whole(),
            error,
        }
    }

    /// The bytes the reference names, and their digest (checked against a pinned one).
    async fn top(&self) -> Result<(Bytes, String), FetchError> {
        match self {
            Self::Registry {
                registry,
                reference,
            } => {
                let bytes = registry
                    .manifest(reference)
                    .await
                    .map_err(|e| Self::registry_error(reference, e))?;
                match reference.digest() {
                    Some(digest) => Ok((verified(bytes, digest)?, digest.to_owned())),
                    None => {
                        let digest = sha256_digest(&bytes);
                        Ok((bytes, digest))
                    }
                }
            }
            Self::Layout { dir, tag } => {
                let digest = layout::resolve(dir, tag)?;
                Ok((self.manifest(&digest).await?, digest))
            }
        }
    }

    /// A manifest by digest, verified.
    async fn manifest(&self, digest: &str) -> Result<Bytes, FetchError> {
        match self {
            Self::Registry {
                registry,
                reference,
            } => {
                let by_digest = reference.clone_with_digest(digest.to_owned());
                let bytes = registry
                    .manifest(&by_digest)
                    .await
                    .map_err(|e| Self::registry_error(reference, e))?;
                verified(bytes, digest)
            }
            Self::Layout { .. } => self.small_blob(digest, MAX_SMALL_BLOB).await,
        }
    }

    /// A blob of at most `limit` bytes, into memory, verified.
    async fn small_blob(&self, digest: &str, limit: u64) -> Result<Bytes, FetchError> {
        let bytes = match self {
            Self::Registry {
                registry,
                reference,
            } => {
                let descriptor = OciDescriptor {
                    digest: digest.to_owned(),
                    ..OciDescriptor::default()
                };
                let mut out = Capped::new(Vec::new(), limit);
                registry
                    .blob(reference, &descriptor, &mut out)
                    .await
                    .map_err(|e| Self::registry_error(reference, e))?;
                Bytes::from(out.inner)
            }
            Self::Layout { dir, .. } => {
                let path = blob_path(dir, digest);
                let bytes = crate::capped::read_at_most(&path, limit)
                    .map_err(|error| LayoutError::Io { path, error })?;
                Bytes::from(bytes)
            }
        };
        if bytes.len() as u64 > limit {
            return Err(FetchError::NotPlugin {
                digest: digest.to_owned(),
                why: format!("it is larger than {limit} bytes"),
            });
        }
        verified(bytes, digest)
    }

    /// The library `layer` into `STORE/blobs/sha256/HEX`, unless it is there already: into
    /// a temporary file beside it first, renamed into place once size and digest match.
    async fn blob_to_store(
        &self,
        layer: &OciDescriptor,
        store: &Path,
    ) -> Result<PathBuf, FetchError> {
        let path = blob_path(store, &layer.digest);
        if path.is_file() {
            return Ok(path);
        }
        let dir = path.parent().unwrap_or(store);
        std::fs::create_dir_all(dir).map_err(store_error(dir))?;
        let temporary = tempfile::NamedTempFile::new_in(dir).map_err(store_error(dir))?;
        let size = u64::try_from(layer.size).unwrap_or(0);
        match self {
            Self::Registry {
                registry,
                reference,
            } => {
                let file = tokio::fs::File::from_std(temporary.reopen().map_err(store_error(dir))?);
                let mut out = Capped::new(file, size);
                registry
                    .blob(reference, layer, &mut out)
                    .await
                    .map_err(|error| match error {
                        OciDistributionError::DigestError(_) => FetchError::Tampered {
                            digest: layer.digest.clone(),
                            actual: "something else".into(),
                        },
                        error => Self::registry_error(reference, error),
                    })?;
                tokio::io::AsyncWriteExt::flush(&mut out.inner)
                    .await
                    .map_err(store_error(dir))?;
            }
            Self::Layout { dir: layout, .. } => {
                let source = blob_path(layout, &layer.digest);
                copy_verified(&source, temporary.path(), &layer.digest)?;
            }
        }
        let written = temporary
            .as_file()
            .metadata()
            .map_err(store_error(dir))?
            .len();
        if written != size {
            return Err(FetchError::NotPlugin {
                digest: layer.digest.clone(),
                why: format!("its layer is {written} bytes, its descriptor says {size}"),
            });
        }
        temporary.as_file().sync_all().map_err(store_error(dir))?;
        temporary.persist(&path).map_err(|e| FetchError::Store {
            path: path.clone(),
            error: e.error,
        })?;
        Ok(path)
    }
}

/// The largest library taken (1 GiB): a registry cannot fill the disk by saying more.
const MAX_LIBRARY: i64 = 1 << 30;

/// The largest description or manifest read into memory.
const MAX_SMALL_BLOB: u64 = 4 << 20;

/// Copies `source` to `target`, hashing as it goes; refuses a mismatch.
fn copy_verified(source: &Path, target: &Path, digest: &str) -> Result<(), FetchError> {
    use sha2::Digest as _;
    use std::io::{Read as _, Write as _};
    let mut input = std::fs::File::open(source).map_err(|error| LayoutError::Io {
        path: source.to_owned(),
        error,
    })?;
    let mut output = std::fs::OpenOptions::new()
        .write(true)
        .open(target)
        .map_err(store_error(target))?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 256 << 10];
    loop {
        let n = input.read(&mut buffer).map_err(|error| LayoutError::Io {
            path: source.to_owned(),
            error,
        })?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        output
            .write_all(&buffer[..n])
            .map_err(store_error(target))?;
    }
    let actual = format!("sha256:{}", crate::hex(&hasher.finalize()));
    if actual != digest {
        return Err(FetchError::Tampered {
            digest: digest.to_owned(),
            actual,
        });
    }
    Ok(())
}
