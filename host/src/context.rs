//! The host side of the plugin context: what a plugin component can ask of the host.

use std::{collections::HashMap, sync::Arc, time::Duration};

use parking_lot::Mutex;

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RResult, RSlice, RStr, RString, RVec},
};
use plugin_api::{
    ffi::{
        ComponentObj, ComponentObj_TO, ComponentRef, HostApi, HostApi_TO, HostBox, LogLevel,
        MetricBox, MetricKind, MetricObj_TO,
    },
    PluginError,
};

use crate::{
    coordinator::{CallError, ComponentHandle, Dependencies},
    locks::{LockGuard, LockManager},
    metrics::{MetricHandle, PluginMetrics},
};

/// The target of every record a plugin logs: `RUST_LOG=plugin=debug` filters them.
pub const PLUGIN_LOG_TARGET: &str = "plugin";

/// One component's view of the host.
#[derive(Clone)]
pub(crate) struct PluginHostContext {
    plugin: String,
    component: String,
    config_json: String,
    dependencies: HashMap<String, ComponentHandle>,
    locks: LockManager,
    metrics: Arc<PluginMetrics>,
    /// Locks this component holds through the context, by name.
    held: Arc<Mutex<HashMap<String, LockGuard>>>,
}

impl PluginHostContext {
    pub(crate) fn new_box(
        plugin: &str,
        component: &str,
        config: &serde_json::Value,
        dependencies: Dependencies,
        locks: LockManager,
        metrics: Arc<PluginMetrics>,
    ) -> HostBox {
        let context = Self {
            plugin: plugin.to_owned(),
            component: component.to_owned(),
            config_json: config.to_string(),
            dependencies: dependencies.into_map(),
            locks,
            metrics,
            held: Arc::default(),
        };
        HostApi_TO::from_ptr(RArc::new(context), TD_Opaque)
    }
}

macro_rules! at_level {
    ($level:expr, $mac:ident!($($args:tt)*)) => {
        match $level {
            LogLevel::Trace => tracing::$mac!(target: "plugin", tracing::Level::TRACE, $($args)*),
            LogLevel::Debug => tracing::$mac!(target: "plugin", tracing::Level::DEBUG, $($args)*),
            LogLevel::Info => tracing::$mac!(target: "plugin", tracing::Level::INFO, $($args)*),
            LogLevel::Warn => tracing::$mac!(target: "plugin", tracing::Level::WARN, $($args)*),
            LogLevel::Error => tracing::$mac!(target: "plugin", tracing::Level::ERROR, $($args)*),
        }
    };
}

impl HostApi for PluginHostContext {
    fn component_name(&self) -> RString {
        self.component.as_str().into()
    }

    fn log_enabled(&self, level: LogLevel) -> bool {
        at_level!(level, enabled!())
    }

    fn log(&self, level: LogLevel, component: RStr<'_>, target: RStr<'_>, message: RStr<'_>) {
        let component = if component.is_empty() {
            self.component.as_str()
        } else {
            component.as_str()
        };
        at_level!(
            level,
            event!(
                plugin = %self.plugin,
                component = %component,
                module = %target,
                "{}",
                message
            )
        );
    }

    fn config_json(&self) -> RString {
        self.config_json.as_str().into()
    }

    fn dependency(&self, name: RStr<'_>) -> ROption<ComponentRef> {
        self.dependencies
            .get(name.as_str())
            .map(|handle| {
                ComponentObj_TO::from_ptr(RArc::new(DependencyAdapter(handle.clone())), TD_Opaque)
            })
            .into()
    }

    fn lock(&self, name: RStr<'_>, timeout_ms: u64) -> RResult<(), PluginError> {
        let timeout = match timeout_ms {
            0 => self.locks.timeout_of(name.as_str()),
            ms => Duration::from_millis(ms),
        };
        match self
            .locks
            .acquire_blocking(name.as_str(), &self.component, timeout)
        {
            Ok(guard) => {
                self.held.lock().insert(name.as_str().to_owned(), guard);
                RResult::ROk(())
            }
            Err(err) => RResult::RErr(PluginError::failed(err)),
        }
    }

    fn metric(
        &self,
        kind: MetricKind,
        name: RStr<'_>,
        help: RStr<'_>,
    ) -> RResult<MetricBox, PluginError> {
        self.metrics
            .register(
                kind,
                name.as_str(),
                help.as_str(),
                &self.plugin,
                &self.component,
            )
            .map(|metric| MetricObj_TO::from_ptr(RArc::new(MetricHandle(metric)), TD_Opaque))
            .map_err(PluginError::failed)
            .into()
    }

    fn unlock(&self, name: RStr<'_>) -> RResult<(), PluginError> {
        match self.held.lock().remove(name.as_str()) {
            Some(guard) => guard.release().map_err(PluginError::failed).into(),
            None => RResult::RErr(PluginError::failed(format!(
                "component `{}` does not hold lock `{name}`",
                self.component
            ))),
        }
    }
}

/// Exposes a host-side handle to a plugin as an FFI component object.
struct DependencyAdapter(ComponentHandle);

impl ComponentObj for DependencyAdapter {
    fn call(&self, method: RStr<'_>, input: RSlice<'_, u8>) -> RResult<RVec<u8>, PluginError> {
        match self.0.call(method.as_str(), input.as_slice()) {
            Ok(bytes) => RResult::ROk(bytes.into()),
            Err(CallError::Failed { source, .. }) => RResult::RErr(source),
            Err(other) => RResult::RErr(PluginError::dependency(self.0.name(), other)),
        }
    }
}
