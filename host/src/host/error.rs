//! Why a host could not start.

use crate::{
    config::ConfigError, coordinator::RegisterError, discovery::DiscoveryError,
    trust::TrustStoreError,
};

/// Why [`crate::HostBuilder::start`] failed. Bad plugin files never fail a start: they
/// are listed in the catalog with why, and logged.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The config has problems (a config built in code rather than read by
    /// [`crate::config::Config::load`], which refuses these itself).
    #[error(transparent)]
    Config(#[from] ConfigError),
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
