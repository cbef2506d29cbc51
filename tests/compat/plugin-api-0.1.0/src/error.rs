//! The error type that crosses the plugin boundary.

use std::fmt;

use abi_stable::{
    std_types::{RBox, RString},
    StableAbi,
};

/// An error returned by a plugin to the host, or by the host to a plugin.
///
/// It crosses the FFI boundary, so it is a `#[repr(u8)]` [`StableAbi`] enum of owned,
/// FFI-safe strings. Plugin authors build it with the constructors below; the host adds
/// the plugin and component it came from.
#[repr(u8)]
#[derive(Debug, Clone, PartialEq, Eq, StableAbi)]
pub enum PluginError {
    /// The component ran and failed; the message says why.
    Failed(RString),
    /// The input of a call could not be understood.
    BadInput {
        /// The method that was called.
        method: RString,
        /// What was wrong with the input.
        message: RString,
    },
    /// The component has no method of that name.
    UnknownMethod(RString),
    /// The plugin does not provide a component of that name.
    UnknownComponent(RString),
    /// A dependency could not be reached or failed.
    Dependency {
        /// The dependency's component name.
        name: RString,
        /// What went wrong.
        message: RString,
    },
    /// Plugin code panicked; the panic was caught at the boundary.
    Panicked(RBox<PanicReport>),
}

/// Where a caught panic happened and what it said.
#[repr(C)]
#[derive(Debug, Clone, PartialEq, Eq, StableAbi)]
pub struct PanicReport {
    /// The plugin whose code panicked; empty for a native component.
    pub plugin: RString,
    /// The component, or empty when the panic was outside any component.
    pub component: RString,
    /// The entry point or method that was running (`create`, `manifest`, a method name).
    pub method: RString,
    /// The panic message.
    pub message: RString,
}

impl PluginError {
    /// A plain failure with a message.
    pub fn failed(message: impl fmt::Display) -> Self {
        Self::Failed(message.to_string().into())
    }

    /// The input to `method` was not acceptable.
    pub fn bad_input(method: &str, message: impl fmt::Display) -> Self {
        Self::BadInput {
            method: method.into(),
            message: message.to_string().into(),
        }
    }

    /// The component has no method called `method`.
    pub fn unknown_method(method: &str) -> Self {
        Self::UnknownMethod(method.into())
    }

    /// A caught panic.
    pub fn panicked(plugin: &str, component: &str, method: &str, message: &str) -> Self {
        Self::Panicked(RBox::new(PanicReport {
            plugin: plugin.into(),
            component: component.into(),
            method: method.into(),
            message: message.into(),
        }))
    }

    /// A dependency failed or is unavailable.
    pub fn dependency(name: &str, message: impl fmt::Display) -> Self {
        Self::Dependency {
            name: name.into(),
            message: message.to_string().into(),
        }
    }
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Failed(message) => f.write_str(message),
            Self::BadInput { method, message } => {
                write!(f, "bad input for method `{method}`: {message}")
            }
            Self::UnknownMethod(method) => write!(f, "unknown method `{method}`"),
            Self::UnknownComponent(name) => {
                write!(f, "this plugin provides no component `{name}`")
            }
            Self::Dependency { name, message } => write!(f, "dependency `{name}`: {message}"),
            Self::Panicked(report) => {
                // A native component (the host's own code) has no plugin.
                if report.plugin.is_empty() {
                    write!(f, "native component `{}` panicked", report.component)?;
                } else {
                    write!(f, "plugin `{}` panicked", report.plugin)?;
                    if !report.component.is_empty() {
                        write!(f, " in component `{}`", report.component)?;
                    }
                }
                write!(f, " during `{}`: {}", report.method, report.message)
            }
        }
    }
}

impl std::error::Error for PluginError {}

/// Turns a panic payload (from `catch_unwind`) into the message it carried.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panic with a non-string payload".to_owned()
    }
}
