//! The trace a C call runs in, and the spans its code opens inside it
//! (`ph_host.span_begin` / `span_end`): kept on the thread that serves the call, so that
//! the records it logs carry the innermost open span, and sent to the host as finished
//! spans (plugin-api's [`SpanRecord`], as a Rust plugin's are) when they end, or when
//! the call returns with them still open.

use std::cell::{Cell, RefCell};

use abi_stable::std_types::RStr;
use plugin_api::ffi::{LogSinkBox, SpanRecord, TraceIds};

/// Spans open at once on one thread; past it `span_begin` records nothing.
const MAX_OPEN: usize = 64;

/// The longest span name kept, in bytes.
const MAX_NAME: usize = 128;

/// A span C code opened and has not ended.
struct OpenSpan {
    ids: TraceIds,
    parent: [u8; 8],
    name: String,
    plugin: String,
    component: String,
    start_unix_nanos: u64,
    sink: LogSinkBox,
}

thread_local! {
    /// The trace of the traced C call running on this thread.
    static CALL_TRACE: Cell<Option<TraceIds>> = const { Cell::new(None) };
    /// The spans open on this thread, innermost last; those of the call running now
    /// start at `CALL_BASE` (below it: the calls it was made from, waiting).
    static OPEN: RefCell<Vec<OpenSpan>> = const { RefCell::new(Vec::new()) };
    static CALL_BASE: Cell<usize> = const { Cell::new(0) };
}

/// The trace a C call runs in, on this thread until dropped (the previous one then
/// returns: calls nest through dependencies); spans the call left open end with it.
pub(super) struct TraceScope {
    outer: Option<TraceIds>,
    outer_base: usize,
}

impl TraceScope {
    /// Enters the trace of a call that carries `traceparent` (sampled: as plugin-api's
    /// records, an unsampled call's are not tied to a trace).
    pub(super) fn enter(traceparent: &str) -> Self {
        let ids = plugin_api::TraceContext::parse(traceparent, "")
            .filter(plugin_api::TraceContext::sampled)
            .and_then(|trace| {
                Some(TraceIds {
                    trace_id: hex(trace.trace_id())?,
                    span_id: hex(trace.parent_span_id())?,
                })
            });
        let depth = OPEN.with(|open| open.borrow().len());
        Self {
            outer: CALL_TRACE.replace(ids),
            outer_base: CALL_BASE.replace(depth),
        }
    }
}

impl Drop for TraceScope {
    fn drop(&mut self) {
        end_from(CALL_BASE.get());
        CALL_TRACE.set(self.outer);
        CALL_BASE.set(self.outer_base);
    }
}

/// Where what happens now on this thread sits in a trace: the innermost span the C call
/// running here opened, else the call's own span; `None` outside a traced call.
pub(super) fn current_trace() -> Option<TraceIds> {
    let call = CALL_TRACE.get()?;
    let base = CALL_BASE.get();
    OPEN.with(|open| {
        let open = open.borrow();
        Some(open.get(base..)?.last().map_or(call, |span| span.ids))
    })
}

/// Opens span `name` of `component` (of `plugin`) in the traced call running on this
/// thread; its handle, or 0 when nothing is recorded.
pub(super) fn begin(sink: &LogSinkBox, plugin: &str, component: &str, name: &str) -> u64 {
    let Some(above) = current_trace() else {
        return 0;
    };
    if !sink.wants_spans() || OPEN.with(|open| open.borrow().len()) >= MAX_OPEN {
        return 0;
    }
    let span_id = new_span_id();
    let mut cut = name.len().min(MAX_NAME);
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    let span = OpenSpan {
        ids: TraceIds {
            trace_id: above.trace_id,
            span_id,
        },
        parent: above.span_id,
        name: name[..cut].to_owned(),
        plugin: plugin.to_owned(),
        component: component.to_owned(),
        start_unix_nanos: unix_nanos(),
        sink: sink.clone(),
    };
    OPEN.with(|open| open.borrow_mut().push(span));
    u64::from_be_bytes(span_id)
}

/// Ends the span with handle `handle` and those opened after it, if the call running
/// on this thread opened it; anything else is ignored.
pub(super) fn end(handle: u64) {
    if handle == 0 {
        return;
    }
    let base = CALL_BASE.get();
    let at = OPEN.with(|open| {
        let open = open.borrow();
        open.iter()
            .skip(base)
            .position(|span| u64::from_be_bytes(span.ids.span_id) == handle)
    });
    if let Some(at) = at {
        end_from(base + at);
    }
}

/// Ends the spans open on this thread from `from` on, innermost first.
fn end_from(from: usize) {
    let ended: Vec<OpenSpan> = OPEN.with(|open| {
        let mut open = open.borrow_mut();
        let from = from.min(open.len());
        open.drain(from..).rev().collect()
    });
    let end = unix_nanos();
    for span in ended {
        span.sink.span(SpanRecord {
            ids: span.ids,
            parent_span_id: span.parent,
            name: RStr::from_str(&span.name),
            target: RStr::from_str(&span.plugin),
            component: RStr::from_str(&span.component),
            start_unix_nanos: span.start_unix_nanos,
            end_unix_nanos: end,
            fields: RStr::from_str(""),
        });
    }
}

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A fresh, random, non-zero span id.
fn new_span_id() -> [u8; 8] {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(unix_nanos());
    (hasher.finish() | 1).to_be_bytes()
}

/// `N` bytes from `2N` hex digits.
fn hex<const N: usize>(digits: &str) -> Option<[u8; N]> {
    let mut out = [0u8; N];
    for (at, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(digits.get(2 * at..2 * at + 2)?, 16).ok()?;
    }
    Some(out)
}
