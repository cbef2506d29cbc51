//! What a component knows of the call it serves: its deadline, whether its caller has
//! gone, and the caller's trace. Read it through [`crate::Request`]:
//!
//! ```
//! use plugin_api::{json_reply, Component, PluginError, Request};
//!
//! struct Backtest;
//!
//! impl Component for Backtest {
//!     fn call(&self, request: Request<'_>) -> Result<Vec<u8>, PluginError> {
//!         let mut replayed = 0u64;
//!         for _day in 0..250 {
//!             // Cheap (an atomic load): poll it in every long loop, and stop early once
//!             // nobody waits for the answer.
//!             request.check_cancelled()?;
//!             replayed += 1;
//!         }
//!         json_reply(&replayed)
//!     }
//! }
//!
//! let call = plugin_api::testing::TestCall::new();
//! call.cancel();
//! let err = Backtest.call(Request::new("run", b"").with_context(&call)).unwrap_err();
//! assert_eq!(err.kind(), "cancelled");
//! ```
//!
//! Since plugin-api 0.1.3. In an older host (or a request made without one) a call has no
//! deadline, is never cancelled and is not traced.

use std::time::{Duration, Instant};

use abi_stable::std_types::RStr;

use crate::ffi::CallContextObj;

/// The context of one call, as the host (or a test) gives it. Implemented by the host's
/// object behind [`crate::ffi::CallContextRef`] and by [`crate::testing::TestCall`].
pub trait CallContext: Sync {
    /// Time left until the call's deadline (zero once it has passed); `None` when the
    /// call has none.
    fn remaining(&self) -> Option<Duration>;

    /// Whether the caller has gone (timed out, disconnected, dropped its stream, or the
    /// host is stopping).
    fn is_cancelled(&self) -> bool;

    /// The caller's W3C trace context, if the call is traced.
    fn trace(&self) -> Option<TraceContext<'_>>;
}

impl CallContext for crate::ffi::CallContextRef<'_> {
    fn remaining(&self) -> Option<Duration> {
        match self.remaining_nanos() {
            u64::MAX => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }

    fn is_cancelled(&self) -> bool {
        CallContextObj::is_cancelled(self)
    }

    fn trace(&self) -> Option<TraceContext<'_>> {
        let parent: RStr<'_> = self.traceparent();
        if parent.is_empty() {
            // An untraced call (most): one call across the boundary, not two.
            return None;
        }
        TraceContext::parse(parent.as_str(), self.tracestate().as_str())
    }
}

/// A W3C trace context (`traceparent` and `tracestate`), borrowed from the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext<'a> {
    traceparent: &'a str,
    tracestate: &'a str,
}

impl<'a> TraceContext<'a> {
    /// A trace context from its two headers; `None` unless `traceparent` is a valid
    /// version-00 one (`00-` 32 hex digits `-` 16 hex digits `-` 2 hex digits, ids not
    /// all zero).
    pub fn parse(traceparent: &'a str, tracestate: &'a str) -> Option<Self> {
        parse_traceparent(traceparent)?;
        Some(Self {
            traceparent,
            tracestate,
        })
    }

    /// The `traceparent` header, as received.
    pub fn traceparent(&self) -> &'a str {
        self.traceparent
    }

    /// The `tracestate` header (often empty).
    pub fn tracestate(&self) -> &'a str {
        self.tracestate
    }

    /// The trace id: 32 lowercase hex digits.
    pub fn trace_id(&self) -> &'a str {
        &self.traceparent[3..35]
    }

    /// The id of the span that made this call (the host's span for it): 16 hex digits.
    pub fn parent_span_id(&self) -> &'a str {
        &self.traceparent[36..52]
    }

    /// Whether the caller samples this trace (its flags' low bit).
    pub fn sampled(&self) -> bool {
        u8::from_str_radix(&self.traceparent[53..55], 16).is_ok_and(|flags| flags & 1 == 1)
    }
}

/// The trace id and parent span id of a version-00 `traceparent`, if it is one.
pub(crate) fn parse_traceparent(header: &str) -> Option<([u8; 16], [u8; 8])> {
    let bytes = header.as_bytes();
    if bytes.len() != 55 || !header.starts_with("00-") || bytes[35] != b'-' || bytes[52] != b'-' {
        return None;
    }
    let trace = hex_bytes::<16>(&header[3..35])?;
    let span = hex_bytes::<8>(&header[36..52])?;
    hex_bytes::<1>(&header[53..55])?;
    (trace != [0; 16] && span != [0; 8]).then_some((trace, span))
}

fn hex_bytes<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let high = hex_digit(pair[0])?;
        let low = hex_digit(pair[1])?;
        *byte = high << 4 | low;
    }
    Some(out)
}

fn hex_digit(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    }
}

/// The deadline `remaining` from now.
pub(crate) fn deadline_from(remaining: Duration) -> Instant {
    Instant::now()
        .checked_add(remaining)
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_traceparent_parses_and_anything_else_does_not() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let trace = TraceContext::parse(header, "vendor=1").unwrap();
        assert_eq!(trace.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(trace.parent_span_id(), "00f067aa0ba902b7");
        assert!(trace.sampled());
        assert_eq!(trace.tracestate(), "vendor=1");
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad, "").is_none(), "{bad:?} parsed");
        }
    }
}
