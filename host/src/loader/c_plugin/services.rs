//! What the host offers a C component (`ph_host`): logs, its config, calls to its
//! dependencies, locks and metrics, each a plain C function over the component's
//! plugin-api host context. No callback lets a panic unwind into the plugin's frames.

use std::{
    collections::HashMap,
    ffi::c_void,
    panic::{catch_unwind, AssertUnwindSafe},
};

use abi_stable::std_types::{RSlice, RStr};
use parking_lot::Mutex;
use plugin_api::{
    ffi::{HostBox, LogLevel, LogSinkBox, MetricBox, MetricKind},
    PluginError,
};

use super::PhStr;

/// `ph_out`: where bytes go, a write callback of the receiving side.
#[repr(C)]
pub(crate) struct PhOut {
    ctx: *mut c_void,
    write: Option<unsafe extern "C" fn(*mut c_void, *const c_void, usize)>,
}

impl PhOut {
    /// The offset of its last field.
    pub(crate) const LAST: usize = std::mem::offset_of!(PhOut, write);
}

/// Bytes a plugin writes to the host: its answer, or its error message.
#[derive(Default)]
pub(crate) struct Out(Vec<u8>);

impl Out {
    /// The `ph_out` that appends here; valid while `self` stays where it is.
    pub(crate) fn ph_out(&mut self) -> PhOut {
        PhOut {
            ctx: std::ptr::from_mut(&mut self.0).cast(),
            write: Some(append),
        }
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    fn text(self) -> String {
        String::from_utf8_lossy(&self.0).into_owned()
    }
}

unsafe extern "C" fn append(ctx: *mut c_void, bytes: *const c_void, len: usize) {
    let piece = PhStr {
        ptr: bytes.cast(),
        len,
    };
    // SAFETY: `ctx` is the vector of an `Out` that outlives the call it was lent to, and
    // the plugin passes `len` readable bytes.
    unsafe { (*ctx.cast::<Vec<u8>>()).extend_from_slice(piece.bytes()) };
}

/// Writes `bytes` to the plugin's `out` (nothing if it gave none).
fn deliver(out: *const PhOut, bytes: &[u8]) {
    if out.is_null() {
        return;
    }
    // SAFETY: the plugin passes a `ph_out` valid for this call.
    let out = unsafe { &*out };
    if let Some(write) = out.write {
        // SAFETY: the plugin's own callback, with its own context and readable bytes.
        unsafe { write(out.ctx, bytes.as_ptr().cast(), bytes.len()) };
    }
}

/// `ph_host`.
#[repr(C)]
pub(crate) struct PhHost {
    size: u32,
    abi: u32,
    ctx: *mut c_void,
    log: extern "C" fn(*mut c_void, i32, PhStr),
    config: extern "C" fn(*mut c_void, *const PhOut),
    call: extern "C" fn(*mut c_void, PhStr, PhStr, PhStr, *const PhOut) -> i32,
    lock: extern "C" fn(*mut c_void, PhStr, u64, *mut u64, *const PhOut) -> i32,
    unlock: extern "C" fn(*mut c_void, u64) -> i32,
    metric: extern "C" fn(*mut c_void, i32, PhStr, f64),
    span_begin: extern "C" fn(*mut c_void, PhStr) -> u64,
    span_end: extern "C" fn(*mut c_void, u64),
}

impl PhHost {
    /// The offset of its last field.
    pub(crate) const LAST: usize = std::mem::offset_of!(PhHost, span_end);
}

/// One component's host services, and the `ph_host` that points at them.
pub(crate) struct Services {
    plugin: String,
    component: String,
    host: HostBox,
    sink: LogSinkBox,
    /// Metrics by kind and name, registered on first use (`None`: the host refused it).
    metrics: Mutex<HashMap<(i32, String), Option<MetricBox>>>,
    ph_host: PhHost,
}

impl Services {
    /// The services of `component` of `plugin` over `host`, boxed so that the `ph_host`
    /// inside can point at them.
    pub(crate) fn new(plugin: &str, component: &str, host: HostBox) -> Box<Self> {
        let mut services = Box::new(Self {
            plugin: plugin.to_owned(),
            component: component.to_owned(),
            sink: host.log_sink(),
            host,
            metrics: Mutex::new(HashMap::new()),
            ph_host: PhHost {
                size: std::mem::size_of::<PhHost>() as u32,
                abi: super::ABI,
                ctx: std::ptr::null_mut(),
                log,
                config,
                call,
                lock,
                unlock,
                metric,
                span_begin,
                span_end,
            },
        });
        services.ph_host.ctx = std::ptr::from_ref::<Self>(&services).cast_mut().cast();
        services
    }

    /// The `ph_host` to hand the plugin: valid while `self` is.
    pub(crate) fn ph_host(&self) -> *const PhHost {
        &self.ph_host
    }

    fn record(&self, kind: i32, name: &str, value: f64) {
        let mut metrics = self.metrics.lock();
        let metric = metrics.entry((kind, name.to_owned())).or_insert_with(|| {
            let kind = if kind == 1 {
                MetricKind::Histogram
            } else {
                MetricKind::Counter
            };
            let registered = self.host.metric(
                kind,
                RStr::from_str(name),
                RStr::from_str(""),
                RSlice::from_slice(&[]),
            );
            match registered.into_result() {
                Ok(metric) => Some(metric),
                Err(err) => {
                    self.warn(&format!("metric `{name}` not recorded: {err}"));
                    None
                }
            }
        });
        if let Some(metric) = metric {
            metric.record(value);
        }
    }

    fn warn(&self, message: &str) {
        self.sink.log(
            LogLevel::Warn,
            RStr::from_str(&self.component),
            RStr::from_str(&self.plugin),
            RStr::from_str(message),
        );
    }
}

/// The services behind a `ph_host.ctx`.
///
/// # Safety
///
/// `ctx` is the `ctx` of a `ph_host` made by [`Services::new`], still alive.
unsafe fn services<'a>(ctx: *mut c_void) -> &'a Services {
    // SAFETY: as the contract says.
    unsafe { &*ctx.cast::<Services>() }
}

/// Runs `f`, a panic counted as `fallback`: nothing unwinds into the plugin.
fn guarded<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

extern "C" fn log(ctx: *mut c_void, level: i32, message: PhStr) {
    // SAFETY: the plugin passes its `ph_host.ctx`, and a message of readable bytes.
    let (services, message) = unsafe { (services(ctx), message.text()) };
    let level = match level {
        ..=1 => LogLevel::Error,
        2 => LogLevel::Warn,
        3 => LogLevel::Info,
        4 => LogLevel::Debug,
        _ => LogLevel::Trace,
    };
    guarded((), || {
        if !services.sink.enabled(level) {
            return;
        }
        let (component, target) = (
            RStr::from_str(&services.component),
            RStr::from_str(&services.plugin),
        );
        match super::spans::current_trace() {
            Some(trace) => {
                let message = RStr::from_str(&message);
                services
                    .sink
                    .log_traced(level, component, target, message, trace);
            }
            None => services
                .sink
                .log(level, component, target, RStr::from_str(&message)),
        }
    });
}

extern "C" fn span_begin(ctx: *mut c_void, name: PhStr) -> u64 {
    // SAFETY: the plugin passes its `ph_host.ctx`, and a name of readable bytes.
    let (services, name) = unsafe { (services(ctx), name.text()) };
    guarded(0, || {
        super::spans::begin(&services.sink, &services.plugin, &services.component, &name)
    })
}

extern "C" fn span_end(_ctx: *mut c_void, span: u64) {
    guarded((), || super::spans::end(span));
}

extern "C" fn config(ctx: *mut c_void, out: *const PhOut) {
    // SAFETY: the plugin passes its `ph_host.ctx`.
    let services = unsafe { services(ctx) };
    let json = guarded(None, || Some(services.host.config_json()));
    let json = json.as_ref().map_or("{}", |json| json.as_str());
    deliver(out, json.as_bytes());
}

extern "C" fn call(
    ctx: *mut c_void,
    dependency: PhStr,
    method: PhStr,
    input: PhStr,
    out: *const PhOut,
) -> i32 {
    // SAFETY: the plugin passes its `ph_host.ctx` and readable strings.
    let (services, dependency, method, input) = unsafe {
        (
            services(ctx),
            dependency.text(),
            method.text(),
            input.bytes(),
        )
    };
    let answer = guarded(Err(PluginError::failed("the host panicked")), || {
        let Some(handle) = services
            .host
            .dependency(RStr::from_str(&dependency))
            .into_option()
        else {
            return Err(PluginError::with_kind(
                "not_found",
                format!(
                    "component `{}` has no dependency `{dependency}`; declare it in its description's dependencies",
                    services.component
                ),
            ));
        };
        handle
            .call(RStr::from_str(&method), RSlice::from_slice(input))
            .into_result()
            .map(|bytes| bytes.into_vec())
    });
    answered(answer, out)
}

extern "C" fn lock(
    ctx: *mut c_void,
    name: PhStr,
    timeout_ms: u64,
    token: *mut u64,
    error: *const PhOut,
) -> i32 {
    // SAFETY: the plugin passes its `ph_host.ctx` and a readable name.
    let (services, name) = unsafe { (services(ctx), name.text()) };
    let taken = guarded(Err(PluginError::failed("the host panicked")), || {
        services
            .host
            .lock(RStr::from_str(&name), timeout_ms)
            .into_result()
    });
    match taken {
        Ok(taken) if !token.is_null() => {
            // SAFETY: the plugin passes a writable `uint64_t`.
            unsafe { *token = taken };
            0
        }
        Ok(taken) => {
            // Nowhere to put the token: release at once rather than hold it for good.
            let _ = services.host.unlock(taken);
            answered(Err(PluginError::failed("lock: `token` is NULL")), error)
        }
        Err(err) => answered(Err(err), error),
    }
}

extern "C" fn unlock(ctx: *mut c_void, token: u64) -> i32 {
    // SAFETY: the plugin passes its `ph_host.ctx`.
    let services = unsafe { services(ctx) };
    let freed = guarded(Err(PluginError::failed("the host panicked")), || {
        services.host.unlock(token).into_result()
    });
    status_of(freed.err().as_ref())
}

extern "C" fn metric(ctx: *mut c_void, kind: i32, name: PhStr, value: f64) {
    // SAFETY: the plugin passes its `ph_host.ctx` and a readable name.
    let (services, name) = unsafe { (services(ctx), name.text()) };
    guarded((), || services.record(kind, &name, value));
}

/// Writes `answer` (its bytes, or its error's message) to `out`; its status.
fn answered(answer: Result<Vec<u8>, PluginError>, out: *const PhOut) -> i32 {
    match answer {
        Ok(bytes) => {
            deliver(out, &bytes);
            0
        }
        Err(err) => {
            deliver(out, err.to_string().as_bytes());
            status_of(Some(&err))
        }
    }
}

/// The kinds of failure by `ph_status`, from 1.
const KINDS: [&str; 8] = [
    "failed",
    "bad_input",
    "unknown_method",
    "not_found",
    "permission_denied",
    "conflict",
    "unavailable",
    "cancelled",
];

/// The `ph_status` of a failure (`PH_OK` for none).
fn status_of(err: Option<&PluginError>) -> i32 {
    let Some(err) = err else { return 0 };
    KINDS
        .iter()
        .position(|kind| *kind == err.kind())
        .map_or(1, |at| at as i32 + 1)
}

/// The error a plugin's function reported: its `status` and the message it wrote.
pub(crate) fn error_of(status: i32, method: &str, message: Out) -> PluginError {
    let mut message = message.text();
    if message.is_empty() {
        message = format!("the plugin gave no message (status {status})");
    }
    match status {
        2 => PluginError::bad_input(method, message),
        3 => PluginError::unknown_method(method),
        4..=8 => PluginError::with_kind(KINDS[status as usize - 1], message),
        1 => PluginError::failed(message),
        _ => PluginError::failed(format!("{message} (unknown status {status})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(text: &str) -> Out {
        Out(text.as_bytes().to_vec())
    }

    #[test]
    fn each_status_becomes_an_error_of_its_kind_and_back() {
        for status in 1..=8 {
            let err = error_of(status, "quote", message("no quote for NOPE"));
            assert_eq!(status_of(Some(&err)), status, "{status}: {err}");
            assert_eq!(err.kind(), KINDS[status as usize - 1], "{status}: {err}");
            if status != 3 {
                assert!(err.to_string().contains("no quote for NOPE"), "{err}");
            }
        }
        assert_eq!(status_of(None), 0);
    }

    #[test]
    fn an_unknown_status_or_an_empty_message_still_says_what_happened() {
        let err = error_of(99, "quote", message("odd"));
        assert_eq!(err.kind(), "failed");
        assert!(err.to_string().contains("odd (unknown status 99)"), "{err}");
        let err = error_of(-1, "quote", Out::default());
        assert!(err.to_string().contains("no message (status -1)"), "{err}");
    }
}
