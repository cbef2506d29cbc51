//! How a call fails below the coordinator's own errors: the plugin's error, its worker's
//! end, or a reply too large. One type for a call in the host's process and in a
//! worker (`isolation`), which the coordinator turns into a `CallError`.

use plugin_api::PluginError;

/// Why an instance's call failed.
#[derive(Debug)]
pub enum CallFault {
    /// The component's own error (a caught panic included).
    Plugin(PluginError),
    /// Its worker process died or was killed while the call ran.
    Worker(WorkerFault),
    /// Its reply was larger than `[limits] max_reply`.
    ReplyTooLarge {
        /// The reply's size in bytes.
        size: u64,
        /// The limit in bytes.
        limit: u64,
    },
}

impl From<PluginError> for CallFault {
    fn from(err: PluginError) -> Self {
        Self::Plugin(err)
    }
}

/// What happened to a worker process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("its worker process{} for plugin `{plugin}` {reason}", .pid.map(|p| format!(" (pid {p})")).unwrap_or_default())]
pub struct WorkerFault {
    /// The plugin the worker ran.
    pub plugin: String,
    /// The worker's process id; `None` when no worker could be started.
    pub pid: Option<u32>,
    /// What happened: how it ended, and why if the host ended it.
    pub reason: String,
    /// Whether it died, or was killed for breaking the protocol.
    pub kind: FaultKind,
}

/// How a worker failed its calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// It ended: crashed, exited, or killed by the host (a hang, its memory limit).
    Died,
    /// It broke the protocol (a frame that did not decode, was too large, or answered
    /// what was not asked) and was killed for it.
    Protocol,
}

impl FaultKind {
    /// The error kind a call fails with: `worker_died` or `worker_protocol`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Died => "worker_died",
            Self::Protocol => "worker_protocol",
        }
    }
}

/// The most characters the host keeps of each text in a plugin's error (its message, a
/// method or dependency name, a panic's message): one error cannot fill the host's log,
/// an HTTP answer or a terminal. In a worker the frame limit bounds them too; in the
/// host's process nothing else does.
pub const PLUGIN_TEXT_AT_MOST: usize = 16 * 1024;

/// `err` with each of its texts cut to [`PLUGIN_TEXT_AT_MOST`] characters.
pub(crate) fn bounded(mut err: PluginError) -> PluginError {
    use abi_stable::std_types::RString;
    fn cut(text: &mut RString) {
        if let std::borrow::Cow::Owned(short) = crate::util::cut_to(text, PLUGIN_TEXT_AT_MOST) {
            *text = short.into();
        }
    }
    match &mut err {
        PluginError::Failed(text)
        | PluginError::UnknownMethod(text)
        | PluginError::UnknownComponent(text) => cut(text),
        PluginError::BadInput { method, message } => {
            cut(method);
            cut(message);
        }
        PluginError::Dependency { name, message } => {
            cut(name);
            cut(message);
        }
        PluginError::Panicked(report) => {
            cut(&mut report.plugin);
            cut(&mut report.component);
            cut(&mut report.method);
            cut(&mut report.message);
        }
    }
    err
}

#[cfg(test)]
mod tests {
    use plugin_api::PluginError;

    use super::{bounded, PLUGIN_TEXT_AT_MOST};

    #[test]
    fn every_text_of_a_plugins_error_is_cut_to_the_bound() {
        let huge = "é".repeat(PLUGIN_TEXT_AT_MOST * 4);
        let kept = |text: &str| text.chars().count();
        let cut = PLUGIN_TEXT_AT_MOST + "...".len();
        match bounded(PluginError::failed(huge.clone())) {
            PluginError::Failed(text) => assert_eq!(kept(&text), cut),
            other => panic!("{other:?}"),
        }
        match bounded(PluginError::Dependency {
            name: huge.as_str().into(),
            message: "short".into(),
        }) {
            PluginError::Dependency { name, message } => {
                assert_eq!((kept(&name), message.as_str()), (cut, "short"));
            }
            other => panic!("{other:?}"),
        }
        let at_the_bound = "x".repeat(PLUGIN_TEXT_AT_MOST);
        assert_eq!(
            bounded(PluginError::failed(at_the_bound.clone())),
            PluginError::failed(at_the_bound)
        );
    }
}
