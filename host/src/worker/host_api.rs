//! What the host offers plugin code in a worker (its `HostApi`): every service is asked
//! of the host over the link (logs, metrics, locks, dependencies) and answered there.

use std::sync::Arc;

use abi_stable::{
    sabi_trait::TD_Opaque,
    std_types::{RArc, ROption, RResult, RSlice, RStr, RString, RVec},
};
use plugin_api::{
    ffi::{
        ComponentObj, ComponentObj_TO, ComponentRef, HostApi, LogLevel, LogSink, LogSinkBox,
        LogSink_TO, MetricBox, MetricKind, MetricObj, MetricObj_TO, SpanRecord, TraceIds,
    },
    PluginError,
};

use super::conn::Conn;
use crate::protocol::{FromWorker, Reply, WireSpan, WorkerRequest};

/// What the host offers one instance, asked for over the socket.
#[derive(Clone)]
pub(super) struct WorkerHost {
    pub(super) conn: Arc<Conn>,
    pub(super) instance: u64,
    pub(super) component: String,
    pub(super) config: String,
    pub(super) dependencies: Vec<String>,
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
    pub(super) conn: Arc<Conn>,
}

impl LogSink for WorkerSink {
    fn enabled(&self, level: LogLevel) -> bool {
        level as u8 >= self.conn.log_level
    }

    fn log(&self, level: LogLevel, component: RStr<'_>, target: RStr<'_>, message: RStr<'_>) {
        self.send_log(level, component, target, message, None);
    }

    fn log_traced(
        &self,
        level: LogLevel,
        component: RStr<'_>,
        target: RStr<'_>,
        message: RStr<'_>,
        trace: TraceIds,
    ) {
        let ids = (trace.trace_id, trace.span_id);
        self.send_log(level, component, target, message, Some(ids));
    }

    fn wants_spans(&self) -> bool {
        // The host exports them if its tracing is on; a call is traced only then, or when
        // its client sent a trace the host passes on.
        true
    }

    fn span(&self, span: SpanRecord<'_>) {
        self.conn.send(&FromWorker::Span(WireSpan {
            trace_id: span.ids.trace_id,
            span_id: span.ids.span_id,
            parent_span_id: span.parent_span_id,
            name: span.name.as_str().to_owned(),
            target: span.target.as_str().to_owned(),
            component: span.component.as_str().to_owned(),
            start_unix_nanos: span.start_unix_nanos,
            end_unix_nanos: span.end_unix_nanos,
            fields: span.fields.as_str().to_owned(),
        }));
    }
}

impl WorkerSink {
    fn send_log(
        &self,
        level: LogLevel,
        component: RStr<'_>,
        target: RStr<'_>,
        message: RStr<'_>,
        trace: Option<([u8; 16], [u8; 8])>,
    ) {
        if !self.enabled(level) {
            return;
        }
        self.conn.send(&FromWorker::Log {
            level: level as u8,
            component: component.as_str().to_owned(),
            target: target.as_str().to_owned(),
            message: message.as_str().to_owned(),
            trace,
        });
    }
}

/// A dependency, called through the host.
struct DependencyProxy {
    pub(super) conn: Arc<Conn>,
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
    pub(super) conn: Arc<Conn>,
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
