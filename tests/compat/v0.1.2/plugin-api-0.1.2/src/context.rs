//! The host context as a plugin author sees it: config, dependencies, logging.

use std::{sync::Arc, time::Duration};

use abi_stable::std_types::{RSlice, RStr};
use serde::{de::DeserializeOwned, Serialize};

use crate::{
    ffi::{ComponentRef, HostBox, MetricBox, MetricKind},
    PluginError,
};

/// What the host offers one component: its name, its config section and handles to its
/// declared dependencies. Cheap to clone; keep it in the component if you need it later.
///
/// Logging needs no handle: use the `tracing` macros and the records reach the host's log,
/// tagged with the plugin and component.
#[derive(Clone)]
pub struct Context {
    host: HostBox,
}

impl Context {
    /// Wraps the host object passed across the boundary.
    pub fn new(host: HostBox) -> Self {
        Self { host }
    }

    /// The plugin-api version of the host this plugin runs in. A plugin can use what a
    /// later plugin-api added only where the host has it too; a host built before 0.1.1
    /// says "0.1.0".
    pub fn host_api_version(&self) -> String {
        self.host.host_api_version().into()
    }

    /// The name of the component being created.
    pub fn component(&self) -> String {
        self.host.component_name().into()
    }

    /// This component's configuration section (`[components.NAME.config]` in the host's
    /// TOML file), deserialised. A component without a section gets `T` from `{}`.
    ///
    /// # Errors
    ///
    /// [`PluginError::Failed`] naming the component when the section does not fit `T`.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, PluginError> {
        let json = self.host.config_json();
        serde_json::from_str(json.as_str()).map_err(|err| {
            PluginError::failed(format!(
                "config of component `{}` is invalid: {err}",
                self.component()
            ))
        })
    }

    /// Takes the host's named lock `name`, waiting up to `timeout` (`None`: the lock's
    /// configured timeout). The lock is released when the returned guard is dropped.
    ///
    /// Locks are shared by every component of every plugin, under the host's global lock
    /// order: an acquisition that would deadlock or invert the order fails at once. A lock
    /// belongs to the call that took it (or, outside any call, to the thread): two
    /// concurrent calls of this component queue for it like any two callers. A lock still
    /// held when its call returns is released by the host and counted as leaked.
    ///
    /// # Errors
    ///
    /// [`PluginError::Failed`] naming the lock: timeout, order violation or deadlock.
    pub fn lock(&self, name: &str, timeout: Option<Duration>) -> Result<HostLock, PluginError> {
        let timeout_ms = timeout.map_or(0, |t| {
            u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)
        });
        let token = self
            .host
            .lock(RStr::from_str(name), timeout_ms)
            .into_result()?;
        Ok(HostLock {
            host: self.host.clone(),
            name: name.to_owned(),
            token,
        })
    }

    /// A counter exported by the host as `plugins_NAME_total{plugin, component}` (plugin
    /// metrics live under `plugins_`, apart from the host's own `plugin_host_` families).
    /// Keep the handle: recording is one call and one atomic add on the host side.
    ///
    /// # Errors
    ///
    /// [`PluginError::Failed`] when the name is invalid (names ending in `_total`,
    /// `_count`, `_sum` or `_bucket` are refused), taken by a histogram, or the plugin's
    /// metric cap is reached.
    pub fn counter(&self, name: &str, help: &str) -> Result<MetricCounter, PluginError> {
        self.metric(MetricKind::Counter, name, help, &[])
            .map(MetricCounter)
    }

    /// A histogram (values in base units) exported by the host as
    /// `plugins_NAME{plugin, component}`. Its buckets follow the name's unit: `_seconds`
    /// gets latency buckets (50 µs to 60 s), `_bytes` powers of four from 1 KiB to 16 GiB;
    /// other names get the latency buckets. Use [`Self::histogram_with_buckets`] to choose.
    ///
    /// # Errors
    ///
    /// [`PluginError::Failed`] when the name is invalid, taken by a counter, or the
    /// plugin's metric cap is reached.
    pub fn histogram(&self, name: &str, help: &str) -> Result<MetricHistogram, PluginError> {
        self.histogram_with_buckets(name, help, &[])
    }

    /// A histogram with the given bucket upper bounds (rising, at most 64).
    ///
    /// # Errors
    ///
    /// As [`Self::histogram`], and when the buckets do not rise.
    pub fn histogram_with_buckets(
        &self,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<MetricHistogram, PluginError> {
        self.metric(MetricKind::Histogram, name, help, buckets)
            .map(MetricHistogram)
    }

    fn metric(
        &self,
        kind: MetricKind,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<MetricBox, PluginError> {
        self.host
            .metric(
                kind,
                RStr::from_str(name),
                RStr::from_str(help),
                RSlice::from_slice(buckets),
            )
            .into_result()
    }

    /// A handle to `name`, which must be one of this component's declared dependencies.
    ///
    /// # Errors
    ///
    /// [`PluginError::Dependency`] when `name` was not declared or is not available.
    pub fn dependency(&self, name: &str) -> Result<Dependency, PluginError> {
        self.host
            .dependency(RStr::from_str(name))
            .into_option()
            .map(|handle| Dependency {
                name: name.to_owned(),
                handle: Arc::new(handle),
            })
            .ok_or_else(|| {
                PluginError::dependency(
                    name,
                    "not available: declare it in the component's dependencies",
                )
            })
    }
}

/// A counter owned by the host.
#[derive(Clone)]
pub struct MetricCounter(MetricBox);

impl MetricCounter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.record(n as f64);
    }
}

/// A histogram owned by the host.
#[derive(Clone)]
pub struct MetricHistogram(MetricBox);

impl MetricHistogram {
    /// Records one value in base units.
    pub fn observe(&self, value: f64) {
        self.0.record(value);
    }
}

/// A held host lock; dropping it releases the lock.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct HostLock {
    host: HostBox,
    name: String,
    token: u64,
}

impl HostLock {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for HostLock {
    fn drop(&mut self) {
        // Fails only if the host already released it (its call ended or timed out).
        let _ = self.host.unlock(self.token);
    }
}

/// A handle to another component this one depends on.
#[derive(Clone)]
pub struct Dependency {
    name: String,
    handle: Arc<ComponentRef>,
}

impl Dependency {
    /// The dependency's component name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Calls `method` with raw input bytes.
    ///
    /// # Errors
    ///
    /// Whatever the dependency returns, as [`PluginError::Dependency`].
    pub fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, PluginError> {
        self.handle
            .call(RStr::from_str(method), RSlice::from_slice(input))
            .into_result()
            .map(Vec::from)
            .map_err(|err| PluginError::dependency(&self.name, format!("{method}: {err}")))
    }

    /// Calls `method` with a JSON request and parses the JSON reply.
    ///
    /// # Errors
    ///
    /// [`PluginError::Dependency`] when the call fails or either side is not valid JSON.
    pub fn call_json<Req, Resp>(&self, method: &str, request: &Req) -> Result<Resp, PluginError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let input =
            serde_json::to_vec(request).map_err(|err| PluginError::dependency(&self.name, err))?;
        let output = self.call(method, &input)?;
        serde_json::from_slice(&output).map_err(|err| {
            PluginError::dependency(&self.name, format!("{method}: reply is not valid: {err}"))
        })
    }
}
