//! The host's side of one worker process: starting it, sending create / call / drop and
//! waiting for the answers, and ending it (kill, stop, retire when idle or upgraded).
//!
//! When a worker ends (it crashed, or the host ended it), every request in flight gets a
//! [`WorkerFault`] naming how it ended and why, and the worker takes no new request: the
//! instances bound to it move to a new worker on their next call.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc, Arc, Weak,
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use plugin_api::ffi::MetricBox;

use super::{
    credits::{CreditLink, Credits, WINDOW},
    requests::{call_result, CreateFault, Failure, Requests, Waiter},
    spawn::{Hello, Spawn},
    turn::Reading,
    watch::Watch,
};
use crate::{
    call_context::CallToken,
    context::PluginHostContext,
    executor::PluginExecutor,
    fault::{CallFault, WorkerFault},
    memory::MemoryManager,
    platform::{LinkStop, LinkWrite, ProcessWatch},
    plugin_log::PluginLogSink,
    protocol::{FrameWriter, ToWorker, WireContext},
    services::HostServices,
    stream_buffer::{Consumer, ItemSink},
};

/// An open stream of a worker's: where its items go, and the credit it has.
pub(super) type OpenStream = (Arc<dyn ItemSink>, Arc<Credits>);

impl CreditLink for WorkerProcess {
    /// Sends `message` from a plugin thread (never an async worker: a write may wait).
    fn send_later(self: Arc<Self>, message: ToWorker) {
        let mut outbox = self.outbox.lock();
        outbox.messages.push(message);
        if std::mem::replace(&mut outbox.sending, true) {
            // The thread already sending takes this one too: one thread a worker at
            // most, however many wait, even while a write waits for the worker to read.
            return;
        }
        drop(outbox);
        let worker = Arc::clone(&self);
        self.executor.execute(move || loop {
            let messages = {
                let mut outbox = worker.outbox.lock();
                if outbox.messages.is_empty() {
                    outbox.sending = false;
                    return;
                }
                std::mem::take(&mut outbox.messages)
            };
            for message in messages {
                if worker.has_exited() || worker.send(&message).is_err() {
                    break;
                }
            }
        });
    }
}

/// Messages waiting to be sent to a worker by one thread of the host's.
#[derive(Default)]
pub(super) struct Outbox {
    messages: Vec<ToWorker>,
    /// A thread is sending them.
    sending: bool,
}

/// One worker process and the host's end of its socket.
pub(crate) struct WorkerProcess {
    /// The process that runs the plugin (its memory is the worker's). Its warden, when
    /// it has one, is the host's child, which `process` watches.
    pub(crate) pid: u32,
    pub(crate) plugin: String,
    /// The process, as the kernel knows it; killed only under `life`'s lock.
    pub(super) process: ProcessWatch,
    /// Held to kill the process or to mark it ended: a kill never races the reaping.
    pub(super) life: Mutex<()>,
    pub(super) writer: Mutex<FrameWriter>,
    pub(super) requests: Mutex<Requests>,
    pub(super) next_req: AtomicU64,
    pub(super) exited: Arc<AtomicBool>,
    /// Why the host is ending it, if it is.
    pub(super) ending: Mutex<Option<String>>,
    /// How it ended, once it has.
    pub(super) ended_as: Mutex<Option<String>>,
    /// How it broke the protocol, if it did: it is killed for it.
    pub(super) broke_protocol: Mutex<Option<String>>,
    /// What the worker says, and who reads it.
    pub(super) reading: Reading,
    /// The host-side context of each instance, for the requests its code makes.
    pub(super) contexts: Mutex<HashMap<u64, PluginHostContext>>,
    /// Where the items of each open stream go, by request.
    pub(super) streams: Mutex<HashMap<u64, OpenStream>>,
    /// The context of each call in flight that has one, by request: the requests its
    /// code makes (a dependency call) are served in it.
    pub(super) call_tokens: Mutex<HashMap<u64, Arc<CallToken>>>,
    pub(super) metrics: Mutex<Vec<MetricBox>>,
    /// What is sent to it from another thread than the sender's (`CreditLink`): stream
    /// credit and cancellations, in order.
    pub(super) outbox: Mutex<Outbox>,
    /// Requests of its plugin code being served on the host's plugin threads
    /// (`requests_at_once` at most).
    pub(super) serving: AtomicUsize,
    /// `[limits] worker_requests`: more in flight at once break the protocol.
    pub(super) requests_at_once: usize,
    /// The host's threads whose request of it waits for a lock: unparked when it ends,
    /// so that they stop waiting for a process that is gone.
    pub(super) waiting_for_locks: Mutex<HashMap<std::thread::ThreadId, std::thread::Thread>>,
    pub(super) sink: PluginLogSink,
    pub(super) executor: PluginExecutor,
    pub(super) memory: MemoryManager,
    pub(super) started: Instant,
    /// Milliseconds from `started` to the last request sent.
    pub(super) last_used_ms: AtomicU64,
    /// Calls answered without a worker fault: a worker that served any is not crashing
    /// at once.
    pub(super) answered: AtomicU64,
    pub(super) watch: Watch,
    /// How long it may take to drop its instances and exit once asked to stop.
    pub(super) stop_limit: Duration,
    /// How long what the host writes to it may wait unread: a write blocked that long
    /// fails, and the worker is killed for it.
    pub(super) unread_limit: Duration,
    /// What its sandbox enforces, as it said when it started; `None` without one.
    pub(crate) sandbox: Option<String>,
    /// What ends everything it starts when it ends, as it said when it started.
    pub(crate) fence: String,
    /// Whether the host has killed it: it is killed (and that logged) once.
    pub(super) killed: AtomicBool,
    /// What makes a write under way fail from the watcher (`None` where nothing does).
    write_stop: Option<LinkStop>,
    /// The watcher found a write overdue (see [`Self::end_overdue_write`]).
    write_overdue: AtomicBool,
}

impl std::fmt::Debug for WorkerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerProcess")
            .field("pid", &self.pid)
            .field("plugin", &self.plugin)
            .finish()
    }
}

/// What a worker shares with the rest of the host.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) executor: PluginExecutor,
    pub(crate) memory: MemoryManager,
    pub(crate) services: Arc<HostServices>,
    /// `[limits] max_reply`.
    pub(crate) max_reply: usize,
    /// `[limits] shared_memory_from`.
    pub(crate) shared_memory_from: usize,
    /// `[limits] worker_tasks`.
    pub(crate) worker_tasks: u32,
    /// `[limits] worker_requests`.
    pub(crate) worker_requests: usize,
}

impl WorkerProcess {
    /// The host's side of a worker that has said it is ready: `hello` from it, `process`
    /// as the kernel knows it, `write` the link's half for requests.
    pub(super) fn new(
        spawn: &Spawn<'_>,
        shared: &Shared,
        process: ProcessWatch,
        (write, stop): (LinkWrite, LinkStop),
        hello: Hello,
    ) -> Self {
        let write_stop = write.stopper();
        Self {
            pid: hello.pid,
            plugin: spawn.plugin.to_owned(),
            process,
            life: Mutex::new(()),
            writer: Mutex::new(
                FrameWriter::new(write, spawn.max_frame()).sharing_from(spawn.shared_memory_from),
            ),
            requests: Mutex::new(Requests {
                pending: HashMap::new(),
                accepting: true,
            }),
            next_req: AtomicU64::new(1),
            exited: Arc::default(),
            ending: Mutex::new(None),
            ended_as: Mutex::new(None),
            broke_protocol: Mutex::new(None),
            reading: Reading::new(hello.reader, stop),
            contexts: Mutex::default(),
            streams: Mutex::default(),
            call_tokens: Mutex::default(),
            metrics: Mutex::default(),
            serving: AtomicUsize::new(0),
            outbox: Mutex::default(),
            requests_at_once: shared.worker_requests,
            waiting_for_locks: Mutex::default(),
            sink: PluginLogSink {
                plugin: Arc::from(spawn.plugin),
                limits: Arc::clone(&shared.services.logs),
            },
            executor: shared.executor.clone(),
            memory: shared.memory.clone(),
            started: Instant::now(),
            last_used_ms: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            watch: Watch::new(
                spawn.memory_limit,
                shared.memory.min_idle(),
                spawn.unread_limit,
            ),
            stop_limit: spawn.stop_timeout,
            unread_limit: spawn.unread_limit,
            sandbox: hello.sandbox,
            fence: hello.fence,
            killed: AtomicBool::new(false),
            write_stop,
            write_overdue: AtomicBool::new(false),
        }
    }

    /// The reader (what the worker says when no caller reads it) and the reaper (when
    /// the kernel says it ended).
    pub(super) fn start_threads(self: &Arc<Self>) -> std::io::Result<()> {
        let reading = Arc::clone(self);
        std::thread::Builder::new()
            .name(format!("worker-{}", self.pid))
            .spawn(move || reading.read_in_background())?;
        let reaping = Arc::clone(self);
        std::thread::Builder::new()
            .name(format!("worker-{}-reaper", self.pid))
            .spawn(move || reaping.reap())?;
        Ok(())
    }

    /// Whether it takes new requests.
    pub(crate) fn is_accepting(&self) -> bool {
        self.requests.lock().accepting
    }

    /// Writes `message` to the worker. A write that waited `unread_limit` for the worker
    /// to read fails, part of the frame maybe written: the link is broken, and the worker
    /// is killed for breaking the protocol. One that takes longer in all (the worker
    /// reads a little now and then; or, on Windows, whose pipes have no write timeout,
    /// nothing) is ended by the watcher (see [`Self::end_overdue_write`]).
    pub(super) fn send(&self, message: &ToWorker) -> std::io::Result<()> {
        self.send_or(message, || {})
    }

    /// As [`Self::send`], with `failed` run first when the write fails (before the
    /// worker is killed for it, if it is).
    fn send_or(&self, message: &ToWorker, failed: impl FnOnce()) -> std::io::Result<()> {
        let mut writer = self.writer.lock();
        self.watch.write_begins();
        let written = writer.write(message);
        self.watch.write_ends();
        drop(writer);
        if let Err(err) = &written {
            failed();
            if err.kind() == std::io::ErrorKind::WouldBlock {
                self.breach(&format!(
                    "it left what the host sent it unread for {}",
                    crate::util::for_people(self.unread_limit)
                ));
            } else if self.write_overdue.load(Ordering::Acquire) {
                self.breach(&self.unread_too_long());
            }
        }
        written
    }

    /// One write has taken longer than `worker_unread` (the worker reads a little now
    /// and then, or nothing where the link has no write timeout): the write is made to
    /// fail, and its writer, once it has taken its request back, has the worker killed
    /// for it. Where nothing ends a write but the worker's end (Windows), or the write
    /// has not ended a round later, the worker is killed now.
    pub(super) fn end_overdue_write(&self) {
        let again = self.write_overdue.swap(true, Ordering::AcqRel);
        match &self.write_stop {
            Some(stop) if !again => stop.stop(),
            _ => self.breach(&self.unread_too_long()),
        }
    }

    fn unread_too_long(&self) -> String {
        format!(
            "it left what the host sent it unread: one write took longer than {} \
             (worker_unread)",
            crate::util::for_people(self.unread_limit)
        )
    }

    /// Whether the process has ended (and the host has reaped it).
    pub(crate) fn has_exited(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }

    /// Whether it ended without the host ending it.
    pub(crate) fn crashed(&self) -> bool {
        self.has_exited() && self.ending.lock().is_none()
    }

    /// How it ended ("killed by signal 6 (SIGABRT); it crashed"), once it has.
    pub(crate) fn end_reason(&self) -> String {
        self.ended_as
            .lock()
            .clone()
            .unwrap_or_else(|| "it is running".to_owned())
    }

    /// How many calls it answered (plugin errors included).
    pub(crate) fn answered(&self) -> u64 {
        self.answered.load(Ordering::Relaxed)
    }

    /// Creates instance `instance` of `component` in the worker, served by `context`.
    pub(crate) fn create(
        self: &Arc<Self>,
        instance: u64,
        component: &str,
        context: PluginHostContext,
        config: String,
        dependencies: Vec<String>,
    ) -> Result<(), Failure<CreateFault>> {
        self.contexts.lock().insert(instance, context);
        let req = self.next_req.fetch_add(1, Ordering::Relaxed) | (1 << 63);
        let message = ToWorker::Create {
            req,
            instance,
            component: component.to_owned(),
            config,
            dependencies,
        };
        let result = match self.ask(req, &message, Waiter::Created) {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(err))) => Err(Failure::Failed(CreateFault::Plugin(err.into()))),
            Ok(Err(fault)) => Err(Failure::Failed(CreateFault::Worker(fault))),
            Err(NotSent) => Err(Failure::NotSent),
        };
        if result.is_err() {
            self.contexts.lock().remove(&instance);
        }
        result
    }

    /// Calls `method` on `instance` as call `req`, in context `token`.
    pub(crate) fn call(
        self: &Arc<Self>,
        instance: u64,
        req: u64,
        method: &str,
        input: &[u8],
        token: Option<&Arc<CallToken>>,
    ) -> Result<Vec<u8>, Failure<CallFault>> {
        let span = round_trip_span(&self.plugin, self.pid);
        let _entered = span.enter();
        let message = ToWorker::Call {
            req,
            instance,
            method: method.to_owned(),
            input: input.to_vec(),
            context: wire_context(token, &span),
        };
        if let Some(token) = token {
            self.call_tokens.lock().insert(req, Arc::clone(token));
        }
        let answer = self.ask(req, &message, Waiter::Returned);
        if token.is_some() {
            self.call_tokens.lock().remove(&req);
        }
        let answer = answer.map_err(|NotSent| Failure::NotSent)?;
        let answer = answer.map(|(outcome, cpu_nanos)| {
            self.answered.fetch_add(1, Ordering::Relaxed);
            crate::cpu::spent_elsewhere(cpu_nanos);
            outcome
        });
        call_result(answer).map_err(Failure::Failed)
    }

    /// Streams `method` of `instance` as request `req` into `items`, and waits until the
    /// stream is done. The worker sends items within the credit it is given: the
    /// consumer's reads grant more, its end cancels the stream in the worker.
    pub(crate) fn stream(
        self: &Arc<Self>,
        instance: u64,
        req: u64,
        method: &str,
        input: &[u8],
        items: Arc<dyn ItemSink>,
        token: Option<&Arc<CallToken>>,
    ) -> Result<(), Failure<CallFault>> {
        let link: Weak<dyn CreditLink> = Arc::downgrade(self) as Weak<Self>;
        let credits = Arc::new(Credits::new(link, req));
        items.set_consumer(Arc::clone(&credits) as Arc<dyn Consumer>);
        self.streams.lock().insert(req, (items, credits));
        let span = round_trip_span(&self.plugin, self.pid);
        let _entered = span.enter();
        tracing::debug!(plugin = %self.plugin, pid = self.pid, req, method, "stream opened");
        let message = ToWorker::Stream {
            req,
            instance,
            method: method.to_owned(),
            input: input.to_vec(),
            credit: WINDOW.0,
            credit_bytes: WINDOW.1,
            context: wire_context(token, &span),
        };
        let answer = self.ask(req, &message, Waiter::StreamEnd);
        self.streams.lock().remove(&req);
        let answer = answer.map_err(|NotSent| Failure::NotSent)?;
        if answer.is_ok() {
            self.answered.fetch_add(1, Ordering::Relaxed);
        }
        call_result(answer).map_err(Failure::Failed)
    }

    /// The context of call `req`, if it is in flight and has one.
    pub(crate) fn call_token(&self, req: u64) -> Option<Arc<CallToken>> {
        self.call_tokens.lock().get(&req).cloned()
    }

    /// The caller of call `req` has gone: its code in the worker sees it cancelled.
    pub(crate) fn cancel(self: &Arc<Self>, req: u64) {
        Arc::clone(self).send_later(ToWorker::Cancel { req });
    }

    /// The host is stopping: every call in the worker sees it cancelled.
    pub(crate) fn host_stopping(self: &Arc<Self>) {
        Arc::clone(self).send_later(ToWorker::Stopping);
    }

    /// Whether request `req` still waits for its answer.
    pub(crate) fn is_pending(&self, req: u64) -> bool {
        self.requests.lock().pending.contains_key(&req)
    }

    /// Whether any request waits for its answer.
    pub(crate) fn is_busy(&self) -> bool {
        !self.requests.lock().pending.is_empty()
    }

    /// Drops `instance` in the worker and waits until its `Drop` returned (or the worker
    /// ended); returns how many instances the worker still holds.
    pub(crate) fn drop_instance(self: &Arc<Self>, instance: u64) -> usize {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed) | (1 << 63);
        // A worker that is retiring still drops: its instances go in order.
        let message = ToWorker::Drop { req, instance };
        let _ = self.send_and_wait(req, &message, Waiter::Dropped, true);
        let context = self.contexts.lock().remove(&instance);
        drop(context);
        self.contexts.lock().len()
    }

    /// Sends `message` and waits for its answer (`waiter` says which kind), or for the
    /// worker's end.
    fn ask<T>(
        self: &Arc<Self>,
        req: u64,
        message: &ToWorker,
        waiter: fn(Sender<T>) -> Waiter,
    ) -> Result<Result<T, WorkerFault>, NotSent> {
        self.send_and_wait(req, message, waiter, false)
    }

    /// As [`Self::ask`]; `even_retiring`: also while the worker drains (not once it has
    /// ended).
    fn send_and_wait<T>(
        self: &Arc<Self>,
        req: u64,
        message: &ToWorker,
        waiter: fn(Sender<T>) -> Waiter,
        even_retiring: bool,
    ) -> Result<Result<T, WorkerFault>, NotSent> {
        let (sender, answer) = mpsc::sync_channel(1);
        {
            let mut requests = self.requests.lock();
            let open = requests.accepting || (even_retiring && !self.has_exited());
            if !open {
                return Err(NotSent);
            }
            requests.pending.insert(req, waiter(sender));
        }
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_used_ms.store(elapsed, Ordering::Relaxed);
        // The socket is gone, or the worker read nothing and is killed for it: the
        // request, not sent whole, is taken back before the worker's end can fail it (the
        // reader sees the end too, and answers every request it still finds).
        let mut untaken = false;
        let taken_back = || untaken = self.requests.lock().pending.remove(&req).is_some();
        if self.send_or(message, taken_back).is_err() && untaken {
            return Err(NotSent);
        }
        Ok(self
            .await_answer(req, &answer)
            .unwrap_or_else(|| Err(self.fault("hung up"))))
    }
}

/// Nothing was sent: the worker takes no new request.
struct NotSent;

/// The span of one request's round trip to a worker, when traces are exported.
fn round_trip_span(plugin: &str, pid: u32) -> tracing::Span {
    tracing::trace_span!(target: crate::telemetry::SPAN_TARGET, "worker round trip", plugin, pid)
}

/// What a worker is told of a call's context: its deadline, and its trace (with the
/// round trip's `span` as the parent, when traces are exported).
fn wire_context(token: Option<&Arc<CallToken>>, span: &tracing::Span) -> WireContext {
    let Some(token) = token else {
        return WireContext::default();
    };
    let (traceparent, tracestate) = crate::telemetry::trace_of(span)
        .or_else(|| token.trace().cloned())
        .map(|trace| (trace.parent, trace.state))
        .unwrap_or_default();
    WireContext {
        remaining_nanos: token
            .remaining()
            .map(|left| u64::try_from(left.as_nanos()).unwrap_or(u64::MAX)),
        traceparent,
        tracestate,
        cpu_budget_nanos: token
            .cpu()
            .map(|cpu| u64::try_from(cpu.limit().as_nanos()).unwrap_or(u64::MAX)),
    }
}

/// Where one request's answer goes.
type Sender<T> = mpsc::SyncSender<Result<T, WorkerFault>>;
