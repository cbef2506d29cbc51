//! A registry, through the `oci-client` crate: push an artifact, and the few reads a fetch
//! needs. Credentials come from the Docker config file, as `docker login` writes it.

use std::path::PathBuf;

use bytes::Bytes;
use oci_client::{
    client::{ClientConfig, ClientProtocol},
    errors::OciDistributionError,
    manifest::OciDescriptor,
    secrets::RegistryAuth,
    Client, Reference,
};

use crate::{Built, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};

/// A push failed.
#[derive(Debug, thiserror::Error)]
#[error("push to {reference}: {}", crate::causes(error))]
pub struct PushError {
    /// Where to.
    pub reference: String,
    /// What the registry or the network said.
    pub error: OciDistributionError,
}

/// Registry credentials from `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`
/// (the `auths` entries `docker login` writes; credential helpers are not run).
#[derive(Debug, Default)]
pub struct Credentials {
    auths: serde_json::Map<String, serde_json::Value>,
}

impl Credentials {
    /// Reads the Docker config file; none (or one that does not parse) means anonymous.
    pub fn from_docker_config() -> Self {
        let file = std::env::var_os("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".docker")))
            .map(|dir| dir.join("config.json"));
        file.map_or_else(Self::default, |file| Self::from_file(&file))
    }

    /// Reads a Docker config file; none (or one that does not parse) means anonymous.
    pub fn from_file(file: &std::path::Path) -> Self {
        let auths = std::fs::read(file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
            .and_then(|config| config.get("auths")?.as_object().cloned())
            .unwrap_or_default();
        Self { auths }
    }

    /// The credentials for `registry` (`host:port`), anonymous when none are stored.
    fn for_registry(&self, registry: &str) -> RegistryAuth {
        use base64::{engine::general_purpose::STANDARD, Engine as _};
        let basic = self
            .auths
            .iter()
            .find(|(key, _)| {
                key.trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .trim_end_matches('/')
                    == registry
            })
            .and_then(|(_, entry)| entry.get("auth")?.as_str())
            .and_then(|auth| STANDARD.decode(auth).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|pair| {
                pair.split_once(':')
                    .map(|(u, p)| (u.to_owned(), p.to_owned()))
            });
        basic.map_or(RegistryAuth::Anonymous, |(user, password)| {
            RegistryAuth::Basic(user, password)
        })
    }
}

/// One registry, reached over HTTPS, or plain HTTP when `insecure` (loopback only: the
/// caller checks).
#[derive(Clone)]
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

/// Chooses the TLS library's cryptography for this process (every HTTPS client the host
/// makes needs it chosen once); another part of the program may have chosen already,
/// which is as good.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Registry {
    /// A client for `reference`'s registry.
    pub fn new(reference: &Reference, insecure: bool, credentials: &Credentials) -> Self {
        install_tls_provider();
        let protocol = if insecure {
            ClientProtocol::HttpsExcept(vec![reference.resolve_registry().to_owned()])
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            ..ClientConfig::default()
        });
        Self {
            client,
            auth: credentials.for_registry(reference.resolve_registry()),
        }
    }

    /// The raw bytes of the index or manifest `reference` names.
    pub(crate) async fn manifest(
        &self,
        reference: &Reference,
    ) -> Result<Bytes, OciDistributionError> {
        let accepted = [INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE];
        let (bytes, _) = self
            .client
            .pull_manifest_raw(reference, &self.auth, &accepted)
            .await?;
        Ok(bytes)
    }

    /// Blob `descriptor` of `reference`'s repository, written to `out`; the digest is
    /// verified as the bytes arrive, and a mismatch is an error after the last byte.
    pub(crate) async fn blob<W: tokio::io::AsyncWrite>(
        &self,
        reference: &Reference,
        descriptor: &OciDescriptor,
        out: W,
    ) -> Result<(), OciDistributionError> {
        self.client
            .store_auth_if_needed(reference.resolve_registry(), &self.auth)
            .await;
        self.client.pull_blob(reference, descriptor, out).await
    }
}

/// Pushes `built` to `reference` (a tag): the blobs the registry lacks, the manifests by
/// digest, then the index under the tag. Returns the index's digest.
///
/// # Errors
///
/// [`PushError`]: the registry refused or could not be reached.
pub async fn push(
    registry: &Registry,
    reference: &Reference,
    built: &Built,
) -> Result<String, PushError> {
    let failed = |error| PushError {
        reference: reference.whole(),
        error,
    };
    let client = &registry.client;
    client
        .auth(
            reference,
            &registry.auth,
            oci_client::RegistryOperation::Push,
        )
        .await
        .map_err(failed)?;
    for blob in &built.blobs {
        if !client
            .blob_exists(reference, &blob.digest)
            .await
            .map_err(failed)?
        {
            client
                .push_blob(reference, blob.bytes.clone(), &blob.digest)
                .await
                .map_err(failed)?;
        }
    }
    let by_digest = |digest: &str| reference.clone_with_digest(digest.to_owned());
    for manifest in built.manifests.iter().chain([&built.index]) {
        let target = if std::ptr::eq(manifest, &built.index) {
            reference.clone()
        } else {
            by_digest(&manifest.digest)
        };
        let content_type = manifest.media_type.parse().map_err(|_| {
            failed(OciDistributionError::GenericError(Some(
                "bad media type".into(),
            )))
        })?;
        client
            .push_manifest_raw(&target, manifest.bytes.clone(), content_type)
            .await
            .map_err(failed)?;
    }
    Ok(built.index.digest.clone())
}

#[cfg(test)]
mod tests {
    use oci_client::secrets::RegistryAuth;

    use super::Credentials;

    #[test]
    fn credentials_are_those_docker_login_wrote_for_that_registry_else_anonymous() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        // "user:secret" and "other:pw", as `docker login` writes them.
        let config = r#"{"auths": {"https://registry.example:5000/": {"auth": "dXNlcjpzZWNyZXQ="},
                                    "127.0.0.1:5000": {"auth": "b3RoZXI6cHc="}}}"#;
        std::fs::write(&file, config).unwrap();
        let credentials = Credentials::from_file(&file);
        let basic = |registry| match credentials.for_registry(registry) {
            RegistryAuth::Basic(user, password) => Some((user, password)),
            _ => None,
        };
        assert_eq!(
            basic("registry.example:5000"),
            Some(("user".into(), "secret".into()))
        );
        assert_eq!(basic("127.0.0.1:5000"), Some(("other".into(), "pw".into())));
        assert_eq!(basic("elsewhere:5000"), None);
        assert_eq!(
            Credentials::from_file(&dir.path().join("none.json"))
                .auths
                .len(),
            0
        );
    }
}
