//! What every plugin context shares: the host's services (locks, metrics, log limits,
//! the stop signal) and the caps on what one plugin may create in them.

use std::{
    collections::{HashMap, HashSet},
    sync::{atomic::AtomicBool, Arc},
};

use parking_lot::Mutex;
use plugin_api::PluginError;

use crate::{locks::LockManager, metrics::PluginMetrics, plugin_log::LogLimits};

/// What every plugin context shares: the host's services and the caps on what a plugin
/// may create in them.
pub(crate) struct HostServices {
    pub(crate) locks: LockManager,
    pub(crate) metrics: Arc<PluginMetrics>,
    pub(crate) logs: Arc<LogLimits>,
    locks_per_plugin: usize,
    /// Set when the host stops: every call in flight is cancelled.
    pub(crate) stopping: Arc<AtomicBool>,
    /// Plugin -> the lock names it has used, to cap them.
    lock_names: Mutex<HashMap<String, HashSet<String>>>,
}

impl HostServices {
    pub(crate) fn new(
        locks: LockManager,
        metrics: Arc<PluginMetrics>,
        logs: Arc<LogLimits>,
        locks_per_plugin: usize,
    ) -> Self {
        Self {
            locks,
            metrics,
            logs,
            locks_per_plugin,
            stopping: Arc::default(),
            lock_names: Mutex::default(),
        }
    }

    /// Admits `lock` as one of `plugin`'s lock names, within its cap.
    pub(crate) fn admit_lock_name(&self, plugin: &str, lock: &str) -> Result<(), PluginError> {
        if !crate::names::valid_name(lock) {
            // Refused before it counts or is kept (a name of any length, otherwise, for as
            // long as the host runs): quoted no longer than a valid one.
            return Err(PluginError::failed(format!(
                "lock name `{}` is not valid: {}",
                crate::util::cut_to(lock, 64),
                crate::names::NAME_RULE
            )));
        }
        let mut names = self.lock_names.lock();
        let used = names.entry(plugin.to_owned()).or_default();
        if used.contains(lock) {
            return Ok(());
        }
        if used.len() >= self.locks_per_plugin {
            return Err(PluginError::failed(format!(
                "plugin `{plugin}` already uses {} lock names, its limit; lock `{lock}` is refused (raise [limits] locks_per_plugin, or reuse lock names)",
                used.len()
            )));
        }
        used.insert(lock.to_owned());
        Ok(())
    }
}
