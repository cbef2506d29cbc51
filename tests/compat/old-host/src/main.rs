//! What a host built against plugin-api 0.1.0 does with a plugin file, and nothing more:
//! abi_stable's version and layout checks against the 0.1.0 root module, the manifest,
//! `create` with a minimal host context, one call. It proves that plugins built against a
//! later plugin-api still load in a host that does not need what is new.
//!
//! `old-host FILE COMPONENT METHOD JSON` prints the plugin's name and the reply, or the
//! error, and exits 1 on failure.

use abi_stable::{
    library::lib_header_from_path,
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RResult, RSlice, RStr, RString},
};
use plugin_api::ffi::{
    ComponentRef, HostApi, HostApi_TO, LogLevel, LogSink, LogSinkBox, LogSink_TO, MetricBox,
    MetricKind, PluginRootRef,
};
use plugin_api::PluginError;

#[derive(Clone)]
struct OldHost(String);

#[derive(Clone)]
struct StderrSink;

impl LogSink for StderrSink {
    fn enabled(&self, _level: LogLevel) -> bool {
        true
    }

    fn log(&self, level: LogLevel, component: RStr<'_>, target: RStr<'_>, message: RStr<'_>) {
        eprintln!("{level:?} {component} {target}: {message}");
    }
}

impl HostApi for OldHost {
    fn component_name(&self) -> RString {
        self.0.as_str().into()
    }

    fn log_sink(&self) -> LogSinkBox {
        LogSink_TO::from_ptr(RArc::new(StderrSink), TD_Opaque)
    }

    fn config_json(&self) -> RString {
        "{}".into()
    }

    fn dependency(&self, _name: RStr<'_>) -> ROption<ComponentRef> {
        ROption::RNone
    }

    fn lock(&self, name: RStr<'_>, _timeout_ms: u64) -> RResult<u64, PluginError> {
        RResult::RErr(PluginError::failed(format!("this old host has no lock `{name}`")))
    }

    fn unlock(&self, _token: u64) -> RResult<(), PluginError> {
        RResult::ROk(())
    }

    fn metric(
        &self,
        _kind: MetricKind,
        name: RStr<'_>,
        _help: RStr<'_>,
        _buckets: RSlice<'_, f64>,
    ) -> RResult<MetricBox, PluginError> {
        RResult::RErr(PluginError::failed(format!("this old host has no metric `{name}`")))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [file, component, method, input] = args.as_slice() else {
        eprintln!("usage: old-host FILE COMPONENT METHOD JSON");
        std::process::exit(2);
    };
    match run(file, component, method, input) {
        Ok((plugin, reply)) => println!("{plugin} {reply}"),
        Err(err) => {
            eprintln!("old host: {err}");
            std::process::exit(1);
        }
    }
}

fn run(file: &str, component: &str, method: &str, input: &str) -> Result<(String, String), String> {
    let header = lib_header_from_path(file.as_ref()).map_err(|e| e.to_string())?;
    let root = header
        .init_root_module::<PluginRootRef>()
        .map_err(|e| e.to_string())?;
    let manifest = (root.manifest())().into_result().map_err(|e| e.to_string())?;
    let host = HostApi_TO::from_ptr(RArc::new(OldHost(component.to_owned())), TD_Opaque);
    let instance = (root.create())(component.into(), host)
        .into_result()
        .map_err(|e| e.to_string())?;
    let reply = instance
        .call(method.into(), input.as_bytes().into())
        .into_result()
        .map_err(|e| e.to_string())?;
    Ok((
        manifest.name.to_string(),
        String::from_utf8_lossy(&reply).into_owned(),
    ))
}
