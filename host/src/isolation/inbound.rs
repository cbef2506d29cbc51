//! What a worker says, read by the host's reader thread of it: answers to requests,
//! stream items within their credit, log records, metric values, and requests of its
//! plugin code, each served on the plugin executor. Anything else breaks the protocol.

use std::sync::Arc;

use abi_stable::std_types::RStr;
use plugin_api::ffi::{SpanRecord, TraceIds};

use super::{process::WorkerProcess, requests::Answer};
use crate::{
    call_context::CallToken,
    protocol::{FromWorker, Outcome},
};

impl WorkerProcess {
    pub(super) fn dispatch(self: &Arc<Self>, message: FromWorker) {
        match message {
            FromWorker::Created { req, result } => self.answer(req, Answer::Created(result)),
            FromWorker::Returned {
                req,
                result,
                cpu_nanos,
            } => {
                let outcome = match result {
                    Outcome::Done(bytes) => Outcome::Done(bytes.into_vec()),
                    Outcome::Failed(err) => Outcome::Failed(err),
                    Outcome::TooLarge { size, limit } => Outcome::TooLarge { size, limit },
                };
                self.answer(req, Answer::Returned(outcome, cpu_nanos));
            }
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
                trace,
            } => self.log(level, &component, &target, &message, trace),
            FromWorker::Span(span) => self.sink.export_span(&SpanRecord {
                ids: TraceIds {
                    trace_id: span.trace_id,
                    span_id: span.span_id,
                },
                parent_span_id: span.parent_span_id,
                name: RStr::from_str(&span.name),
                target: RStr::from_str(&span.target),
                component: RStr::from_str(&span.component),
                start_unix_nanos: span.start_unix_nanos,
                end_unix_nanos: span.end_unix_nanos,
                fields: RStr::from_str(&span.fields),
            }),
            FromWorker::WorkerLog {
                level,
                target,
                message,
            } => self.worker_log(level, &target, &message),
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
            } => self.take_request(req, instance, call, request),
            FromWorker::Starved { req } => {
                let stream = self.streams.lock().get(&req).cloned();
                match stream {
                    Some((_, credits)) => credits.starved(),
                    None if self.has_exited() => {}
                    None => self.breach(&format!(
                        "it said request {req} waits for credit, which streams nothing"
                    )),
                }
            }
            FromWorker::Overrun { req, cpu_nanos } => {
                // A call that has returned meanwhile has no token left: nothing to do.
                if let Some(cpu) = self.call_token(req).as_deref().and_then(CallToken::cpu) {
                    cpu.report(cpu_nanos);
                }
            }
            FromWorker::Hello { .. } | FromWorker::Ready | FromWorker::Refused { .. } => {
                self.breach("it said hello again after it was started");
            }
        }
    }

    /// A log record of the worker's own, into the host's log within the plugin's rate
    /// (the plugin's code can write these too).
    fn worker_log(&self, level: u8, target: &str, message: &str) {
        if self.sink.limits.admit_output(&self.plugin) {
            crate::plugin_log::worker_record(&self.plugin, Some(self.pid), level, target, message);
        }
    }

    /// Hands `answer` to request `req`, which must wait for an answer of that kind.
    pub(super) fn answer(&self, req: u64, answer: Answer) {
        let waiter = self.requests.lock().pending.remove(&req);
        let Some(waiter) = waiter else {
            self.breach(&format!(
                "it answered request {req}, which does not wait for an answer"
            ));
            return;
        };
        match waiter.answer(answer) {
            Ok(()) => self.wake_follower(req),
            Err((waiter, answer)) => {
                let expected = waiter.kind();
                // Failed with the breach, as every request in flight.
                self.requests.lock().pending.insert(req, waiter);
                self.breach(&format!(
                    "it answered request {req}, which waits for {expected}, with {}",
                    answer.kind()
                ));
            }
        }
    }
}
