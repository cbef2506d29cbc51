//! Waiting for an event (a state, a log line, a metric) instead of sleeping and hoping.
//!
//! Every wait polls with a short pause and gives up after [`DEADLINE`], far more than any
//! event here needs on an idle machine, so a loaded machine only makes a test slower.

use std::time::{Duration, Instant};

/// How long a test waits for an event before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The pause between two looks.
const POLL: Duration = Duration::from_millis(10);

/// Looks at `probe` until it returns `Some`, for at most [`DEADLINE`]; panics naming
/// `what` if it never does.
pub fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(Instant::now() < deadline, "waited {DEADLINE:?} for {what}");
        std::thread::sleep(POLL);
    }
}

/// [`wait_for`] from async code: the pause does not block the runtime.
pub async fn wait_for_async<T, F>(what: &str, mut probe: impl FnMut() -> F) -> T
where
    F: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "waited {DEADLINE:?} for {what}");
        tokio::time::sleep(POLL).await;
    }
}
