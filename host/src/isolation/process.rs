//! The host's side of one worker process: starting it, sending create / call / drop and
//! waiting for the answers, and ending it (kill, stop, retire when idle or upgraded).
//!
//! When a worker ends (it crashed, or the host ended it), every request in flight gets a
//! [`WorkerFault`] naming how it ended and why, and the worker takes no new request: the
//! instances bound to it move to a new worker on their next call.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc, Weak,
    },
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex};
use plugin_api::{ffi::MetricBox, PluginError};

use super::{
    credits::{CreditLink, Credits, WINDOW},
    spawn::{Hello, Spawn},
    watch::Watch,
    FaultKind,
};
use crate::{
    context::{HostServices, PluginHostContext},
    executor::PluginExecutor,
    isolation::WorkerFault,
    memory::MemoryManager,
    platform::{LinkWrite, ProcessWatch},
    plugin_log::PluginLogSink,
    protocol::{FrameReader, FrameWriter, FromWorker, ToWorker, WireError},
    stream_buffer::{Consumer, ItemSink},
};

/// What a request from the host waits for.
pub(super) enum Answer {
    Created(Result<(), WireError>),
    Returned(Result<Vec<u8>, WireError>),
    Dropped,
    StreamEnd(Result<(), WireError>),
    Died(WorkerFault),
}

/// Which answer a request expects: any other is a breach of the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Created,
    Returned,
    Dropped,
    StreamEnd,
}

impl Answer {
    fn kind(&self) -> Option<Expect> {
        match self {
            Self::Created(_) => Some(Expect::Created),
            Self::Returned(_) => Some(Expect::Returned),
            Self::Dropped => Some(Expect::Dropped),
            Self::StreamEnd(_) => Some(Expect::StreamEnd),
            Self::Died(_) => None,
        }
    }
}

/// An open stream of a worker's: where its items go, and the credit it has.
type OpenStream = (Arc<dyn ItemSink>, Arc<Credits>);

impl CreditLink for WorkerProcess {
    /// Sends `message` from a plugin thread (never an async worker: a write may wait).
    fn send_later(self: Arc<Self>, message: ToWorker) {
        let worker = Arc::clone(&self);
        self.executor.execute(move || {
            if !worker.has_exited() {
                let _ = worker.writer.lock().write(&message);
            }
        });
    }
}

/// Why a request to a worker failed.
pub(crate) enum Failure {
    /// The plugin's own error.
    Plugin(PluginError),
    /// The worker died or was killed while the request was in flight.
    Worker(WorkerFault),
    /// The worker takes no new requests (it ended, or is retiring); nothing was sent, so
    /// the request may go to another worker.
    NotSent,
    /// The reply was larger than `[limits] max_reply`: the worker did not send it.
    ReplyTooLarge { size: u64, limit: u64 },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plugin(err) => err.fmt(f),
            Self::Worker(fault) => fault.fmt(f),
            Self::NotSent => f.write_str("the worker was stopping and took no request"),
            Self::ReplyTooLarge { size, limit } => write!(
                f,
                "its reply of {size} bytes is larger than [limits] max_reply ({limit} bytes)"
            ),
        }
    }
}

/// The requests in flight and whether new ones are taken, under one lock: a worker is
/// retired only when nothing is in flight, and nothing is sent to a retired one.
struct Requests {
    pending: HashMap<u64, (Expect, mpsc::SyncSender<Answer>)>,
    accepting: bool,
}

/// One worker process and the host's end of its socket.
pub(crate) struct WorkerProcess {
    /// The process that runs the plugin (its memory is the worker's). Its warden, when
    /// it has one, is the host's child, which `process` watches.
    pub(crate) pid: u32,
    pub(crate) plugin: String,
    /// The process, as the kernel knows it; killed only under `life`'s lock.
    process: ProcessWatch,
    /// Held to kill the process or to mark it ended: a kill never races the reaping.
    life: Mutex<()>,
    writer: Mutex<FrameWriter>,
    requests: Mutex<Requests>,
    next_req: AtomicU64,
    exited: AtomicBool,
    /// Why the host is ending it, if it is.
    ending: Mutex<Option<String>>,
    /// How it ended, once it has.
    ended_as: Mutex<Option<String>>,
    /// How it broke the protocol, if it did: it is killed for it.
    broke_protocol: Mutex<Option<String>>,
    /// Whether the reader has stopped reading (end of the socket, or a breach).
    reader_done: (Mutex<bool>, Condvar),
    /// The host-side context of each instance, for the requests its code makes.
    pub(super) contexts: Mutex<HashMap<u64, PluginHostContext>>,
    /// Where the items of each open stream go, by request.
    streams: Mutex<HashMap<u64, OpenStream>>,
    pub(super) metrics: Mutex<Vec<MetricBox>>,
    pub(super) sink: PluginLogSink,
    pub(super) executor: PluginExecutor,
    memory: MemoryManager,
    started: Instant,
    /// Milliseconds from `started` to the last request sent.
    last_used_ms: AtomicU64,
    /// Calls answered without a worker fault: a worker that served any is not crashing
    /// at once.
    answered: AtomicU64,
    pub(super) watch: Watch,
    /// How long it may take to drop its instances and exit once asked to stop.
    stop_limit: Duration,
    /// What its sandbox enforces, as it said when it started; `None` without one.
    pub(crate) sandbox: Option<String>,
    /// What ends everything it starts when it ends, as it said when it started.
    pub(crate) fence: String,
    /// Whether the host has killed it: it is killed (and that logged) once.
    killed: AtomicBool,
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
}

impl WorkerProcess {
    /// The host's side of a worker that has said it is ready: `hello` from it, `process`
    /// as the kernel knows it, `write` the link's half for requests.
    pub(super) fn new(
        spawn: &Spawn<'_>,
        shared: &Shared,
        process: ProcessWatch,
        write: LinkWrite,
        hello: &Hello,
    ) -> Self {
        Self {
            pid: hello.pid,
            plugin: spawn.plugin.to_owned(),
            process,
            life: Mutex::new(()),
            writer: Mutex::new(FrameWriter::new(write, spawn.max_frame())),
            requests: Mutex::new(Requests {
                pending: HashMap::new(),
                accepting: true,
            }),
            next_req: AtomicU64::new(1),
            exited: AtomicBool::new(false),
            ending: Mutex::new(None),
            ended_as: Mutex::new(None),
            broke_protocol: Mutex::new(None),
            reader_done: (Mutex::new(false), Condvar::new()),
            contexts: Mutex::default(),
            streams: Mutex::default(),
            metrics: Mutex::default(),
            sink: PluginLogSink {
                plugin: Arc::from(spawn.plugin),
                limits: Arc::clone(&shared.services.logs),
            },
            executor: shared.executor.clone(),
            memory: shared.memory.clone(),
            started: Instant::now(),
            last_used_ms: AtomicU64::new(0),
            answered: AtomicU64::new(0),
            watch: Watch::new(spawn.memory_limit, shared.memory.min_idle()),
            stop_limit: spawn.stop_timeout,
            sandbox: hello.sandbox.clone(),
            fence: hello.fence.clone(),
            killed: AtomicBool::new(false),
        }
    }

    /// The reader (what the worker says) and the reaper (when the kernel says it ended).
    pub(super) fn start_threads(self: &Arc<Self>, mut reader: FrameReader) -> std::io::Result<()> {
        let reading = Arc::clone(self);
        std::thread::Builder::new()
            .name(format!("worker-{}", self.pid))
            .spawn(move || {
                loop {
                    match reader.read::<FromWorker>() {
                        Ok(Some(message)) => reading.dispatch(message),
                        Ok(None) => break reading.hung_up(),
                        Err(err) => {
                            break reading.breach(&format!("it sent an unreadable frame: {err}"))
                        }
                    }
                }
                *reading.reader_done.0.lock() = true;
                reading.reader_done.1.notify_all();
            })?;
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
        &self,
        instance: u64,
        component: &str,
        context: PluginHostContext,
        config: String,
        dependencies: Vec<String>,
    ) -> Result<(), Failure> {
        self.contexts.lock().insert(instance, context);
        let req = self.next_req.fetch_add(1, Ordering::Relaxed) | (1 << 63);
        let message = ToWorker::Create {
            req,
            instance,
            component: component.to_owned(),
            config,
            dependencies,
        };
        let result = match self.ask(req, Expect::Created, &message) {
            Ok(Answer::Created(result)) => result.map_err(|err| Failure::Plugin(err.into())),
            Ok(_) => Err(Failure::Plugin(PluginError::failed(
                "the worker answered out of turn",
            ))),
            Err(failure) => Err(failure),
        };
        if result.is_err() {
            self.contexts.lock().remove(&instance);
        }
        result
    }

    /// Calls `method` on `instance` as call `req`.
    pub(crate) fn call(
        &self,
        instance: u64,
        req: u64,
        method: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, Failure> {
        let message = ToWorker::Call {
            req,
            instance,
            method: method.to_owned(),
            input: input.to_vec(),
        };
        let answer = self.ask(req, Expect::Returned, &message)?;
        self.answered.fetch_add(1, Ordering::Relaxed);
        match answer {
            Answer::Returned(Err(WireError::ReplyTooLarge { size, limit })) => {
                Err(Failure::ReplyTooLarge { size, limit })
            }
            Answer::Returned(result) => result.map_err(|err| Failure::Plugin(err.into())),
            _ => Err(Failure::Plugin(PluginError::failed(
                "the worker answered out of turn",
            ))),
        }
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
    ) -> Result<(), Failure> {
        let link: Weak<dyn CreditLink> = Arc::downgrade(self) as Weak<Self>;
        let credits = Arc::new(Credits::new(link, req));
        items.set_consumer(Arc::clone(&credits) as Arc<dyn Consumer>);
        self.streams.lock().insert(req, (items, credits));
        tracing::debug!(plugin = %self.plugin, pid = self.pid, req, method, "stream opened");
        let message = ToWorker::Stream {
            req,
            instance,
            method: method.to_owned(),
            input: input.to_vec(),
            credit: WINDOW.0,
            credit_bytes: WINDOW.1,
        };
        let answer = self.ask(req, Expect::StreamEnd, &message);
        self.streams.lock().remove(&req);
        match answer? {
            Answer::StreamEnd(Err(WireError::ReplyTooLarge { size, limit })) => {
                Err(Failure::ReplyTooLarge { size, limit })
            }
            Answer::StreamEnd(result) => {
                self.answered.fetch_add(1, Ordering::Relaxed);
                result.map_err(|err| Failure::Plugin(err.into()))
            }
            _ => Err(Failure::Plugin(PluginError::failed(
                "the worker answered out of turn",
            ))),
        }
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
    pub(crate) fn drop_instance(&self, instance: u64) -> usize {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed) | (1 << 63);
        // A worker that is retiring still drops: its instances go in order.
        let _ = self.ask_even_retiring(req, Expect::Dropped, &ToWorker::Drop { req, instance });
        let context = self.contexts.lock().remove(&instance);
        drop(context);
        self.contexts.lock().len()
    }

    /// Sends `message` and waits for its answer, or for the worker's end.
    fn ask(&self, req: u64, expect: Expect, message: &ToWorker) -> Result<Answer, Failure> {
        self.send_and_wait(req, expect, message, false)
    }

    /// As [`Self::ask`], also while the worker drains (not once it has ended).
    fn ask_even_retiring(
        &self,
        req: u64,
        expect: Expect,
        message: &ToWorker,
    ) -> Result<Answer, Failure> {
        self.send_and_wait(req, expect, message, true)
    }

    fn send_and_wait(
        &self,
        req: u64,
        expect: Expect,
        message: &ToWorker,
        even_retiring: bool,
    ) -> Result<Answer, Failure> {
        let (sender, answer) = mpsc::sync_channel(1);
        {
            let mut requests = self.requests.lock();
            let open = requests.accepting || (even_retiring && !self.has_exited());
            if !open {
                return Err(Failure::NotSent);
            }
            requests.pending.insert(req, (expect, sender));
        }
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_used_ms.store(elapsed, Ordering::Relaxed);
        if self.writer.lock().write(message).is_err() {
            // The socket is gone: the reader sees the end too, and answers every request
            // (this one included, unless it already has).
            if self.requests.lock().pending.remove(&req).is_some() {
                return Err(Failure::NotSent);
            }
        }
        match answer.recv() {
            Ok(Answer::Died(fault)) => Err(Failure::Worker(fault)),
            Ok(other) => Ok(other),
            Err(_) => Err(Failure::Worker(self.fault("hung up"))),
        }
    }

    /// How long since the host last sent it a request.
    pub(super) fn idle_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_used_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(last)
    }

    pub(super) fn fault(&self, reason: &str) -> WorkerFault {
        WorkerFault {
            plugin: self.plugin.clone(),
            pid: Some(self.pid),
            reason: reason.to_owned(),
            kind: FaultKind::Died,
        }
    }

    fn note_ending(&self, why: &str) {
        let mut ending = self.ending.lock();
        if ending.is_none() {
            *ending = Some(why.to_owned());
        }
    }

    /// Kills the worker now (SIGKILL), with everything it started, saying why. Logged
    /// once; a kill asked for again is sent again, quietly.
    pub(crate) fn kill(&self, why: &str) {
        self.note_ending(why);
        self.requests.lock().accepting = false;
        let _life = self.life.lock();
        if !self.has_exited() {
            if !self.killed.swap(true, Ordering::AcqRel) {
                tracing::warn!(plugin = %self.plugin, pid = self.pid, "killing the worker: {why}");
            }
            self.process.kill_group();
        }
    }

    /// Whether the host has killed it (it may not have ended yet).
    pub(super) fn was_killed(&self) -> bool {
        self.killed.load(Ordering::Acquire)
    }

    /// The worker broke the protocol (a frame that does not decode, is too large, or
    /// answers what was not asked): nothing it says can be trusted any more, so it is
    /// killed at once and its calls fail with `worker_protocol`.
    fn breach(&self, what: &str) {
        if self.has_exited() {
            return;
        }
        self.broke_protocol
            .lock()
            .get_or_insert_with(|| what.to_owned());
        self.kill(&format!("it broke the protocol: {what}"));
    }

    /// The worker's end of the socket closed. When the worker exits, that comes just
    /// before the kernel says so; a worker that closes it and stays has broken the
    /// protocol.
    fn hung_up(&self) {
        if self.ending.lock().is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_millis(200);
        while !self.has_exited() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.breach("it closed its end of the socket and kept running");
    }

    /// Waits for the kernel to say the worker ended, kills what it left in its group,
    /// reaps it and ends it here.
    fn reap(&self) {
        let status = self.process.wait();
        {
            let _life = self.life.lock();
            // Its descendants go with it; the group is still named by the unreaped pid.
            self.process.kill_group();
            self.exited.store(true, Ordering::Release);
        }
        self.process.reap();
        let status = status.map_or_else(
            |err| format!("ended ({err})"),
            crate::platform::describe_status,
        );
        self.ended(&status);
    }

    /// Asks the worker to stop: it takes no new request, drops its instances and exits.
    /// Requests in flight get a fault if it ends before answering them.
    pub(crate) fn stop(&self, why: &str) {
        self.note_ending(why);
        self.requests.lock().accepting = false;
        self.writer.lock().shutdown();
        self.watch.stop_deadline(Instant::now() + self.stop_limit);
    }

    /// Stops it if nothing is in flight; returns whether it did.
    pub(super) fn retire_if_idle(&self, why: &str) -> bool {
        {
            let mut requests = self.requests.lock();
            if !requests.pending.is_empty() || !requests.accepting {
                return false;
            }
            requests.accepting = false;
        }
        let rss = crate::memory::rss_of(self.pid).unwrap_or(0);
        self.stop(why);
        self.memory.record_reclaimed(rss);
        true
    }

    /// Takes no new request; stops once those in flight are answered, or kills it after
    /// `limit`. For a worker replaced by a new one (an upgrade, a reload).
    pub(crate) fn drain(self: &Arc<Self>, limit: Duration, why: String) {
        self.requests.lock().accepting = false;
        let worker = Arc::clone(self);
        let drained = std::thread::Builder::new()
            .name(format!("worker-{}-drain", self.pid))
            .spawn(move || {
                let deadline = Instant::now() + limit;
                while worker.is_busy() && !worker.has_exited() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(5));
                }
                if worker.is_busy() {
                    worker.kill(&format!(
                        "{why}, and its calls did not finish within {limit:?}"
                    ));
                } else {
                    worker.stop(&why);
                }
            });
        if drained.is_err() {
            self.stop("it was replaced (the host could not wait for its calls)");
        }
    }

    /// Kills the worker once `grace` passed, unless request `req` is answered by then:
    /// its caller gave up on it.
    pub(crate) fn kill_unless_answered(&self, req: u64, grace: Duration, why: String) {
        self.watch.deadline(req, Instant::now() + grace, why);
    }

    fn dispatch(self: &Arc<Self>, message: FromWorker) {
        match message {
            FromWorker::Created { req, result } => self.answer(req, Answer::Created(result)),
            FromWorker::Returned { req, result } => self.answer(
                req,
                Answer::Returned(result.map(serde_bytes::ByteBuf::into_vec)),
            ),
            FromWorker::Dropped { req } => self.answer(req, Answer::Dropped),
            FromWorker::StreamEnd { req, result } => self.answer(req, Answer::StreamEnd(result)),
            FromWorker::Item { req, item } => {
                let sink = self.streams.lock().get(&req).cloned();
                match sink {
                    Some((_, credits)) if !credits.spend(item.len()) => self.breach(&format!(
                        "it sent an item of stream {req} beyond the credit it was given"
                    )),
                    // A consumer that went is told by a Cancel already on its way.
                    Some((sink, _)) => drop(sink.push(item)),
                    None if self.has_exited() => {}
                    None => self.breach(&format!(
                        "it sent an item of request {req}, which streams nothing"
                    )),
                }
            }
            FromWorker::Log {
                level,
                component,
                target,
                message,
            } => self.log(level, &component, &target, &message),
            FromWorker::WorkerLog {
                level,
                target,
                message,
            } => crate::plugin_log::worker_record(
                &self.plugin,
                Some(self.pid),
                level,
                &target,
                &message,
            ),
            FromWorker::Record { metric, value } => {
                let index = usize::try_from(metric).unwrap_or(usize::MAX);
                if let Some(metric) = self.metrics.lock().get(index) {
                    metric.record(value);
                }
            }
            FromWorker::Request {
                req,
                instance,
                call,
                request,
            } => {
                let worker = Arc::clone(self);
                self.executor.execute(move || {
                    let reply = worker.serve(instance, call, request);
                    let _ = worker.writer.lock().write(&ToWorker::Reply { req, reply });
                });
            }
            FromWorker::Hello { .. } | FromWorker::Refused { .. } => {
                self.breach("it said hello again after it was started");
            }
        }
    }

    fn answer(&self, req: u64, answer: Answer) {
        let mut requests = self.requests.lock();
        let expected = requests.pending.get(&req).map(|(expect, _)| *expect);
        match expected {
            Some(expect) if answer.kind() == Some(expect) => {
                if let Some((_, waiting)) = requests.pending.remove(&req) {
                    drop(requests);
                    let _ = waiting.send(answer);
                }
            }
            Some(expect) => {
                drop(requests);
                self.breach(&format!(
                    "it answered request {req}, which waits for {expect:?}, with {:?}",
                    answer.kind()
                ));
            }
            None => {
                drop(requests);
                self.breach(&format!(
                    "it answered request {req}, which does not wait for an answer"
                ));
            }
        }
    }

    /// The worker is gone, as the kernel says: fail what waits, say how it ended.
    fn ended(&self, status: &str) {
        self.requests.lock().accepting = false;
        // What it wrote before it ended (answers, stream items) is still in the socket:
        // the reader hands it on first. Bounded, for a process it forked may hold the
        // socket open.
        let mut done = self.reader_done.0.lock();
        if !*done {
            let _ = self
                .reader_done
                .1
                .wait_for(&mut done, Duration::from_millis(250));
        }
        drop(done);
        let ending = self.ending.lock().clone();
        let reason = match &ending {
            Some(why) => format!("{status}: {why}"),
            None => format!("{status}; it crashed"),
        };
        *self.ended_as.lock() = Some(reason.clone());
        let mut fault = self.fault(&format!("ended ({reason})"));
        if self.broke_protocol.lock().is_some() {
            fault.kind = FaultKind::Protocol;
        }
        // Emptied under the lock that sends take: a request is either failed here or
        // never sent.
        let waiting: Vec<mpsc::SyncSender<Answer>> = self
            .requests
            .lock()
            .pending
            .drain()
            .map(|(_, (_, s))| s)
            .collect();
        self.watch.wake();
        for waiter in waiting {
            let _ = waiter.send(Answer::Died(fault.clone()));
        }
        self.memory.untrack_process(self.pid);
        // Locks its code took through the contexts die with it.
        let contexts: Vec<PluginHostContext> =
            self.contexts.lock().drain().map(|(_, c)| c).collect();
        for context in contexts {
            context.release_all("its worker process ended");
        }
        self.metrics.lock().clear();
        if ending.is_some() {
            tracing::info!(plugin = %self.plugin, pid = self.pid, "worker {reason}");
        } else {
            tracing::error!(plugin = %self.plugin, pid = self.pid, "worker {reason}");
        }
    }
}
