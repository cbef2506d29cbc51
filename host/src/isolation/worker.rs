//! The worker process: one plugin library, opened with the host's own checks, serving
//! create / call / drop for the host over the link it inherited (`platform::link`).
//! Plugin code here asks the host for everything a context offers (logs, metrics, locks,
//! dependencies) over the same link; the host answers.

use std::{
    cell::RefCell,
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RResult, RSlice, RStr, RString, RVec},
};
use parking_lot::Mutex;
use plugin_api::{
    ffi::{
        ComponentBox, ComponentObj, ComponentObj_TO, ComponentRef, HostApi, HostApi_TO, LogLevel,
        LogSink, LogSinkBox, LogSink_TO, MetricBox, MetricKind, MetricObj, MetricObj_TO,
    },
    PluginError,
};

use super::protocol::{
    FrameReader, FrameWriter, FromWorker, Reply, ToWorker, WireError, WorkerArgs, WorkerRequest,
    FRAME_OVERHEAD,
};
use crate::{
    executor::PluginExecutor,
    loader::{open_library_at, LoadedLibrary, OpenedFile, Via},
    platform::{HostWatch, LinkRead, LinkWrite},
};

/// The first argument that makes a binary a worker: `BINARY --plugin-host-worker ARGS`,
/// linked to its host.
pub(crate) const WORKER_FLAG: &str = "--plugin-host-worker";

/// How long a worker whose host hung up may take to drop its instances before it exits
/// regardless.
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Bit set in the holder ids of worker threads that take locks outside any call, apart
/// from the host's call ids.
const THREAD_HOLDER: u64 = 1 << 62;

/// Serves as the worker the host started, with `args` (after [`WORKER_FLAG`]) as the
/// host wrote them, and the link and library file it handed over; returns the exit code.
pub(crate) fn serve_host(args: &[std::ffi::OsString]) -> i32 {
    let json = args
        .first()
        .map(|a| a.to_string_lossy())
        .unwrap_or_default();
    let Ok(worker_args) = serde_json::from_str::<WorkerArgs>(&json) else {
        eprintln!(
            "a worker is started by the host for isolated plugins, with its arguments and its link to the host; it is not run by hand"
        );
        return 2;
    };
    let (read, write, library) = match crate::platform::worker_link(&worker_args.library) {
        Ok(link) => link,
        Err(why) => {
            eprintln!("{why}; a worker is started by the host only");
            return 2;
        }
    };
    serve(read, write, library, &worker_args)
}

/// Serves the host on its link; the exit code.
fn serve(read: LinkRead, write: LinkWrite, library: std::fs::File, args: &WorkerArgs) -> i32 {
    let max_frame = args.max_reply.saturating_add(FRAME_OVERHEAD);
    let host = HostWatch::now();
    crate::platform::end_group_when_host_dies();
    let conn = Arc::new(Conn {
        writer: Mutex::new(FrameWriter::new(write, max_frame)),
        pending: Mutex::default(),
        next_req: AtomicU64::new(1),
        log_level: args.log_level,
    });
    // The sandbox first: before the library's first instruction, and before this
    // process starts a thread (every thread it starts inherits it).
    let sandbox = match &args.sandbox {
        None => None,
        Some(plan) => match crate::platform::enter_sandbox(plan, &library) {
            Ok(applied) => Some(applied),
            Err(why) => {
                conn.send(&FromWorker::Refused {
                    error: format!("its sandbox could not be set up: {why}"),
                });
                return 3;
            }
        },
    };
    let library = match open(library, args) {
        Ok(library) => Arc::new(library),
        Err(error) => {
            conn.send(&FromWorker::Refused { error });
            return 3;
        }
    };
    conn.send(&FromWorker::Hello {
        pid: std::process::id(),
        plugin: library.info().clone(),
        sandbox,
    });
    let worker = Worker {
        conn,
        library,
        instances: Arc::default(),
        executor: PluginExecutor::new(),
        max_reply: args.max_reply,
        streams: Arc::default(),
    };
    let mut reader = FrameReader::new(read, max_frame);
    while let Ok(Some(message)) = reader.read::<ToWorker>() {
        worker.handle(message);
    }
    // The host hung up: drop every instance (their `Drop` runs), then leave; if a drop
    // hangs, leave anyway. A host that asked this worker to stop reaps it and whatever it
    // started; a host that died cannot, so the worker ends its own process group, and
    // with it what its plugin started.
    let _ = std::thread::Builder::new().spawn(move || {
        std::thread::sleep(EXIT_GRACE);
        leave(&host, 4);
    });
    let instances: Vec<Arc<ComponentBox>> =
        worker.instances.lock().drain().map(|(_, c)| c).collect();
    drop(instances);
    leave(&host, 0)
}

/// Exits with `code`; if the host is gone, takes what this worker started down first.
fn leave(host: &HostWatch, code: i32) -> i32 {
    if host.host_gone() {
        host.end_own_group();
    }
    std::process::exit(code)
}

fn open(file: std::fs::File, args: &WorkerArgs) -> Result<LoadedLibrary, String> {
    let opened = OpenedFile::from_file(file, &args.library).map_err(|err| err.to_string())?;
    opened
        .expect_identity(args.identity)
        .map_err(|err| err.to_string())?;
    // SAFETY: this process exists to take that risk: the host isolates it. It maps this
    // library alone, through the descriptor (a sandbox may forbid writing a link).
    #[allow(unsafe_code)]
    unsafe { open_library_at(&opened, Via::Descriptor) }.map_err(|err| err.to_string())
}

/// The worker's side of the socket.
struct Conn {
    writer: Mutex<FrameWriter>,
    pending: Mutex<HashMap<u64, mpsc::SyncSender<Reply>>>,
    next_req: AtomicU64,
    /// The lowest level the host records; records below it are not sent.
    log_level: u8,
}

impl Conn {
    /// Sends a message; if the host is gone there is nothing left to do.
    fn send(&self, message: &FromWorker) {
        if self.writer.lock().write(message).is_err() {
            std::process::exit(0);
        }
    }

    /// Asks the host and waits for the answer.
    fn request(&self, instance: u64, request: WorkerRequest) -> Reply {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (sender, answer) = mpsc::sync_channel(1);
        self.pending.lock().insert(req, sender);
        let call = CALL.with(|call| call.borrow().clone()).or_else(|| {
            // Outside any call: the locks it takes belong to this thread.
            Some((
                THREAD_HOLDER | THREAD_SEQ.with(|seq| *seq),
                "(own thread)".to_owned(),
            ))
        });
        self.send(&FromWorker::Request {
            req,
            instance,
            call,
            request,
        });
        answer
            .recv()
            .unwrap_or_else(|_| Reply::Error(PluginError::failed("the host hung up").into()))
    }
}

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The call this thread serves: its id and method.
    static CALL: RefCell<Option<(u64, String)>> = const { RefCell::new(None) };
    /// This thread's number, for the locks it takes outside calls.
    static THREAD_SEQ: u64 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

/// The instances this worker holds, by the host's id.
type Instances = Mutex<HashMap<u64, Arc<ComponentBox>>>;

struct Worker {
    conn: Arc<Conn>,
    library: Arc<LoadedLibrary>,
    instances: Arc<Instances>,
    executor: PluginExecutor,
    /// `[limits] max_reply`.
    max_reply: usize,
    /// The open streams, by request: their credit and whether they were cancelled.
    streams: Arc<Mutex<HashMap<u64, Arc<StreamCredit>>>>,
}

/// What the host allows one of this worker's streams: how many items it may still send,
/// and whether its consumer has gone.
#[derive(Default)]
struct StreamCredit {
    state: Mutex<(u32, bool)>,
    changed: parking_lot::Condvar,
    /// An item was larger than `[limits] max_reply`: the stream ends with that error.
    too_large: Mutex<Option<u64>>,
}

/// The sink of one of this worker's streams: each item goes to the host as a frame, once
/// the host has given credit for it.
struct StreamFrames {
    conn: Arc<Conn>,
    req: u64,
    credit: Arc<StreamCredit>,
    max_reply: usize,
}

impl plugin_api::ffi::StreamSinkObj for StreamFrames {
    fn send(&self, item: RVec<u8>) -> bool {
        if item.len() > self.max_reply {
            *self.credit.too_large.lock() = Some(item.len() as u64);
            return false;
        }
        let mut state = self.credit.state.lock();
        while state.0 == 0 && !state.1 {
            self.credit.changed.wait(&mut state);
        }
        if state.1 {
            return false;
        }
        state.0 -= 1;
        drop(state);
        self.conn.send(&FromWorker::Item {
            req: self.req,
            item: item.into_vec(),
        });
        true
    }
}

impl Worker {
    fn handle(&self, message: ToWorker) {
        let (conn, instances) = (Arc::clone(&self.conn), Arc::clone(&self.instances));
        match message {
            ToWorker::Create {
                req,
                instance,
                component,
                config,
                dependencies,
            } => {
                let library = Arc::clone(&self.library);
                self.executor.execute(move || {
                    let host = WorkerHost {
                        conn: Arc::clone(&conn),
                        instance,
                        component: component.clone(),
                        config,
                        dependencies,
                    };
                    let host = HostApi_TO::from_ptr(RArc::new(host), TD_Opaque);
                    let result = library.create(&component, host).map(|created| {
                        instances.lock().insert(instance, Arc::new(created));
                    });
                    conn.send(&FromWorker::Created {
                        req,
                        result: result.map_err(Into::into),
                    });
                });
            }
            ToWorker::Call {
                req,
                instance,
                method,
                input,
            } => {
                let max_reply = self.max_reply;
                self.executor.execute(move || {
                    let result = match call(&instances, instance, req, &method, &input) {
                        // Too large to send: the call's error, and the worker carries on.
                        Ok(reply) if reply.len() > max_reply => Err(WireError::ReplyTooLarge {
                            size: reply.len() as u64,
                            limit: max_reply as u64,
                        }),
                        other => other.map_err(Into::into),
                    };
                    conn.send(&FromWorker::Returned {
                        req,
                        result: result.map(serde_bytes::ByteBuf::from),
                    });
                });
            }
            ToWorker::Drop { req, instance } => self.executor.execute(move || {
                let removed = instances.lock().remove(&instance);
                drop(removed);
                conn.send(&FromWorker::Dropped { req });
            }),
            ToWorker::Stream {
                req,
                instance,
                method,
                input,
                credit,
            } => {
                let state = Arc::new(StreamCredit::default());
                state.state.lock().0 = credit;
                self.streams.lock().insert(req, Arc::clone(&state));
                let (streams, max_reply) = (Arc::clone(&self.streams), self.max_reply);
                self.executor.execute(move || {
                    let sink = StreamFrames {
                        conn: Arc::clone(&conn),
                        req,
                        credit: Arc::clone(&state),
                        max_reply,
                    };
                    let result = stream(&instances, instance, req, &method, &input, sink);
                    streams.lock().remove(&req);
                    let result = match *state.too_large.lock() {
                        Some(size) => Err(WireError::ReplyTooLarge {
                            size,
                            limit: max_reply as u64,
                        }),
                        None => result.map_err(Into::into),
                    };
                    conn.send(&FromWorker::StreamEnd { req, result });
                });
            }
            ToWorker::Credit { req, n } => {
                if let Some(state) = self.streams.lock().get(&req) {
                    state.state.lock().0 += n;
                    state.changed.notify_all();
                }
            }
            ToWorker::Cancel { req } => {
                if let Some(state) = self.streams.lock().get(&req) {
                    state.state.lock().1 = true;
                    state.changed.notify_all();
                }
            }
            ToWorker::Reply { req, reply } => {
                if let Some(waiting) = conn.pending.lock().remove(&req) {
                    let _ = waiting.send(reply);
                }
            }
        }
    }
}

/// Runs one call on this thread, as call `req`. The instance is shared by concurrent
/// calls: it is taken out of the table (a reference count) and called outside its lock.
fn call(
    instances: &Instances,
    instance: u64,
    req: u64,
    method: &str,
    input: &[u8],
) -> Result<Vec<u8>, PluginError> {
    let Some(component) = instances.lock().get(&instance).cloned() else {
        return Err(PluginError::failed("no such instance in this worker"));
    };
    CALL.with(|call| *call.borrow_mut() = Some((req, method.to_owned())));
    let result = component
        .call(RStr::from_str(method), RSlice::from_slice(input))
        .into_result()
        .map(Vec::from);
    CALL.with(|call| *call.borrow_mut() = None);
    result
}

/// Runs one stream on this thread, as call `req` (its locks belong to it).
fn stream(
    instances: &Instances,
    instance: u64,
    req: u64,
    method: &str,
    input: &[u8],
    sink: StreamFrames,
) -> Result<(), PluginError> {
    let Some(component) = instances.lock().get(&instance).cloned() else {
        return Err(PluginError::failed("no such instance in this worker"));
    };
    CALL.with(|call| *call.borrow_mut() = Some((req, method.to_owned())));
    let sink = plugin_api::ffi::StreamSinkObj_TO::from_value(sink, TD_Opaque);
    let result = component
        .stream(RStr::from_str(method), RSlice::from_slice(input), sink)
        .into_result();
    CALL.with(|call| *call.borrow_mut() = None);
    result
}

/// What the host offers one instance, asked for over the socket.
#[derive(Clone)]
struct WorkerHost {
    conn: Arc<Conn>,
    instance: u64,
    component: String,
    config: String,
    dependencies: Vec<String>,
}

fn reply_error(reply: Reply) -> PluginError {
    match reply {
        Reply::Error(err) => err.into(),
        other => PluginError::failed(format!("the host answered {other:?}")),
    }
}

impl HostApi for WorkerHost {
    fn component_name(&self) -> RString {
        self.component.as_str().into()
    }

    fn log_sink(&self) -> LogSinkBox {
        LogSink_TO::from_ptr(
            RArc::new(WorkerSink {
                conn: Arc::clone(&self.conn),
            }),
            TD_Opaque,
        )
    }

    fn config_json(&self) -> RString {
        self.config.as_str().into()
    }

    fn dependency(&self, name: RStr<'_>) -> ROption<ComponentRef> {
        if !self.dependencies.iter().any(|d| d == name.as_str()) {
            return ROption::RNone;
        }
        let proxy = DependencyProxy {
            conn: Arc::clone(&self.conn),
            instance: self.instance,
            name: name.as_str().to_owned(),
        };
        ROption::RSome(ComponentObj_TO::from_ptr(RArc::new(proxy), TD_Opaque))
    }

    fn lock(&self, name: RStr<'_>, timeout_ms: u64) -> RResult<u64, PluginError> {
        let request = WorkerRequest::Lock {
            name: name.as_str().to_owned(),
            timeout_ms,
        };
        match self.conn.request(self.instance, request) {
            Reply::Token(token) => RResult::ROk(token),
            other => RResult::RErr(reply_error(other)),
        }
    }

    fn unlock(&self, token: u64) -> RResult<(), PluginError> {
        match self
            .conn
            .request(self.instance, WorkerRequest::Unlock { token })
        {
            Reply::Done => RResult::ROk(()),
            other => RResult::RErr(reply_error(other)),
        }
    }

    fn metric(
        &self,
        kind: MetricKind,
        name: RStr<'_>,
        help: RStr<'_>,
        buckets: RSlice<'_, f64>,
    ) -> RResult<MetricBox, PluginError> {
        let request = WorkerRequest::Metric {
            histogram: kind == MetricKind::Histogram,
            name: name.as_str().to_owned(),
            help: help.as_str().to_owned(),
            buckets: buckets.to_vec(),
        };
        match self.conn.request(self.instance, request) {
            Reply::Token(metric) => {
                let proxy = MetricProxy {
                    conn: Arc::clone(&self.conn),
                    metric,
                };
                RResult::ROk(MetricObj_TO::from_ptr(RArc::new(proxy), TD_Opaque))
            }
            other => RResult::RErr(reply_error(other)),
        }
    }

    fn host_api_version(&self) -> RString {
        RString::from(plugin_api::API_VERSION)
    }
}

/// Log records go to the host, which filters and rate-limits them.
#[derive(Clone)]
struct WorkerSink {
    conn: Arc<Conn>,
}

impl LogSink for WorkerSink {
    fn enabled(&self, level: LogLevel) -> bool {
        level as u8 >= self.conn.log_level
    }

    fn log(&self, level: LogLevel, component: RStr<'_>, target: RStr<'_>, message: RStr<'_>) {
        if !self.enabled(level) {
            return;
        }
        self.conn.send(&FromWorker::Log {
            level: level as u8,
            component: component.as_str().to_owned(),
            target: target.as_str().to_owned(),
            message: message.as_str().to_owned(),
        });
    }
}

/// A dependency, called through the host.
struct DependencyProxy {
    conn: Arc<Conn>,
    instance: u64,
    name: String,
}

impl ComponentObj for DependencyProxy {
    fn call(&self, method: RStr<'_>, input: RSlice<'_, u8>) -> RResult<RVec<u8>, PluginError> {
        let request = WorkerRequest::Dependency {
            name: self.name.clone(),
            method: method.as_str().to_owned(),
            input: input.to_vec(),
        };
        match self.conn.request(self.instance, request) {
            Reply::Bytes(bytes) => RResult::ROk(bytes.into()),
            other => RResult::RErr(reply_error(other)),
        }
    }
}

/// A metric the host holds; values are sent, not answered.
#[derive(Clone)]
struct MetricProxy {
    conn: Arc<Conn>,
    metric: u64,
}

impl MetricObj for MetricProxy {
    fn record(&self, value: f64) {
        self.conn.send(&FromWorker::Record {
            metric: self.metric,
            value,
        });
    }
}
