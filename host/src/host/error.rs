//! Why a host could not start.

use crate::{coordinator::RegisterError, discovery::DiscoveryError, trust::TrustStoreError};

/// Why [`crate::HostBuilder::start`] failed. Bad plugin files never fail a start: they
/// are listed in the catalog with why, and logged.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The trust file of `[host] trust = "pinned"` cannot be read.
    #[error(transparent)]
    Trust(#[from] TrustStoreError),
    /// The plugins directory cannot be scanned.
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// A native component given to the builder cannot be registered.
    #[error(transparent)]
    Native(#[from] RegisterError),
    /// `start` was called outside a tokio runtime.
    #[error("a host starts inside a tokio runtime (call it from async code)")]
    NoRuntime,
}
