//! Run a component in a unit test, without the host: a fake host with your config, fake
//! dependencies, captured logs and metrics, and named locks.
//!
//! ```
//! use plugin_api::{
//!     json_reply, testing::TestHost, Component, ComponentDecl, Context, Manifest, Plugin,
//!     PluginError, Request,
//! };
//!
//! struct Greeter;
//!
//! impl Plugin for Greeter {
//!     fn manifest() -> Manifest {
//!         Manifest::new("greeter", "0.1.0").with_component(
//!             ComponentDecl::new("greeter").with_method("hello", "greets", r#"{"name": "Ada"}"#),
//!         )
//!     }
//!
//!     fn create(_name: &str, ctx: Context) -> Result<Box<dyn Component>, PluginError> {
//!         #[derive(serde::Deserialize, Default)]
//!         struct Settings {
//!             #[serde(default)]
//!             greeting: Option<String>,
//!         }
//!         let settings: Settings = ctx.config()?;
//!         tracing::info!("greeter created");
//!         Ok(Box::new(Greeting(settings.greeting.unwrap_or_else(|| "hello".into()))))
//!     }
//! }
//!
//! struct Greeting(String);
//!
//! impl Component for Greeting {
//!     fn call(&self, request: Request<'_>) -> Result<Vec<u8>, PluginError> {
//!         #[derive(serde::Deserialize)]
//!         struct Hello {
//!             name: String,
//!         }
//!         let input: Hello = request.json()?;
//!         json_reply(&format!("{}, {}", self.0, input.name))
//!     }
//! }
//!
//! let host = TestHost::new().with_config(serde_json::json!({ "greeting": "hi" }));
//! let greeter = host.create::<Greeter>("greeter").unwrap();
//! let reply: String = greeter.call_json("hello", &serde_json::json!({ "name": "Ada" })).unwrap();
//! assert_eq!(reply, "hi, Ada");
//! assert!(host.logs().iter().any(|record| record.message == "greeter created"));
//! // Methods the manifest does not declare are refused, as the host refuses them.
//! assert!(greeter.call("nope", b"null").is_err());
//! ```

use std::{
    collections::HashMap,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RResult, RSlice, RStr, RString, RVec},
};
use serde::{de::DeserializeOwned, Serialize};
use tracing::{
    field::{Field, Visit},
    Event, Level, Subscriber,
};
use tracing_subscriber::{layer::Context as LayerContext, prelude::*, Layer};

use crate::{
    ffi::{
        ComponentObj, ComponentObj_TO, ComponentRef, HostApi, HostApi_TO, LogLevel, LogSinkBox,
        LogSink_TO, MetricBox, MetricKind, MetricObj, MetricObj_TO,
    },
    panic_message, Component, Context, Plugin, PluginError, Request,
};

type Handler = dyn Fn(&str, &[u8]) -> Result<Vec<u8>, PluginError> + Send + Sync;

/// One log record a component emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its level.
    pub level: Level,
    /// The component that logged it.
    pub component: String,
    /// Its target (the module path, usually).
    pub target: String,
    /// The message, with its fields appended as `key=value`.
    pub message: String,
}

#[derive(Default)]
struct Locks {
    /// Lock name -> the token holding it.
    held: HashMap<String, u64>,
    /// Token -> lock name.
    tokens: HashMap<u64, String>,
}

#[derive(Default)]
struct Shared {
    config: serde_json::Value,
    dependencies: HashMap<String, Arc<Handler>>,
    logs: std::sync::Mutex<Vec<LogRecord>>,
    metrics: std::sync::Mutex<HashMap<String, Vec<f64>>>,
    locks: std::sync::Mutex<Locks>,
    lock_freed: std::sync::Condvar,
    next_token: AtomicU64,
}

fn locked<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A fake host for unit tests. Cheap to clone; clones share what they captured.
#[derive(Clone, Default)]
pub struct TestHost {
    shared: Arc<Shared>,
}

impl TestHost {
    /// A host with an empty config (`{}`), no dependencies and nothing captured.
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                config: serde_json::json!({}),
                ..Shared::default()
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::get_mut(&mut self.shared).expect("configure a TestHost before creating components")
    }

    /// The component's config section, as `[components.NAME.config]` would give it.
    pub fn with_config(mut self, config: serde_json::Value) -> Self {
        self.shared_mut().config = config;
        self
    }

    /// A fake dependency `name`: `handler` answers its calls with (method, input).
    pub fn with_dependency(
        mut self,
        name: &str,
        handler: impl Fn(&str, &[u8]) -> Result<Vec<u8>, PluginError> + Send + Sync + 'static,
    ) -> Self {
        self.shared_mut()
            .dependencies
            .insert(name.to_owned(), Arc::new(handler));
        self
    }

    /// Creates component `name` of plugin `P`, as the host would: the manifest must
    /// declare it, and a panic in `create` becomes an error.
    ///
    /// # Errors
    ///
    /// The plugin's error, or [`PluginError::UnknownComponent`] when the manifest does not
    /// declare `name`.
    pub fn create<P: Plugin>(&self, name: &str) -> Result<TestComponent, PluginError> {
        let manifest = P::manifest();
        let Some(declared) = manifest.components.iter().find(|c| c.name.as_str() == name) else {
            return Err(PluginError::UnknownComponent(name.into()));
        };
        let methods = declared
            .methods
            .iter()
            .map(|m| m.name.to_string())
            .collect();
        let plugin = manifest.name.to_string();
        let context = self.context(name);
        let created = self.capturing(name, || {
            catch_unwind(AssertUnwindSafe(|| P::create(name, context)))
        });
        match created {
            Ok(Ok(component)) => Ok(TestComponent {
                host: self.clone(),
                plugin,
                name: name.to_owned(),
                methods,
                component: Some(component),
            }),
            Ok(Err(err)) => Err(err),
            Err(payload) => Err(PluginError::panicked(
                &plugin,
                name,
                "create",
                &panic_message(&*payload),
            )),
        }
    }

    /// A context for component `name` served by this fake host, for calling a plugin's
    /// `create` yourself: to hold the bare component (a benchmark's baseline), or to wrap
    /// it. Prefer [`Self::create`], which checks the manifest and catches panics.
    pub fn context(&self, name: &str) -> Context {
        let host = FakeHost {
            shared: Arc::clone(&self.shared),
            component: name.to_owned(),
        };
        Context::new(HostApi_TO::from_ptr(RArc::new(host), TD_Opaque))
    }

    /// Every record logged so far.
    pub fn logs(&self) -> Vec<LogRecord> {
        locked(&self.shared.logs).clone()
    }

    /// The values recorded so far into metric `name` (counter increments or histogram
    /// observations), in order.
    pub fn metric(&self, name: &str) -> Vec<f64> {
        locked(&self.shared.metrics)
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// The names of the locks held now.
    pub fn held_locks(&self) -> Vec<String> {
        let mut names: Vec<String> = locked(&self.shared.locks).held.keys().cloned().collect();
        names.sort();
        names
    }

    /// Runs `f` with this thread's `tracing` events captured as `component`'s records.
    fn capturing<T>(&self, component: &str, f: impl FnOnce() -> T) -> T {
        let layer = Capture {
            shared: Arc::clone(&self.shared),
            component: component.to_owned(),
        };
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, f)
    }
}

/// A component created by a [`TestHost`]; dropping it drops the component.
pub struct TestComponent {
    host: TestHost,
    plugin: String,
    name: String,
    methods: Vec<String>,
    component: Option<Box<dyn Component>>,
}

impl TestComponent {
    /// Calls `method` with raw input. Like the host, refuses a method the manifest does
    /// not declare (when it declares any) and turns a panic into an error.
    ///
    /// # Errors
    ///
    /// The component's error.
    pub fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, PluginError> {
        if !self.methods.is_empty() && !self.methods.iter().any(|m| m == method) {
            return Err(PluginError::UnknownMethod(
                format!("{method} (declared: {})", self.methods.join(", ")).into(),
            ));
        }
        let Some(component) = self.component.as_ref() else {
            return Err(PluginError::failed("the component was dropped"));
        };
        let result = self.host.capturing(&self.name, || {
            catch_unwind(AssertUnwindSafe(|| {
                component.call(Request::new(method, input))
            }))
        });
        result.unwrap_or_else(|payload| {
            Err(PluginError::panicked(
                &self.plugin,
                &self.name,
                method,
                &panic_message(&*payload),
            ))
        })
    }

    /// Calls `method` with a JSON request and parses the JSON reply.
    ///
    /// # Errors
    ///
    /// The component's error, or a failure to (de)serialise.
    pub fn call_json<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
        &self,
        method: &str,
        request: &Req,
    ) -> Result<Resp, PluginError> {
        let input = serde_json::to_vec(request)
            .map_err(|err| PluginError::failed(format!("request: {err}")))?;
        let output = self.call(method, &input)?;
        serde_json::from_slice(&output)
            .map_err(|err| PluginError::failed(format!("reply is not the expected JSON: {err}")))
    }
}

impl TestComponent {
    /// Drives streaming method `method` as a consumer that takes `max` items and then
    /// goes away (the component's next `send` fails), or takes them all if the stream
    /// ends first. Like the host, turns a panic into an error.
    ///
    /// # Errors
    ///
    /// The component's error.
    pub fn stream(
        &self,
        method: &str,
        input: &[u8],
        max: usize,
    ) -> Result<Vec<Vec<u8>>, PluginError> {
        let Some(component) = self.component.as_ref() else {
            return Err(PluginError::failed("the component was dropped"));
        };
        self.host
            .capturing(&self.name, || {
                catch_unwind(AssertUnwindSafe(|| {
                    collect_stream(&**component, method, input, max)
                }))
            })
            .unwrap_or_else(|payload| {
                Err(PluginError::panicked(
                    &self.plugin,
                    &self.name,
                    method,
                    &panic_message(&*payload),
                ))
            })
    }
}

/// Runs `component`'s streaming method `method` as a consumer that takes up to `max`
/// items and then goes away; returns the items taken.
///
/// # Errors
///
/// The component's error (a stream ended by the consumer going is not one).
pub fn collect_stream(
    component: &dyn Component,
    method: &str,
    input: &[u8],
    max: usize,
) -> Result<Vec<Vec<u8>>, PluginError> {
    let items = Arc::new(std::sync::Mutex::new(Vec::new()));
    let taken = Arc::clone(&items);
    let sink = crate::StreamSink::from_fn(move |item| {
        let mut items = locked(&taken);
        if items.len() >= max {
            return false;
        }
        items.push(item.to_vec());
        true
    });
    let result = component.stream(Request::new(method, input), &sink);
    let items = std::mem::take(&mut *locked(&items));
    match result {
        Err(err) if err.kind() == "cancelled" && items.len() >= max => Ok(items),
        other => other.map(|()| items),
    }
}

impl Drop for TestComponent {
    fn drop(&mut self) {
        let component = self.component.take();
        self.host.capturing(&self.name, move || drop(component));
    }
}

/// Captures events into the shared log.
struct Capture {
    shared: Arc<Shared>,
    component: String,
}

impl<S: Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &Event<'_>, _ctx: LayerContext<'_, S>) {
        let mut visitor = Message::default();
        event.record(&mut visitor);
        locked(&self.shared.logs).push(LogRecord {
            level: *event.metadata().level(),
            component: self.component.clone(),
            target: event.metadata().target().to_owned(),
            message: visitor.0,
        });
    }
}

#[derive(Default)]
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write as _;
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            self.0.push_str(&format!(" {}={value}", field.name()));
        }
    }
}

/// The fake host one component sees.
#[derive(Clone)]
struct FakeHost {
    shared: Arc<Shared>,
    component: String,
}

impl HostApi for FakeHost {
    fn component_name(&self) -> RString {
        self.component.as_str().into()
    }

    fn log_sink(&self) -> LogSinkBox {
        LogSink_TO::from_ptr(RArc::new(NoSink), TD_Opaque)
    }

    fn config_json(&self) -> RString {
        self.shared.config.to_string().into()
    }

    fn dependency(&self, name: RStr<'_>) -> ROption<ComponentRef> {
        self.shared
            .dependencies
            .get(name.as_str())
            .map(|handler| {
                ComponentObj_TO::from_ptr(RArc::new(FakeDependency(Arc::clone(handler))), TD_Opaque)
            })
            .into()
    }

    fn lock(&self, name: RStr<'_>, timeout_ms: u64) -> RResult<u64, PluginError> {
        let timeout = Duration::from_millis(if timeout_ms == 0 { 5_000 } else { timeout_ms });
        let deadline = Instant::now() + timeout;
        let mut locks = locked(&self.shared.locks);
        while locks.held.contains_key(name.as_str()) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return RResult::RErr(PluginError::failed(format!(
                    "lock `{name}` timed out after {timeout:?} (held in this test)"
                )));
            }
            locks = self
                .shared
                .lock_freed
                .wait_timeout(locks, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
        let token = self.shared.next_token.fetch_add(1, Ordering::Relaxed) + 1;
        locks.held.insert(name.as_str().to_owned(), token);
        locks.tokens.insert(token, name.as_str().to_owned());
        RResult::ROk(token)
    }

    fn unlock(&self, token: u64) -> RResult<(), PluginError> {
        let mut locks = locked(&self.shared.locks);
        match locks.tokens.remove(&token) {
            Some(name) => {
                locks.held.remove(&name);
                self.shared.lock_freed.notify_all();
                RResult::ROk(())
            }
            None => RResult::RErr(PluginError::failed(format!(
                "no lock is held with token {token}"
            ))),
        }
    }

    fn metric(
        &self,
        _kind: MetricKind,
        name: RStr<'_>,
        _help: RStr<'_>,
        _buckets: RSlice<'_, f64>,
    ) -> RResult<MetricBox, PluginError> {
        locked(&self.shared.metrics)
            .entry(name.as_str().to_owned())
            .or_default();
        let metric = FakeMetric {
            shared: Arc::clone(&self.shared),
            name: name.as_str().to_owned(),
        };
        RResult::ROk(MetricObj_TO::from_ptr(RArc::new(metric), TD_Opaque))
    }

    fn host_api_version(&self) -> RString {
        RString::from(crate::API_VERSION)
    }
}

/// Records go through the capturing subscriber, not through a sink.
#[derive(Clone)]
struct NoSink;

impl crate::ffi::LogSink for NoSink {
    fn enabled(&self, _level: LogLevel) -> bool {
        false
    }

    fn log(&self, _level: LogLevel, _component: RStr<'_>, _target: RStr<'_>, _message: RStr<'_>) {}
}

struct FakeDependency(Arc<Handler>);

impl ComponentObj for FakeDependency {
    fn call(&self, method: RStr<'_>, input: RSlice<'_, u8>) -> RResult<RVec<u8>, PluginError> {
        (self.0)(method.as_str(), input.as_slice())
            .map(RVec::from)
            .into()
    }
}

#[derive(Clone)]
struct FakeMetric {
    shared: Arc<Shared>,
    name: String,
}

impl MetricObj for FakeMetric {
    fn record(&self, value: f64) {
        locked(&self.shared.metrics)
            .entry(self.name.clone())
            .or_default()
            .push(value);
    }
}
