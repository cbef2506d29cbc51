//! Plugins as OCI artifacts.
//!
//! A plugin travels as an OCI image index (one entry per platform) over image manifests of
//! our artifact type:
//!
//! ```text
//! index  application/vnd.oci.image.index.v1+json, artifactType = ARTIFACT_TYPE
//! └─ manifest per platform (platform: os/architecture;
//!    │                      annotation SIGNATURE_ANNOTATION: ed25519 signatures of its digest)
//!    ├─ config  CONFIG_MEDIA_TYPE: the plugin's description (name, version, plugin-api,
//!    │          components, methods) as the scanner reads it, JSON
//!    └─ layer   LIBRARY_MEDIA_TYPE: the library itself, uncompressed, so its digest is the
//!               library's own SHA-256; annotation org.opencontainers.image.title = file name
//! ```
//!
//! The description rides in the config blob, so a host lists and checks an artifact without
//! pulling its library. A signature signs the manifest digest, which pins the config and the
//! library; it sits in the index entry that points at the manifest, because a registry
//! without the referrers API (Debian's `docker-registry` 2.8) has nowhere else to keep it.
//!
//! This crate packs ([`pack_layout`]), pushes ([`push`]) and fetches ([`fetch`]) such
//! artifacts, verifying every digest as the bytes stream and every signature before
//! anything is kept. What the host does with what was fetched (its cache, its sources, its
//! trust) is the host's.

mod build;
mod capped;
mod credentials;
mod fetch;
mod layout;
mod platform;
mod registry;
mod sign;

pub use oci_client::{ParseError as ReferenceError, Reference};

pub use self::{
    build::{Built, PluginFile},
    credentials::Credentials,
    fetch::{describe, fetch, Described, FetchError, Fetched, Origin, Want},
    layout::{pack_layout, LayoutError},
    platform::Platform,
    registry::{install_tls_provider, push, PushError, Registry, DEFAULT_TIMEOUT},
    sign::{KeyError, Signer, TrustedKey},
};

/// The artifact type of a plugin index and manifest.
pub const ARTIFACT_TYPE: &str = "application/vnd.plugin-host.plugin.v1+json";
/// The media type of the config blob: the plugin's description.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.plugin-host.plugin.v1+json";
/// The media type of the layer: the library, as built.
pub const LIBRARY_MEDIA_TYPE: &str = "application/vnd.plugin-host.library.v1";
/// The annotation of an index entry that carries signatures of the manifest digest:
/// `KEYID:BASE64` pairs separated by commas.
pub const SIGNATURE_ANNOTATION: &str = "dev.plugin-host.signatures.ed25519";
/// The standard annotation that names the library file.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";
/// OCI's image index media type.
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
/// OCI's image manifest media type.
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// `sha256:HEX` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex(&sha2::Sha256::digest(bytes)))
}

/// An error and each of its causes whose words it does not already say, joined by `: `
/// (the HTTP client's errors keep the reason, "Connection refused", in a cause).
pub(crate) fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        let said = next.to_string();
        if !text.contains(&said) {
            text = format!("{text}: {said}");
        }
        cause = next.source();
    }
    text
}

/// A registry's error with its causes, and for a refusal of credentials where they come
/// from.
pub(crate) fn registry_error(error: &oci_client::errors::OciDistributionError) -> String {
    use oci_client::errors::OciDistributionError as E;
    let text = causes(error);
    let refused = match error {
        E::UnauthorizedError { .. } | E::AuthenticationFailure(_) => true,
        E::RequestError(err) => err.status().is_some_and(|status| status.as_u16() == 401),
        _ => false,
    };
    let silent = match error {
        E::RequestError(err) => err.is_timeout(),
        _ => false,
    };
    if silent {
        return format!(
            "{text}; the registry stayed silent too long: check that it is up and reachable \
             from here (a source's `timeout` sets how long to wait)"
        );
    }
    match refused {
        true => format!(
            "{text}; log in to the registry (`docker login`), or name a credential helper, in \
             the Docker config file this host reads ($DOCKER_CONFIG/config.json, else \
             ~/.docker/config.json)"
        ),
        false => text,
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut out, byte| {
        let _ = write!(out, "{byte:02x}");
        out
    })
}

#[cfg(test)]
mod tests;
