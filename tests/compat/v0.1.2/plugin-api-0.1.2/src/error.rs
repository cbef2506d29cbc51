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

    /// A failure of kind `kind` (`snake_case`, such as `not_found`, `unavailable`,
    /// `permission_denied`), for kinds the enum does not have. The enum's layout is fixed
    /// for the whole 0.1 line (a new variant would break every compiled plugin), so the
    /// kind travels in a [`Self::Failed`] message as `[kind] message`: a host that knows
    /// the kind reads it with [`Self::kind`] (and answers HTTP with a fitting status), and
    /// any host, however old, still shows the whole text.
    ///
    /// ```
    /// use plugin_api::PluginError;
    ///
    /// let err = PluginError::with_kind("not_found", "no bars for NOPE");
    /// assert_eq!(err.kind(), "not_found");
    /// assert_eq!(err.to_string(), "[not_found] no bars for NOPE");
    /// ```
    pub fn with_kind(kind: &str, message: impl fmt::Display) -> Self {
        if valid_kind(kind) {
            Self::Failed(format!("[{kind}] {message}").into())
        } else {
            Self::failed(message)
        }
    }

    /// The kind of failure, `snake_case`: the variant's name, or the kind given to
    /// [`Self::with_kind`].
    pub fn kind(&self) -> &str {
        match self {
            Self::Failed(message) => message
                .strip_prefix('[')
                .and_then(|rest| rest.split_once("] "))
                .map(|(kind, _)| kind)
                .filter(|kind| valid_kind(kind))
                .unwrap_or("failed"),
            Self::BadInput { .. } => "bad_input",
            Self::UnknownMethod(_) => "unknown_method",
            Self::UnknownComponent(_) => "unknown_component",
            Self::Dependency { .. } => "dependency",
            Self::Panicked(_) => "panicked",
        }
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

/// Whether `kind` is a kind name: 1-40 characters of `a-z`, `0-9` and `_`, a letter first.
fn valid_kind(kind: &str) -> bool {
    (1..=40).contains(&kind.len())
        && kind.starts_with(|c: char| c.is_ascii_lowercase())
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

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
