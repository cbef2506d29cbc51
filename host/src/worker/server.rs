//! What the worker does with each message from the host: create, call and drop
//! instances, run streams, on its plugin executor (never on the thread that reads the
//! link, so a slow call never stalls the others).

use std::{collections::HashMap, sync::Arc};

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, RSlice, RStr},
};
use parking_lot::Mutex;
use plugin_api::{
    ffi::{ComponentBox, HostApi_TO},
    PluginError,
};

use super::{
    calls::{CallState, OpenCalls},
    conn::{as_call, Conn},
    host_api::WorkerHost,
    streams::{OpenStreams, StreamFrames},
};
use crate::{
    executor::PluginExecutor,
    loader::LoadedLibrary,
    protocol::{FromWorker, Outcome, ToWorker, WireContext},
};

/// The instances this worker holds, by the host's id.
type Instances = Mutex<HashMap<u64, Arc<ComponentBox>>>;

/// The worker's serving side: its library, its instances and its open streams.
pub(super) struct Server {
    pub(super) conn: Arc<Conn>,
    pub(super) library: Arc<LoadedLibrary>,
    pub(super) instances: Arc<Instances>,
    pub(super) executor: PluginExecutor,
    /// `[limits] max_reply`.
    pub(super) max_reply: usize,
    pub(super) streams: Arc<OpenStreams>,
    pub(super) calls: Arc<OpenCalls>,
}

impl Server {
    /// Serves one message from the host; a call runs on this thread if `here`, on a
    /// plugin thread otherwise.
    pub(super) fn handle(&self, message: ToWorker, here: bool) {
        match message {
            ToWorker::Create {
                req,
                instance,
                component,
                config,
                dependencies,
            } => {
                let host = WorkerHost {
                    conn: Arc::clone(&self.conn),
                    instance,
                    component,
                    config,
                    dependencies,
                };
                self.create(req, host);
            }
            ToWorker::Call {
                req,
                instance,
                method,
                input,
                context,
            } => {
                let call = self.call(req, instance, method, input, context);
                if here {
                    call();
                } else {
                    self.executor.execute(call);
                }
            }
            ToWorker::Drop { req, instance } => self.drop_instance(req, instance),
            ToWorker::Stream {
                req,
                instance,
                method,
                input,
                credit,
                credit_bytes,
                context,
            } => {
                let context = self.calls.open(req, context);
                self.stream(
                    req,
                    instance,
                    method,
                    input,
                    (credit, credit_bytes),
                    context,
                );
            }
            ToWorker::Credit { req, n, bytes } => self.streams.grant(req, n, bytes),
            ToWorker::Cancel { req } => {
                self.streams.cancel(req);
                self.calls.cancel(req);
            }
            ToWorker::Stopping => self.calls.stop_all(),
            ToWorker::Reply { req, reply } => self.conn.answered(req, reply),
        }
    }

    fn create(&self, req: u64, host: WorkerHost) {
        let (conn, instances) = (Arc::clone(&self.conn), Arc::clone(&self.instances));
        let library = Arc::clone(&self.library);
        self.executor.execute(move || {
            let (instance, component) = (host.instance, host.component.clone());
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

    /// Call `req`, ready to run on any thread: opened (a cancel may come before it
    /// runs), run with its CPU counted, answered.
    fn call(
        &self,
        req: u64,
        instance: u64,
        method: String,
        input: Vec<u8>,
        context: WireContext,
    ) -> impl FnOnce() + Send + 'static {
        let (conn, instances) = (Arc::clone(&self.conn), Arc::clone(&self.instances));
        let max_reply = self.max_reply;
        if context.cpu_budget_nanos.is_some() {
            self.calls.watch_budgets(&self.conn);
        }
        let state = self.calls.open(req, context);
        let calls = Arc::clone(&self.calls);
        move || {
            state.start_cpu();
            let cpu_before = crate::platform::thread_cpu_nanos();
            let answer = call(&instances, instance, req, &method, &input, &state);
            calls.close(req);
            let cpu_nanos = crate::platform::thread_cpu_nanos().saturating_sub(cpu_before);
            let result = match answer {
                // Too large to send: the call's error, and the worker carries on.
                Ok(reply) if reply.len() > max_reply => Outcome::TooLarge {
                    size: reply.len() as u64,
                    limit: max_reply as u64,
                },
                other => other.map(serde_bytes::ByteBuf::from).into(),
            };
            conn.send(&FromWorker::Returned {
                req,
                result,
                cpu_nanos,
            });
        }
    }

    fn drop_instance(&self, req: u64, instance: u64) {
        let (conn, instances) = (Arc::clone(&self.conn), Arc::clone(&self.instances));
        self.executor.execute(move || {
            let removed = instances.lock().remove(&instance);
            drop(removed);
            conn.send(&FromWorker::Dropped { req });
        });
    }

    fn stream(
        &self,
        req: u64,
        instance: u64,
        method: String,
        input: Vec<u8>,
        credit: (u32, u64),
        context: Arc<CallState>,
    ) {
        let (conn, instances) = (Arc::clone(&self.conn), Arc::clone(&self.instances));
        let calls = Arc::clone(&self.calls);
        let state = self.streams.open(req, credit);
        let (streams, max_reply) = (Arc::clone(&self.streams), self.max_reply);
        self.executor.execute(move || {
            let sink = StreamFrames {
                conn: Arc::clone(&conn),
                req,
                credit: Arc::clone(&state),
                max_reply,
            };
            let result = stream(&instances, instance, req, &method, &input, sink, &context);
            streams.close(req);
            calls.close(req);
            let result = match state.too_large() {
                Some(size) => Outcome::TooLarge {
                    size,
                    limit: max_reply as u64,
                },
                None => result.into(),
            };
            conn.send(&FromWorker::StreamEnd { req, result });
        });
    }

    /// Drops every instance (their `Drop` runs), on this thread.
    pub(super) fn drop_all(&self) {
        let instances: Vec<Arc<ComponentBox>> =
            self.instances.lock().drain().map(|(_, c)| c).collect();
        drop(instances);
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
    context: &CallState,
) -> Result<Vec<u8>, PluginError> {
    let Some(component) = instances.lock().get(&instance).cloned() else {
        return Err(PluginError::failed("no such instance in this worker"));
    };
    as_call(req, method, || {
        context.lend(|context, flags| {
            component
                .call_with(
                    RStr::from_str(method),
                    RSlice::from_slice(input),
                    &context,
                    flags,
                )
                .into_result()
                .map(Vec::from)
        })
    })
}

/// Runs one stream on this thread, as call `req` (its locks belong to it).
fn stream(
    instances: &Instances,
    instance: u64,
    req: u64,
    method: &str,
    input: &[u8],
    sink: StreamFrames,
    context: &CallState,
) -> Result<(), PluginError> {
    let Some(component) = instances.lock().get(&instance).cloned() else {
        return Err(PluginError::failed("no such instance in this worker"));
    };
    let sink = plugin_api::ffi::StreamSinkObj_TO::from_value(sink, TD_Opaque);
    as_call(req, method, || {
        context.lend(|context, _| {
            component
                .stream_in(
                    RStr::from_str(method),
                    RSlice::from_slice(input),
                    sink,
                    context,
                )
                .into_result()
        })
    })
}
