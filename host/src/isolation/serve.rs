//! Answering what plugin code in a worker asks of the host: each request is served
//! through the instance's own host-side context, exactly as an in-process instance's
//! would be (dependencies, locks with their order and deadlock checks, metrics), on the
//! plugin executor, so a slow answer never stalls the worker's socket. A worker's
//! requests take at most `[limits] worker_requests` of the executor's threads, and those
//! that wait for a lock stop waiting when the worker ends.

use std::sync::{atomic::Ordering, Arc};

use abi_stable::std_types::{RSlice, RStr};
use plugin_api::{
    ffi::{HostApi, LogLevel, LogSink, MetricKind, TraceIds},
    PluginError,
};

use super::process::WorkerProcess;
use crate::{
    call_context::CallToken,
    context::{CallScope, PluginHostContext},
    protocol::{Reply, ToWorker, WorkerRequest},
};

/// A request of a worker's being served: counted out however serving it ends.
struct Served(Arc<WorkerProcess>);

impl Drop for Served {
    fn drop(&mut self) {
        self.0.serving.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A host thread waiting for a lock for a worker's request, known to the worker while it
/// waits.
struct WaitingForLock<'a>(&'a WorkerProcess);

impl<'a> WaitingForLock<'a> {
    fn enter(worker: &'a WorkerProcess) -> Self {
        let thread = std::thread::current();
        worker.waiting_for_locks.lock().insert(thread.id(), thread);
        Self(worker)
    }
}

impl Drop for WaitingForLock<'_> {
    fn drop(&mut self) {
        self.0
            .waiting_for_locks
            .lock()
            .remove(&std::thread::current().id());
    }
}

impl WorkerProcess {
    /// Serves request `req` of plugin code in the worker on a plugin thread, within
    /// `[limits] worker_requests` in flight. Each holds a plugin thread of the host's
    /// while it waits (for a lock, a dependency), and plugin code makes them one a thread,
    /// waiting for each answer: a worker with more in flight has more threads asking at
    /// once than its plugin was given, or writes requests behind its worker's back, and
    /// would take the threads every other plugin's calls run on. It is killed for
    /// breaking the protocol.
    pub(super) fn take_request(
        self: &Arc<Self>,
        req: u64,
        instance: u64,
        call: Option<(u64, String)>,
        request: WorkerRequest,
    ) {
        let most = self.requests_at_once;
        if self.serving.fetch_add(1, Ordering::AcqRel) >= most {
            self.serving.fetch_sub(1, Ordering::AcqRel);
            self.breach(&format!(
                "it had more than {most} requests of the host (locks, dependency calls, \
                 metrics) in flight at once (raise [limits] worker_requests if its plugin \
                 needs that many)"
            ));
            return;
        }
        let served = Served(Arc::clone(self));
        self.executor.execute(move || {
            let worker = &served.0;
            let reply = worker.serve(instance, call, request);
            let _ = worker.send(&ToWorker::Reply { req, reply });
        });
    }

    /// Answers one request of plugin code in the worker, made by instance `instance`
    /// inside call `call` (its id and method), or outside any call.
    pub(super) fn serve(
        &self,
        instance: u64,
        call: Option<(u64, String)>,
        request: WorkerRequest,
    ) -> Reply {
        let Some(context) = self.contexts.lock().get(&instance).cloned() else {
            return Reply::Error(PluginError::failed("the instance is gone").into());
        };
        // Whatever it runs for the worker ends with the worker, or with the call it asks in.
        let _scope = call.map(|(id, method)| {
            let token =
                CallToken::for_worker(self.call_token(id), &self.exited, context.stopping());
            CallScope::enter(id, &method, Some(Arc::new(token)))
        });
        let result = match request {
            WorkerRequest::Dependency {
                name,
                method,
                input,
            } => dependency(&context, &name, &method, &input).map(Reply::Bytes),
            WorkerRequest::Lock { name, timeout_ms } => {
                let _waiting = WaitingForLock::enter(self);
                let taken = context.lock_unless(&name, timeout_ms, &self.exited);
                if let (Ok(token), true) = (&taken, self.has_exited()) {
                    // Handed over after its locks were released with it: no one would
                    // release this one.
                    let _ = context.unlock(*token);
                }
                taken.map(Reply::Token)
            }
            WorkerRequest::Unlock { token } => {
                context.unlock(token).into_result().map(|()| Reply::Done)
            }
            WorkerRequest::Metric {
                histogram,
                name,
                help,
                buckets,
            } => self.metric(&context, histogram, &name, &help, &buckets),
        };
        result.unwrap_or_else(|err| Reply::Error(err.into()))
    }

    fn metric(
        &self,
        context: &PluginHostContext,
        histogram: bool,
        name: &str,
        help: &str,
        buckets: &[f64],
    ) -> Result<Reply, PluginError> {
        let kind = if histogram {
            MetricKind::Histogram
        } else {
            MetricKind::Counter
        };
        let metric = context
            .metric(
                kind,
                RStr::from_str(name),
                RStr::from_str(help),
                RSlice::from_slice(buckets),
            )
            .into_result()?;
        // The context caps how many metrics a plugin registers, so this list is bounded.
        let mut metrics = self.metrics.lock();
        metrics.push(metric);
        Ok(Reply::Token(metrics.len() as u64 - 1))
    }

    /// A log record of the worker's plugin, into the host's log under its rate limit.
    pub(super) fn log(
        &self,
        level: u8,
        component: &str,
        target: &str,
        message: &str,
        trace: Option<([u8; 16], [u8; 8])>,
    ) {
        let level = match level {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            _ => LogLevel::Error,
        };
        if self.sink.enabled(level) {
            let trace = trace.map(|(trace_id, span_id)| TraceIds { trace_id, span_id });
            self.sink.record(level, component, target, message, trace);
        }
    }
}

fn dependency(
    context: &PluginHostContext,
    name: &str,
    method: &str,
    input: &[u8],
) -> Result<Vec<u8>, PluginError> {
    let Some(dependency) = context.dependency(RStr::from_str(name)).into_option() else {
        return Err(PluginError::dependency(
            name,
            "it is not a declared dependency",
        ));
    };
    dependency
        .call(RStr::from_str(method), RSlice::from_slice(input))
        .into_result()
        .map(Into::into)
}
