//! Isolated components as the coordinator sees them: a provider that creates instances
//! in their library's worker process, and instances whose calls go there.

use std::sync::Arc;

use super::{
    handle::{Dependencies, Instance},
    provider::Provider,
    spec::ComponentSpec,
    stream::ItemSender,
    InitError,
};
use crate::{
    config::Isolation,
    context::PluginHostContext,
    fault::CallFault,
    isolation::{Bound, CreateFault, Created, WorkerPool},
    services::HostServices,
    stream_buffer::{Consumer, ItemSink},
};

/// Creates a component's instances in its library's worker process.
pub(super) struct WorkerProvider {
    pub(super) pool: Arc<WorkerPool>,
    pub(super) services: Arc<HostServices>,
}

impl Provider for WorkerProvider {
    fn create(
        &self,
        spec: &ComponentSpec,
        config: &serde_json::Value,
        dependencies: Dependencies,
    ) -> Result<Box<dyn Instance>, InitError> {
        let context = PluginHostContext::new(
            &self.pool.plugin,
            &spec.name,
            config,
            dependencies.into_calls(),
            Arc::clone(&self.services),
        );
        let names = spec.dependencies.clone();
        match Bound::create(&self.pool, &spec.name, config, names, context) {
            Ok(bound) => Ok(Box::new(WorkerInstance(bound))),
            Err(Created::NoWorker(source)) => Err(InitError::Load {
                component: spec.name.clone(),
                source,
            }),
            Err(Created::Failed(CreateFault::Plugin(source))) => Err(InitError::Create {
                component: spec.name.clone(),
                plugin: Some(self.pool.plugin.clone()),
                source: crate::fault::bounded(source),
            }),
            Err(Created::Failed(CreateFault::Worker(fault))) => Err(InitError::WorkerFailed {
                component: spec.name.clone(),
                fault,
            }),
        }
    }

    fn isolation(&self) -> Isolation {
        Isolation::Process
    }

    fn sandbox_applied(&self) -> Option<String> {
        self.pool.sandbox_applied()
    }

    fn fence(&self) -> Option<String> {
        self.pool.fence()
    }
}

/// A stream's buffer as a worker's frames feed it: each item counted in the component's
/// metrics.
struct CountingSink(ItemSender);

impl ItemSink for CountingSink {
    fn push(&self, item: Vec<u8>) -> bool {
        self.0.count(item.len());
        self.0.queue().push(item)
    }

    fn set_consumer(&self, consumer: Arc<dyn Consumer>) {
        self.0.queue().set_consumer(consumer);
    }
}

/// The coordinator's handle on an isolated instance; dropping it drops the instance in
/// its worker.
struct WorkerInstance(Arc<Bound>);

impl Instance for WorkerInstance {
    fn call(&self, method: &str, input: &[u8]) -> Result<Vec<u8>, CallFault> {
        self.0.call(method, input)
    }

    fn stream(&self, method: &str, input: &[u8], items: &ItemSender) -> Result<(), CallFault> {
        let sink: Arc<dyn ItemSink> = Arc::new(CountingSink(items.clone()));
        self.0.stream(method, input, &sink)
    }

    fn end_call(&self, id: u64) {
        self.0.end_call(id);
    }

    fn worker_pid(&self) -> Option<u32> {
        self.0.worker_pid()
    }
}
