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

use std::{cell::RefCell, fmt::Write as _, sync::OnceLock};

use abi_stable::std_types::RStr;
use tracing::{
    field::{Field, Visit},
    subscriber::Interest,
    Event, Level, Metadata, Subscriber,
};
use tracing_subscriber::{layer::Context as LayerContext, prelude::*, Layer};

use crate::ffi::{HostBox, LogLevel, LogSinkBox};

static SINK: OnceLock<LogSinkBox> = OnceLock::new();

/// The components this thread runs code of, innermost last. Entries past `depth` keep
/// their buffers: entering a component allocates nothing once a thread has run one.
struct ComponentStack {
    names: Vec<String>,
    depth: usize,
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
        RefCell::new(ComponentStack { names: Vec::new(), depth: 0 })
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

/// While alive, records from this thread are attributed to `component`.
pub(crate) struct ComponentScope {
    /// Not `Send`: it must end on the thread it began on.
    _thread: std::marker::PhantomData<*const ()>,
}

impl ComponentScope {
    pub(crate) fn enter(component: &str) -> Self {
        CURRENT_COMPONENT.with(|current| {
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
        });
        Self {
            _thread: std::marker::PhantomData,
        }
    }
}

impl Drop for ComponentScope {
    fn drop(&mut self) {
        CURRENT_COMPONENT.with(|current| {
            let mut stack = current.borrow_mut();
            stack.depth = stack.depth.saturating_sub(1);
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

/// The `tracing` layer that sends every enabled event to the host.
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

    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let Some(sink) = SINK.get() else { return };
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let metadata = event.metadata();
        CURRENT_COMPONENT.with(|component| {
            sink.log(
                to_log_level(metadata.level()),
                RStr::from_str(component.borrow().current()),
                RStr::from_str(metadata.target()),
                RStr::from_str(&visitor.text),
            );
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
