//! The lifecycle states of a component, as everyone outside the coordinator sees them.

use serde::Serialize;

/// The lifecycle of a component.
///
/// - `Registered`: known, never initialised (or stopped at shutdown).
/// - `Initializing`: dependencies or `create` are running; callers wait for the one init.
/// - `Ready`: an instance answers calls.
/// - `Failed`: `create` or a dependency failed; retried by a later `get` after a backoff.
/// - `TimedOut`: `create` outlived its timeout; its thread was abandoned, a late result is
///   dropped; retried like `Failed`.
/// - `Evicted`: the instance was dropped to free memory; the next `get` creates a new one.
/// - `Quarantined`: ready, but `quarantine_after` of its calls timed out and still run;
///   calls fail fast until they return.
/// - `Stopped`: stopped by shutdown; not initialised again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComponentState {
    /// Known, not initialised.
    Registered,
    /// Being initialised.
    Initializing,
    /// Answering calls.
    Ready,
    /// The last initialisation failed.
    Failed,
    /// The last initialisation timed out.
    TimedOut,
    /// Dropped to free memory; re-initialisable.
    Evicted,
    /// Ready, but too many abandoned calls still run; calls fail fast.
    Quarantined,
    /// Stopped at shutdown.
    Stopped,
}

impl ComponentState {
    /// Every state, in lifecycle order.
    pub const ALL: [Self; 8] = [
        Self::Registered,
        Self::Initializing,
        Self::Ready,
        Self::Failed,
        Self::TimedOut,
        Self::Evicted,
        Self::Quarantined,
        Self::Stopped,
    ];

    /// The state's name, as in JSON and metrics labels (`timed_out`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "registered",
            Self::Initializing => "initializing",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::TimedOut => "timed_out",
            Self::Evicted => "evicted",
            Self::Quarantined => "quarantined",
            Self::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for ComponentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ComponentState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}
