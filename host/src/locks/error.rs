//! Why a lock could not be taken.

use std::time::Duration;

fn cycle_text(cycle: &[(String, String)]) -> String {
    cycle
        .iter()
        .map(|(lock, holder)| format!("`{lock}` <- {holder}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why [`super::LockManager`] refused or gave up on an acquisition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    /// Taking the lock would close a wait-for cycle; nothing waits, this acquire fails now.
    #[error("deadlock refused: {holder} asked for `{lock}`, which would close the cycle {}; take the locks in one order", cycle_text(.cycle))]
    DeadlockDetected {
        /// The lock asked for.
        lock: String,
        /// Who asked.
        holder: String,
        /// The cycle as `(lock, its holder)` pairs: the lock asked for and who holds it,
        /// the lock that holder waits for and who holds that, ... back to the asker.
        cycle: Vec<(String, String)>,
    },
    /// Taking the lock while holding another would invert the global lock order.
    #[error("lock order violation: {holder} asked for `{requested}` while holding `{held}`, but {first_seen}; take `{requested}` first or add both to [locks] order")]
    OrderViolation {
        /// The lock asked for.
        requested: String,
        /// The lock held that must come after it.
        held: String,
        /// Who asked.
        holder: String,
        /// Where the order was established: the configured order, or the holder and time
        /// the opposite order was first observed.
        first_seen: String,
    },
    /// The lock was not free within the timeout.
    #[error("timed out after {} waiting for lock `{lock}` (held by {})", crate::util::for_people(*.waited), .held_by.as_deref().unwrap_or("nobody"))]
    Timeout {
        /// The lock.
        lock: String,
        /// How long the caller waited.
        waited: Duration,
        /// Who held it when the wait ended.
        held_by: Option<String>,
    },
    /// The holder already holds this lock; locks are not re-entrant.
    #[error("{holder} already holds lock `{lock}`; locks are not re-entrant")]
    AlreadyHeld {
        /// The lock.
        lock: String,
        /// The holder.
        holder: String,
    },
    /// Release of a lock the holder does not hold.
    #[error("{holder} does not hold lock `{lock}`")]
    NotHeld {
        /// The lock.
        lock: String,
        /// The would-be holder.
        holder: String,
    },
    /// The name is not usable.
    #[error("lock name `{lock}` is not valid: {}", crate::names::NAME_RULE)]
    InvalidName {
        /// The name.
        lock: String,
    },
}
