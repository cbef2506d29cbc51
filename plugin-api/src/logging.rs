//! Forwards a plugin's `tracing` events into the host's log.
//!
//! A plugin is a separate binary with its own copy of `tracing` and its own global
//! dispatcher, so events a plugin emits would otherwise go nowhere. The export adapters
//! install [`HostLayer`] as the plugin's global subscriber on first contact with the host.
//! The host's own filter decides, per event, what is kept.
//!
//! The static below holds only the host's [`LogSinkBox`], which owns no component state:
//! a static lives as long as the library (forever), so a context or a dependency handle
//! kept there would keep components alive after they are evicted.

use std::{
    cell::RefCell,
    collections::BTreeMap,
    fmt::Write as _,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Mutex, OnceLock,
    },
    time::{SystemTime, UNIX_EPOCH},
};

use abi_stable::std_types::RStr;
use tracing::{
    field::{Field, Visit},
    span,
    subscriber::Interest,
    Event, Level, Metadata, Subscriber,
};
use tracing_subscriber::{layer::Context as LayerContext, prelude::*, Layer};

use crate::ffi::{HostBox, LogLevel, LogSinkBox, SpanRecord, TraceIds};

static SINK: OnceLock<LogSinkBox> = OnceLock::new();

/// The components this thread runs code of, innermost last, and the trace of the call it
/// serves (when traced and sampled: its trace id and the id of the host's span for the
/// call). Entries past `depth` keep their buffers: entering a component allocates nothing
/// once a thread has run one. One thread-local for both, so that a call enters and leaves
/// with one access each (in a `cdylib` every access is a call into the dynamic loader).
struct ComponentStack {
    names: Vec<String>,
    depth: usize,
    trace: Option<TraceIds>,
}

impl ComponentStack {
    fn current(&self) -> &str {
        self.depth
            .checked_sub(1)
            .and_then(|top| self.names.get(top))
            .map_or("", String::as_str)
    }
}

thread_local! {
    static CURRENT_COMPONENT: RefCell<ComponentStack> = const {
        RefCell::new(ComponentStack { names: Vec::new(), depth: 0, trace: None })
    };
}

/// Installs the forwarding subscriber and panic hook once per plugin library.
pub(crate) fn install(host: &HostBox) {
    if SINK.get().is_some() {
        return;
    }
    SINK.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(HostLayer);
        // Fails only if the plugin author installed their own subscriber; theirs wins.
        let _ = tracing::subscriber::set_global_default(subscriber);
        // The library has its own copy of std, so this hook sees only the plugin's panics.
        // They are caught at the boundary and returned as errors; the hook puts the
        // message and location in the host's log instead of raw stderr.
        std::panic::set_hook(Box::new(|info| {
            let Some(sink) = SINK.get() else { return };
            let message = crate::error::panic_message(info.payload());
            let location = info
                .location()
                .map(|l| format!(" at {}:{}", l.file(), l.line()))
                .unwrap_or_default();
            CURRENT_COMPONENT.with(|component| {
                sink.log(
                    LogLevel::Error,
                    RStr::from_str(component.borrow().current()),
                    RStr::from_str("panic"),
                    RStr::from_str(&format!("panicked{location}: {message}")),
                );
            });
        }));
        host.log_sink()
    });
}

/// While alive, records from this thread are attributed to `component`, and, for a call,
/// spans and records made on it belong to the call's trace.
pub(crate) struct ComponentScope {
    /// The trace to put back on exit, when this scope set one.
    restore: Option<Option<TraceIds>>,
    /// Not `Send`: it must end on the thread it began on.
    _thread: std::marker::PhantomData<*const ()>,
}

impl ComponentScope {
    /// Enters `component`'s code outside a call (create, drop): the trace stays.
    pub(crate) fn enter(component: &str) -> Self {
        Self::push(component, None)
    }

    /// Enters a call of `component` in `trace` (none, or not sampled: the call's code
    /// records no spans).
    pub(crate) fn enter_call(component: &str, trace: Option<crate::TraceContext<'_>>) -> Self {
        let ids = trace
            .filter(crate::TraceContext::sampled)
            .and_then(|trace| crate::call::parse_traceparent(trace.traceparent()))
            .map(|(trace_id, span_id)| TraceIds { trace_id, span_id });
        Self::push(component, Some(ids))
    }

    fn push(component: &str, trace: Option<Option<TraceIds>>) -> Self {
        let restore = CURRENT_COMPONENT.with(|current| {
            let mut stack = current.borrow_mut();
            let depth = stack.depth;
            match stack.names.get_mut(depth) {
                Some(name) => {
                    name.clear();
                    name.push_str(component);
                }
                None => stack.names.push(component.to_owned()),
            }
            stack.depth += 1;
            trace.map(|ids| std::mem::replace(&mut stack.trace, ids))
        });
        Self {
            restore,
            _thread: std::marker::PhantomData,
        }
    }
}

impl Drop for ComponentScope {
    fn drop(&mut self) {
        CURRENT_COMPONENT.with(|current| {
            let mut stack = current.borrow_mut();
            stack.depth = stack.depth.saturating_sub(1);
            if let Some(trace) = self.restore {
                stack.trace = trace;
            }
        });
    }
}

fn to_log_level(level: &Level) -> LogLevel {
    match *level {
        Level::TRACE => LogLevel::Trace,
        Level::DEBUG => LogLevel::Debug,
        Level::INFO => LogLevel::Info,
        Level::WARN => LogLevel::Warn,
        Level::ERROR => LogLevel::Error,
    }
}

/// A span of plugin code being recorded, until it closes.
struct OpenSpan {
    ids: TraceIds,
    parent: [u8; 8],
    name: &'static str,
    target: &'static str,
    component: String,
    start: u64,
    fields: String,
}

/// The spans being recorded, by `tracing`'s id. Plain data, bounded: a plugin that
/// leaks spans (never closes them) stops being recorded past the cap, nothing more.
static OPEN_SPANS: Mutex<BTreeMap<u64, OpenSpan>> = Mutex::new(BTreeMap::new());
static OPEN_COUNT: AtomicUsize = AtomicUsize::new(0);
const MAX_OPEN_SPANS: usize = 10_000;

fn open_spans() -> std::sync::MutexGuard<'static, BTreeMap<u64, OpenSpan>> {
    OPEN_SPANS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// A fresh, random, non-zero span id.
fn new_span_id() -> [u8; 8] {
    use std::hash::{BuildHasher, Hasher};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(NEXT.fetch_add(1, Ordering::Relaxed));
    hasher.write_u64(unix_nanos());
    (hasher.finish() | 1).to_be_bytes()
}

/// The trace ids of what happens now on this thread inside span `current` (if it is
/// recorded), else inside the traced call this thread serves.
fn trace_here(current: Option<&span::Id>) -> Option<TraceIds> {
    if OPEN_COUNT.load(Ordering::Relaxed) > 0 {
        if let Some(id) = current {
            if let Some(open) = open_spans().get(&id.into_u64()) {
                return Some(open.ids);
            }
        }
    }
    CURRENT_COMPONENT.with(|current| current.borrow().trace)
}

/// The `tracing` layer that sends every enabled event to the host, and, when the host
/// exports traces, the spans of plugin code inside a traced call.
pub struct HostLayer;

impl<S: Subscriber> Layer<S> for HostLayer {
    fn register_callsite(&self, _metadata: &'static Metadata<'static>) -> Interest {
        // The host's filter can change at run time; ask it on every event.
        Interest::sometimes()
    }

    fn enabled(&self, metadata: &Metadata<'_>, _ctx: LayerContext<'_, S>) -> bool {
        SINK.get()
            .is_some_and(|sink| sink.enabled(to_log_level(metadata.level())))
    }

    fn on_event(&self, event: &Event<'_>, ctx: LayerContext<'_, S>) {
        let Some(sink) = SINK.get() else { return };
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let metadata = event.metadata();
        let current = if event.is_contextual() {
            ctx.current_span().id().cloned()
        } else {
            event.parent().cloned()
        };
        let trace = trace_here(current.as_ref());
        CURRENT_COMPONENT.with(|component| {
            let component = component.borrow();
            let (level, component) = (
                to_log_level(metadata.level()),
                RStr::from_str(component.current()),
            );
            let (target, message) = (
                RStr::from_str(metadata.target()),
                RStr::from_str(&visitor.text),
            );
            match trace {
                Some(ids) => sink.log_traced(level, component, target, message, ids),
                None => sink.log(level, component, target, message),
            }
        });
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: LayerContext<'_, S>) {
        let Some(sink) = SINK.get() else { return };
        let parent = if attrs.is_contextual() {
            ctx.current_span().id().cloned()
        } else {
            attrs.parent().cloned()
        };
        let Some(above) = trace_here(parent.as_ref()) else {
            return;
        };
        if !sink.wants_spans() || OPEN_COUNT.load(Ordering::Relaxed) >= MAX_OPEN_SPANS {
            return;
        }
        let mut fields = MessageVisitor::default();
        attrs.record(&mut fields);
        let metadata = attrs.metadata();
        let open = OpenSpan {
            ids: TraceIds {
                trace_id: above.trace_id,
                span_id: new_span_id(),
            },
            parent: above.span_id,
            name: metadata.name(),
            target: metadata.target(),
            component: CURRENT_COMPONENT.with(|c| c.borrow().current().to_owned()),
            start: unix_nanos(),
            fields: fields.text.trim_start().to_owned(),
        };
        if open_spans().insert(id.into_u64(), open).is_none() {
            OPEN_COUNT.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, _ctx: LayerContext<'_, S>) {
        if OPEN_COUNT.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut fields = MessageVisitor::default();
        values.record(&mut fields);
        if let Some(open) = open_spans().get_mut(&id.into_u64()) {
            open.fields.push_str(&fields.text);
        }
    }

    fn on_close(&self, id: span::Id, _ctx: LayerContext<'_, S>) {
        if OPEN_COUNT.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Some(open) = open_spans().remove(&id.into_u64()) else {
            return;
        };
        OPEN_COUNT.fetch_sub(1, Ordering::Relaxed);
        let Some(sink) = SINK.get() else { return };
        sink.span(SpanRecord {
            ids: open.ids,
            parent_span_id: open.parent,
            name: RStr::from_str(open.name),
            target: RStr::from_str(open.target),
            component: RStr::from_str(&open.component),
            start_unix_nanos: open.start,
            end_unix_nanos: unix_nanos(),
            fields: RStr::from_str(&open.fields),
        });
    }
}

#[derive(Default)]
struct MessageVisitor {
    text: String,
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.text.insert_str(0, value);
        } else {
            let _ = write!(self.text, " {}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.text.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.text, " {}={value:?}", field.name());
        }
    }
}

/// Sends one record to the host's log, if the library has met the host yet.
pub(crate) fn emit(level: LogLevel, component: &str, target: &str, message: &str) {
    if let Some(sink) = SINK.get() {
        sink.log(
            level,
            RStr::from_str(component),
            RStr::from_str(target),
            RStr::from_str(message),
        );
    }
}
