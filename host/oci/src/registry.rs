//! A registry, through the `oci-client` crate: push an artifact, and the few reads a fetch
//! needs, with the credentials of the Docker config file (`credentials.rs`).

use bytes::Bytes;
use oci_client::{
    client::{ClientConfig, ClientProtocol},
    errors::OciDistributionError,
    manifest::OciDescriptor,
    secrets::RegistryAuth,
    Client, Reference,
};

use crate::{Built, Credentials, INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE};

/// A push failed.
#[derive(Debug, thiserror::Error)]
#[error("push to {reference}: {}", crate::registry_error(error))]
pub struct PushError {
    /// Where to.
    pub reference: String,
    /// What the registry or the network said.
    pub error: OciDistributionError,
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

/// How long a registry may stay silent, by default: to answer a connection, or between two
/// reads of an answer (a slow download that keeps coming is not cut off).
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Registry {
    /// A client for `reference`'s registry, patient for [`DEFAULT_TIMEOUT`].
    pub fn new(reference: &Reference, insecure: bool, credentials: &Credentials) -> Self {
        Self::with_timeout(reference, insecure, credentials, DEFAULT_TIMEOUT)
    }

    /// A client for `reference`'s registry that gives up when the registry stays silent
    /// for `timeout` (connecting, or between two reads), rather than waiting for ever on
    /// one that accepts a connection and never answers.
    pub fn with_timeout(
        reference: &Reference,
        insecure: bool,
        credentials: &Credentials,
        timeout: std::time::Duration,
    ) -> Self {
        install_tls_provider();
        let protocol = if insecure {
            ClientProtocol::HttpsExcept(vec![reference.resolve_registry().to_owned()])
        } else {
            ClientProtocol::Https
        };
        let client = Client::new(ClientConfig {
            protocol,
            read_timeout: Some(timeout),
            connect_timeout: Some(timeout),
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
