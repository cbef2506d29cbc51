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
