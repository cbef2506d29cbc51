//! ed25519 signatures of a manifest digest: the signing key of `plugin-host push --sign`,
//! the public keys of `[[trust.keys]]`, and the check.
//!
//! A key is known by its id, the first 16 hex digits of the SHA-256 of its public key; a
//! signature annotation lists `ID:BASE64` pairs, one per signing key, so a publisher can
//! sign with the old and the new key while hosts rotate.

use std::path::Path;

use base64::{engine::general_purpose::STANDARD, Engine as _};
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};

/// What is signed: this prefix, then the manifest digest (`sha256:HEX`).
const CONTEXT: &[u8] = b"plugin-host artifact signature v1\0";

/// A key could not be read.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read or written.
    #[error("key file {path}: {error}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The operating system's error.
        error: std::io::Error,
    },
    /// The text is not base64 of 32 bytes.
    #[error("{what} is not base64 of 32 bytes (as `plugin-host keygen` writes it)")]
    Malformed {
        /// Which key, in words.
        what: String,
    },
    /// The system gave no random bytes.
    #[error("no random bytes for a new key: {0}")]
    Random(getrandom::Error),
}

fn decode_32(text: &str, what: impl FnOnce() -> String) -> Result<[u8; 32], KeyError> {
    STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| KeyError::Malformed { what: what() })
}

/// The id of a public key.
fn key_id(key: &VerifyingKey) -> String {
    use sha2::Digest as _;
    crate::hex(&sha2::Sha256::digest(key.as_bytes())[..8])
}

fn message(manifest_digest: &str) -> Vec<u8> {
    [CONTEXT, manifest_digest.as_bytes()].concat()
}

/// A private key that signs artifacts.
pub struct Signer {
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({})", self.key_id())
    }
}

impl Signer {
    /// A new key from the system's random source.
    ///
    /// # Errors
    ///
    /// [`KeyError::Random`].
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(KeyError::Random)?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The key in `path` (base64 of its 32-byte seed).
    ///
    /// # Errors
    ///
    /// The file cannot be read or does not hold a key.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let bytes = crate::capped::read_file_of_at_most(path, crate::layout::SMALL_FILE_AT_MOST)
            .map_err(|error| KeyError::File {
                path: path.to_owned(),
                error,
            })?;
        let text = String::from_utf8_lossy(&bytes);
        let seed = decode_32(&text, || format!("key file {}", path.display()))?;
        Ok(Self {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// Writes the key to a new file `path`, readable by its owner only.
    ///
    /// # Errors
    ///
    /// The file exists or cannot be written.
    pub fn to_file(&self, path: &Path) -> Result<(), KeyError> {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        crate::platform::owner_only(&mut options);
        let text = format!("{}\n", STANDARD.encode(self.key.to_bytes()));
        options
            .open(path)
            .and_then(|mut file| file.write_all(text.as_bytes()))
            .map_err(|error| KeyError::File {
                path: path.to_owned(),
                error,
            })
    }

    /// The public key, base64, as `[[trust.keys]] public` takes it.
    pub fn public_base64(&self) -> String {
        STANDARD.encode(self.key.verifying_key().as_bytes())
    }

    /// The key's id.
    pub fn key_id(&self) -> String {
        key_id(&self.key.verifying_key())
    }

    /// `ID:BASE64` of the signature of `manifest_digest`.
    pub(crate) fn sign(&self, manifest_digest: &str) -> String {
        let signature = self.key.sign(&message(manifest_digest));
        format!(
            "{}:{}",
            self.key_id(),
            STANDARD.encode(signature.to_bytes())
        )
    }
}

/// A public key the host accepts signatures of.
#[derive(Debug, Clone)]
pub struct TrustedKey {
    name: String,
    key: VerifyingKey,
}

impl TrustedKey {
    /// Key `name` from its base64 public key.
    ///
    /// # Errors
    ///
    /// The text is not an ed25519 public key.
    pub fn new(name: &str, public_base64: &str) -> Result<Self, KeyError> {
        let what = || format!("public key {name:?}");
        let bytes = decode_32(public_base64, what)?;
        let key =
            VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::Malformed { what: what() })?;
        Ok(Self {
            name: name.to_owned(),
            key,
        })
    }

    /// Its name in the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its id.
    pub fn id(&self) -> String {
        key_id(&self.key)
    }

    /// `name (id)`, as errors name a key.
    pub fn label(&self) -> String {
        format!("{} ({})", self.name, self.id())
    }
}

/// What the signatures of one manifest say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Signed {
    /// A trusted key signed this very digest: its name.
    By(String),
    /// No signature at all.
    Unsigned,
    /// Only keys the host does not trust signed it: their ids.
    ByUnknown(Vec<String>),
    /// A trusted key's signature does not match this digest: the key's label.
    Mismatch(String),
}

/// Checks the signature annotation `annotation` of `manifest_digest` against `keys`.
pub(crate) fn check(
    annotation: Option<&str>,
    manifest_digest: &str,
    keys: &[TrustedKey],
) -> Signed {
    let pairs: Vec<(&str, &str)> = annotation
        .unwrap_or_default()
        .split(',')
        .filter_map(|pair| pair.trim().split_once(':'))
        .collect();
    if pairs.is_empty() {
        return Signed::Unsigned;
    }
    let message = message(manifest_digest);
    let mut mismatch = None;
    for (id, encoded) in &pairs {
        let Some(key) = keys.iter().find(|key| key.id() == *id) else {
            continue;
        };
        let verified = STANDARD
            .decode(encoded)
            .ok()
            .and_then(|bytes| Signature::from_slice(&bytes).ok())
            .is_some_and(|signature| key.key.verify_strict(&message, &signature).is_ok());
        if verified {
            return Signed::By(key.name.clone());
        }
        mismatch.get_or_insert_with(|| key.label());
    }
    match mismatch {
        Some(label) => Signed::Mismatch(label),
        None => Signed::ByUnknown(pairs.iter().map(|(id, _)| (*id).to_owned()).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::{check, Signed, Signer, TrustedKey};

    const DIGEST: &str = "sha256:0123";

    #[test]
    fn a_signature_verifies_only_for_its_key_and_its_digest() {
        let (old, new) = (Signer::generate().unwrap(), Signer::generate().unwrap());
        let keys = [
            TrustedKey::new("old", &old.public_base64()).unwrap(),
            TrustedKey::new("new", &new.public_base64()).unwrap(),
        ];
        let by_new = new.sign(DIGEST);
        assert_eq!(
            check(Some(&by_new), DIGEST, &keys),
            Signed::By("new".into())
        );
        let both = format!("{},{}", old.sign(DIGEST), by_new);
        assert_eq!(
            check(Some(&both), DIGEST, &keys[1..]),
            Signed::By("new".into())
        );
        assert_eq!(
            check(Some(&by_new), "sha256:4567", &keys),
            Signed::Mismatch(keys[1].label())
        );
        assert_eq!(
            check(Some(&by_new), DIGEST, &keys[..1]),
            Signed::ByUnknown(vec![new.key_id()])
        );
        assert_eq!(check(None, DIGEST, &keys), Signed::Unsigned);
        assert_eq!(check(Some("garbage"), DIGEST, &keys), Signed::Unsigned);
    }

    #[test]
    fn a_key_file_round_trips_and_bad_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let signer = Signer::generate().unwrap();
        signer.to_file(&path).unwrap();
        assert!(
            signer.to_file(&path).is_err(),
            "an existing key is never overwritten"
        );
        assert_eq!(Signer::from_file(&path).unwrap().key_id(), signer.key_id());
        let error = TrustedKey::new("release", "bm90IGEga2V5").unwrap_err();
        assert!(error.to_string().contains("\"release\""), "{error}");
    }
}
