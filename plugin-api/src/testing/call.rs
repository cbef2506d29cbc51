//! A call's context for tests.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

/// A call's context for tests: a deadline, a cancel switch and a trace, as the host gives
/// them to [`crate::Request`]. Share it with another thread to cancel a running call.
///
/// ```
/// use std::time::Duration;
/// use plugin_api::{testing::TestCall, Request};
///
/// let call = TestCall::new().with_timeout(Duration::from_secs(1));
/// let request = Request::new("price", b"").with_context(&call);
/// assert!(request.remaining().unwrap() <= Duration::from_secs(1));
/// assert!(!request.is_cancelled());
/// call.cancel();
/// assert!(request.is_cancelled());
/// ```
#[derive(Debug, Default)]
pub struct TestCall {
    cancelled: AtomicBool,
    deadline: Option<Instant>,
    traceparent: String,
    tracestate: String,
}

impl TestCall {
    /// A call with no deadline, not cancelled, not traced.
    pub fn new() -> Self {
        Self::default()
    }

    /// The call's deadline is `timeout` from now.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.deadline = Instant::now().checked_add(timeout);
        self
    }

    /// The call carries this W3C trace context.
    pub fn with_trace(mut self, traceparent: &str, tracestate: &str) -> Self {
        self.traceparent = traceparent.to_owned();
        self.tracestate = tracestate.to_owned();
        self
    }

    /// The caller goes away: the call's `is_cancelled` says so from now on.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::Release);
    }
}

impl crate::CallContext for TestCall {
    fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    fn trace(&self) -> Option<crate::TraceContext<'_>> {
        crate::TraceContext::parse(&self.traceparent, &self.tracestate)
    }
}
