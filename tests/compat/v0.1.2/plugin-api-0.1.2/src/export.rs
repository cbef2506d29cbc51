//! The adapters behind [`crate::export_plugin!`]: every entry point runs under
//! `catch_unwind`, so no panic ever unwinds into the host (since Rust 1.81 that would abort
//! the whole process).

use std::{
    panic::{catch_unwind, AssertUnwindSafe},
    sync::OnceLock,
};

use abi_stable::{
    prefix_type::PrefixTypeTrait,
    sabi_trait::TD_Opaque,
    std_types::{RResult, RSlice, RStr, RVec},
};

use crate::{
    error::panic_message,
    ffi::{
        ComponentBox, ComponentObj, ComponentObj_TO, HostBox, LogLevel, PluginRoot, PluginRootRef,
    },
    logging::{self, ComponentScope},
    Component, Context, Manifest, Plugin, PluginError, Request,
};

/// The plugin's name, remembered for error messages. One plugin per library.
static PLUGIN_NAME: OnceLock<String> = OnceLock::new();

fn plugin_name<P: Plugin>() -> &'static str {
    PLUGIN_NAME.get_or_init(|| {
        catch_unwind(P::manifest)
            .map(|manifest| manifest.name.into_string())
            .unwrap_or_else(|_| "<unnamed plugin>".to_owned())
    })
}

fn panicked(component: &str, method: &str, payload: &(dyn std::any::Any + Send)) -> PluginError {
    let plugin = PLUGIN_NAME.get().map_or("<unnamed plugin>", String::as_str);
    PluginError::panicked(plugin, component, method, &panic_message(payload))
}

/// Builds the root module for plugin type `P`. Called by [`crate::export_plugin!`].
pub fn root_module<P: Plugin>() -> PluginRootRef {
    PluginRoot {
        manifest: manifest_adapter::<P>,
        create: create_adapter::<P>,
    }
    .leak_into_prefix()
}

/// The body of the [`crate::ffi::DESCRIBE_SYMBOL`] function `export_plugin!` exports:
/// writes plugin `P`'s description into `out` if it fits in `capacity` bytes, and returns
/// its length either way (0 if it could not be made).
///
/// # Safety
///
/// `out` must be valid for writes of `capacity` bytes (or `capacity` must be 0).
#[allow(unsafe_code)]
pub unsafe fn describe_into<P: Plugin>(out: *mut u8, capacity: usize) -> usize {
    let Ok(json) = catch_unwind(|| crate::describe::Description::of::<P>().to_json()) else {
        return 0;
    };
    if json.len() <= capacity && !out.is_null() {
        // SAFETY: the caller gives `capacity` writable bytes at `out`; `json` fits.
        unsafe { std::ptr::copy_nonoverlapping(json.as_ptr(), out, json.len()) };
    }
    json.len()
}

extern "C" fn manifest_adapter<P: Plugin>() -> RResult<Manifest, PluginError> {
    match catch_unwind(P::manifest) {
        Ok(manifest) => {
            let _ = PLUGIN_NAME.set(manifest.name.to_string());
            RResult::ROk(manifest)
        }
        Err(payload) => RResult::RErr(panicked("", "manifest", &*payload)),
    }
}

extern "C" fn create_adapter<P: Plugin>(
    name: RStr<'_>,
    host: HostBox,
) -> RResult<ComponentBox, PluginError> {
    let plugin = plugin_name::<P>();
    logging::install(&host);
    let name = name.as_str();
    let _scope = ComponentScope::enter(name);
    // The context moves into the component (or is dropped with a failed create): nothing
    // else on this side of the boundary keeps it.
    let created = catch_unwind(AssertUnwindSafe(move || {
        P::create(name, Context::new(host))
    }));
    match created {
        Ok(Ok(inner)) => {
            let guarded = Guarded {
                plugin,
                component: name.to_owned(),
                inner: Some(inner),
            };
            RResult::ROk(ComponentObj_TO::from_value(guarded, TD_Opaque))
        }
        Ok(Err(err)) => RResult::RErr(err),
        Err(payload) => RResult::RErr(panicked(name, "create", &*payload)),
    }
}

/// A component instance whose every entry point, drop included, is panic-safe.
struct Guarded {
    plugin: &'static str,
    component: String,
    /// Always `Some` until dropped.
    inner: Option<Box<dyn Component>>,
}

impl ComponentObj for Guarded {
    fn stream(
        &self,
        method: RStr<'_>,
        input: RSlice<'_, u8>,
        sink: crate::ffi::StreamSinkBox,
    ) -> RResult<(), PluginError> {
        let _scope = ComponentScope::enter(&self.component);
        let request = Request::new(method.as_str(), input.as_slice());
        let Some(inner) = self.inner.as_ref() else {
            return RResult::RErr(PluginError::failed("component already shut down"));
        };
        let sink = crate::StreamSink::from_host(sink);
        match catch_unwind(AssertUnwindSafe(|| inner.stream(request, &sink))) {
            Ok(result) => result.into(),
            Err(payload) => RResult::RErr(panicked(&self.component, method.as_str(), &*payload)),
        }
    }

    fn call(&self, method: RStr<'_>, input: RSlice<'_, u8>) -> RResult<RVec<u8>, PluginError> {
        let _scope = ComponentScope::enter(&self.component);
        let request = Request::new(method.as_str(), input.as_slice());
        let Some(inner) = self.inner.as_ref() else {
            return RResult::RErr(PluginError::failed("component already shut down"));
        };
        match catch_unwind(AssertUnwindSafe(|| inner.call(request))) {
            Ok(Ok(bytes)) => RResult::ROk(bytes.into()),
            Ok(Err(err)) => RResult::RErr(err),
            Err(payload) => RResult::RErr(panicked(&self.component, method.as_str(), &*payload)),
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _scope = ComponentScope::enter(&self.component);
        let inner = self.inner.take();
        if let Err(payload) = catch_unwind(AssertUnwindSafe(move || drop(inner))) {
            let message = format!(
                "plugin `{}` panicked while dropping component `{}`: {}",
                self.plugin,
                self.component,
                panic_message(&*payload)
            );
            logging::emit(
                LogLevel::Error,
                &self.component,
                "plugin_api::drop",
                &message,
            );
        }
    }
}

/// Exports a [`Plugin`] implementation as this library's root module.
///
/// The plugin crate must be a `cdylib` and list `abi_stable` as a dependency (the
/// attribute this expands to refers to it by its crate name).
///
/// ```ignore
/// plugin_api::export_plugin!(MyPlugin);
/// ```
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        /// The root module of this plugin library, read by plugin-host.
        #[::abi_stable::export_root_module]
        pub fn plugin_host_root_module() -> $crate::ffi::PluginRootRef {
            $crate::export::root_module::<$plugin>()
        }

        /// This plugin's description, beyond its manifest: see
        /// `plugin_api::ffi::DESCRIBE_SYMBOL`.
        ///
        /// # Safety
        ///
        /// `out` must be valid for writes of `capacity` bytes.
        #[no_mangle]
        pub unsafe extern "C" fn plugin_host_describe_v1(out: *mut u8, capacity: usize) -> usize {
            // SAFETY: the same contract, passed on.
            unsafe { $crate::export::describe_into::<$plugin>(out, capacity) }
        }
    };
}
