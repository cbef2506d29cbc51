//! Where plugins' log records land: the host's `tracing`, tagged with plugin and component,
//! under a per-component rate limit.
//!
//! A plugin that logs in a tight loop must not fill the disk or drown the host's own
//! records. Each component has a token bucket (`[limits] log_records_per_second`, with a
//! burst); records past it are dropped and counted, and a "suppressed N records" line
//! says so once the component is back under its rate or at the next periodic flush.

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Instant,
};

use abi_stable::std_types::RStr;
use parking_lot::Mutex;
use plugin_api::ffi::{LogLevel, LogSink, SpanRecord, TraceIds};

use crate::{fault::PLUGIN_TEXT_AT_MOST, names::printable, util::cut_to};

/// The target of every record a plugin logs: `RUST_LOG=plugin=debug` filters them.
pub const PLUGIN_LOG_TARGET: &str = "plugin";

/// Records per second and burst for one component; `per_second == 0` means no limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LogRate {
    pub(crate) per_second: u32,
    pub(crate) burst: u32,
}

struct Bucket {
    rate: LogRate,
    tokens: f64,
    refilled: Instant,
    /// Records dropped since the last "suppressed" line.
    pending: u64,
}

impl Bucket {
    /// A full bucket, as of `now`.
    fn at(rate: LogRate, now: Instant) -> Self {
        Self {
            rate,
            tokens: f64::from(rate.burst.max(1)),
            refilled: now,
            pending: 0,
        }
    }

    /// Takes a token if one is left; refills first.
    fn admit(&mut self) -> bool {
        if self.rate.per_second == 0 {
            return true;
        }
        let now = Instant::now();
        let elapsed = now.duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        let capacity = f64::from(self.rate.burst.max(1));
        self.tokens = (self.tokens + elapsed * f64::from(self.rate.per_second)).min(capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.pending += 1;
            false
        }
    }
}

/// A component's bucket and the plugin it belongs to.
type OwnedBucket = (String, Arc<Mutex<Bucket>>);

/// Every component's log bucket, and the count of records dropped.
#[derive(Default)]
pub(crate) struct LogLimits {
    /// Component name -> its plugin and its bucket. Keys come from registration only,
    /// never from what a plugin sends, so the map cannot grow at a plugin's will.
    buckets: Mutex<HashMap<String, OwnedBucket>>,
    /// Per plugin, for records that name no registered component.
    plugin_buckets: Mutex<HashMap<String, Arc<Mutex<Bucket>>>>,
    suppressed: Mutex<HashMap<String, Arc<AtomicU64>>>,
}

impl std::fmt::Debug for LogLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLimits").finish_non_exhaustive()
    }
}

impl LogLimits {
    /// Sets up the bucket of a registered component.
    #[cfg(test)]
    pub(crate) fn register(&self, plugin: &str, component: &str, rate: LogRate) {
        self.register_all(std::iter::once((plugin, component, rate)));
    }

    /// Sets up the buckets of registered components, each `(plugin, component, rate)`:
    /// every map locked and grown once for the lot (a start registers a thousand).
    pub(crate) fn register_all<'a>(
        &self,
        components: impl ExactSizeIterator<Item = (&'a str, &'a str, LogRate)>,
    ) {
        let now = Instant::now();
        let bucket = |rate| Arc::new(Mutex::new(Bucket::at(rate, now)));
        let mut buckets = self.buckets.lock();
        let mut plugin_buckets = self.plugin_buckets.lock();
        let mut suppressed = self.suppressed.lock();
        buckets.reserve(components.len());
        suppressed.reserve(components.len());
        for (plugin, component, rate) in components {
            buckets.insert(component.to_owned(), (plugin.to_owned(), bucket(rate)));
            if !plugin_buckets.contains_key(plugin) {
                plugin_buckets.insert(plugin.to_owned(), bucket(rate));
            }
            if !suppressed.contains_key(component) {
                suppressed.insert(component.to_owned(), Arc::default());
            }
        }
    }

    /// The bucket a record of `plugin` naming `component` counts against, and the
    /// component it is logged under: the one named if it is `plugin`'s own, else none
    /// (a plugin cannot log under another plugin's component).
    fn bucket(&self, plugin: &str, component: &str) -> Option<(String, Arc<Mutex<Bucket>>)> {
        if let Some((owner, bucket)) = self.buckets.lock().get(component) {
            if owner == plugin {
                return Some((component.to_owned(), Arc::clone(bucket)));
            }
        }
        self.plugin_buckets
            .lock()
            .get(plugin)
            .map(|bucket| (String::new(), Arc::clone(bucket)))
    }

    /// Whether `component` is one of `plugin`'s (a plugin's spans cannot name another's).
    fn knows(&self, plugin: &str, component: &str) -> bool {
        self.buckets
            .lock()
            .get(component)
            .is_some_and(|(owner, _)| owner == plugin)
    }

    /// Records of `component` dropped so far.
    pub(crate) fn suppressed_of(&self, component: &str) -> u64 {
        self.suppressed
            .lock()
            .get(component)
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }

    /// Writes a "suppressed N records" line for every component with records dropped
    /// since its last one. The host calls it periodically.
    pub(crate) fn flush(&self) {
        let buckets: Vec<(String, Arc<Mutex<Bucket>>)> = self
            .buckets
            .lock()
            .iter()
            .map(|(name, (_, bucket))| (name.clone(), Arc::clone(bucket)))
            .collect();
        for (component, bucket) in buckets {
            let pending = std::mem::take(&mut bucket.lock().pending);
            report_suppressed(&component, pending);
        }
    }

    /// Whether one more line of what `plugin`'s worker says outside its records (its
    /// standard output and error, its own log frames, which the plugin's code can write
    /// too) fits the plugin's rate; when it does after some did not, their number is said.
    /// Unlimited for a plugin with no component registered.
    pub(crate) fn admit_output(&self, plugin: &str) -> bool {
        let Some(bucket) = self.plugin_buckets.lock().get(plugin).cloned() else {
            return true;
        };
        let pending = {
            let mut bucket = bucket.lock();
            if !bucket.admit() {
                return false;
            }
            std::mem::take(&mut bucket.pending)
        };
        if pending > 0 {
            tracing::warn!(
                target: PLUGIN_LOG_TARGET,
                plugin = %plugin,
                suppressed = pending,
                "suppressed {pending} lines of the plugin's worker output over its rate limit ([limits] log_records_per_second)"
            );
        }
        true
    }

    fn count_suppressed(&self, component: &str) {
        if let Some(counter) = self.suppressed.lock().get(component) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn report_suppressed(component: &str, pending: u64) {
    if pending > 0 {
        tracing::warn!(
            target: PLUGIN_LOG_TARGET,
            component = %component,
            suppressed = pending,
            "suppressed {pending} log records over the component's rate limit ([limits] log_records_per_second)"
        );
    }
}

macro_rules! at_level {
    ($level:expr, $mac:ident!($($args:tt)*)) => {
        match $level {
            LogLevel::Trace => tracing::$mac!(target: "plugin", tracing::Level::TRACE, $($args)*),
            LogLevel::Debug => tracing::$mac!(target: "plugin", tracing::Level::DEBUG, $($args)*),
            LogLevel::Info => tracing::$mac!(target: "plugin", tracing::Level::INFO, $($args)*),
            LogLevel::Warn => tracing::$mac!(target: "plugin", tracing::Level::WARN, $($args)*),
            LogLevel::Error => tracing::$mac!(target: "plugin", tracing::Level::ERROR, $($args)*),
        }
    };
}

/// The lowest level the host records plugin logs at, as a worker process is told it:
/// 0 trace, 1 debug, 2 info, 3 warn, 4 error, 5 none.
pub(crate) fn lowest_enabled_level() -> u8 {
    let levels = [
        LogLevel::Trace,
        LogLevel::Debug,
        LogLevel::Info,
        LogLevel::Warn,
        LogLevel::Error,
    ];
    levels
        .iter()
        .position(|level| at_level!(*level, enabled!()))
        .map_or(5, |index| index as u8)
}

/// The sink one plugin library keeps for its logs and panics: the plugin's name and the
/// shared limits, nothing of any component.
#[derive(Clone)]
pub(crate) struct PluginLogSink {
    pub(crate) plugin: Arc<str>,
    pub(crate) limits: Arc<LogLimits>,
}

impl LogSink for PluginLogSink {
    fn enabled(&self, level: LogLevel) -> bool {
        at_level!(level, enabled!())
    }

    fn log(&self, level: LogLevel, component: RStr<'_>, target: RStr<'_>, message: RStr<'_>) {
        self.record(
            level,
            component.as_str(),
            target.as_str(),
            message.as_str(),
            None,
        );
    }

    fn log_traced(
        &self,
        level: LogLevel,
        component: RStr<'_>,
        target: RStr<'_>,
        message: RStr<'_>,
        trace: TraceIds,
    ) {
        self.record(
            level,
            component.as_str(),
            target.as_str(),
            message.as_str(),
            Some(trace),
        );
    }

    fn wants_spans(&self) -> bool {
        crate::telemetry::enabled()
    }

    fn span(&self, span: SpanRecord<'_>) {
        self.export_span(&span);
    }
}

impl PluginLogSink {
    /// Exports one span of the plugin's code (whose component it names, if it is one of
    /// the plugin's).
    pub(crate) fn export_span(&self, span: &SpanRecord<'_>) {
        let component = span.component.as_str();
        if !self.limits.knows(&self.plugin, component) {
            return;
        }
        crate::telemetry::export_plugin_span(&crate::telemetry::PluginSpan {
            plugin: &self.plugin,
            component,
            trace_id: span.ids.trace_id,
            span_id: span.ids.span_id,
            parent_span_id: span.parent_span_id,
            name: span.name.as_str(),
            target: span.target.as_str(),
            start_unix_nanos: span.start_unix_nanos,
            end_unix_nanos: span.end_unix_nanos,
            fields: span.fields.as_str(),
        });
    }

    /// One record of the plugin's, within its component's rate, with its trace ids if it
    /// was made inside a traced call.
    pub(crate) fn record(
        &self,
        level: LogLevel,
        component: &str,
        target: &str,
        message: &str,
        trace: Option<TraceIds>,
    ) {
        let Some((known, bucket)) = self.limits.bucket(&self.plugin, component) else {
            return;
        };
        let pending = {
            let mut bucket = bucket.lock();
            if !bucket.admit() {
                drop(bucket);
                self.limits.count_suppressed(&known);
                return;
            }
            std::mem::take(&mut bucket.pending)
        };
        report_suppressed(&known, pending);
        // Its own words, as one line each: a line break cannot start a forged record.
        let (target, message) = (one_line(target), one_line(message));
        match trace {
            Some(ids) => {
                let (trace_id, span_id) = crate::telemetry::hex_ids(&ids.trace_id, &ids.span_id);
                at_level!(
                    level,
                    event!(
                        plugin = %self.plugin,
                        component = %known,
                        module = %target,
                        trace_id = %trace_id,
                        span_id = %span_id,
                        "{}",
                        message
                    )
                );
            }
            None => at_level!(
                level,
                event!(
                    plugin = %self.plugin,
                    component = %known,
                    module = %target,
                    "{}",
                    message
                )
            ),
        }
    }
}

/// A log record of a worker's own (its setup, its sandbox), into the host's log with the
/// plugin and the worker's pid; `pid` is `None` before the worker said it.
pub(crate) fn worker_record(
    plugin: &str,
    pid: Option<u32>,
    level: u8,
    target: &str,
    message: &str,
) {
    let message = one_line(message);
    match level {
        0..=2 => {
            tracing::info!(plugin = %plugin, worker = pid, source = %target, "worker: {message}")
        }
        3 => tracing::warn!(plugin = %plugin, worker = pid, source = %target, "worker: {message}"),
        _ => tracing::error!(plugin = %plugin, worker = pid, source = %target, "worker: {message}"),
    }
}

/// A plugin's text as one line of the host's log, cut to [`PLUGIN_TEXT_AT_MOST`]
/// characters: the rate limit bounds records, this their size.
fn one_line(text: &str) -> Cow<'_, str> {
    match cut_to(text, PLUGIN_TEXT_AT_MOST) {
        Cow::Borrowed(text) => printable(text),
        Cow::Owned(short) => Cow::Owned(printable(&short).into_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_admits_its_burst_then_its_rate() {
        let rate = LogRate {
            per_second: 10,
            burst: 5,
        };
        let mut bucket = Bucket::at(rate, Instant::now());
        let admitted = (0..100).filter(|_| bucket.admit()).count();
        assert!((5..=6).contains(&admitted), "{admitted}");
        assert!(bucket.pending >= 94);
        std::thread::sleep(std::time::Duration::from_millis(250));
        assert!(bucket.admit(), "refilled after a quarter second");
    }

    #[test]
    fn a_record_naming_another_plugins_component_is_not_logged_under_it() {
        let limits = Arc::new(LogLimits::default());
        let rate = LogRate {
            per_second: 0,
            burst: 0,
        };
        limits.register("victim", "ledger", rate);
        limits.register("hostile", "hostile", rate);
        let (own, _) = limits.bucket("hostile", "hostile").expect("its own");
        assert_eq!(own, "hostile");
        let (claimed, _) = limits
            .bucket("hostile", "ledger")
            .expect("its plugin's bucket");
        assert_eq!(claimed, "", "another plugin's component is not taken");
        let (theirs, _) = limits.bucket("victim", "ledger").expect("the owner's");
        assert_eq!(theirs, "ledger");
    }

    #[test]
    fn a_zero_rate_is_unlimited() {
        let rate = LogRate {
            per_second: 0,
            burst: 0,
        };
        let mut bucket = Bucket::at(rate, Instant::now());
        assert!((0..10_000).all(|_| bucket.admit()));
    }
}
