//! Initialisation: exactly one per component however many callers wait, dependencies
//! first and concurrently, memory admission, then `create` on its own thread under the
//! init timeout.

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc},
    time::Instant,
};

use futures::{future::BoxFuture, FutureExt};

use super::{
    handle::Ready,
    slot::{InitResult, Slot, SlotState},
    ComponentHandle, Coordinator, Dependencies, ErrorChainDisplay, GetError, InitError, Inner,
    Instance,
};
use crate::timeout::{Interrupted, OperationKind};

/// Initialises `slot` or joins the initialisation already running.
pub(super) fn initialize(
    inner: Arc<Inner>,
    slot: Arc<Slot>,
) -> BoxFuture<'static, Result<ComponentHandle, GetError>> {
    async move {
        let shared = {
            let mut state = slot.state.lock();
            if let Some(ready) = slot.ready.load_full() {
                ready.info.touch();
                return Ok(ComponentHandle { ready });
            }
            match &*state {
                SlotState::Initializing(shared) => shared.clone(),
                SlotState::Stopped => {
                    return Err(GetError::ShuttingDown {
                        name: slot.name().to_owned(),
                    })
                }
                SlotState::Failed { error, at } | SlotState::TimedOut { error, at }
                    if at.elapsed() < inner.failure_backoff =>
                {
                    return Err(GetError::Backoff {
                        component: slot.name().to_owned(),
                        since: at.elapsed(),
                        backoff: inner.failure_backoff,
                        source: Arc::clone(error),
                    });
                }
                _ => {
                    if inner.shutting_down.load(Ordering::SeqCst) {
                        return Err(GetError::ShuttingDown {
                            name: slot.name().to_owned(),
                        });
                    }
                    // The init runs as its own task: it finishes even if every caller
                    // gives up, and its result is stored exactly once.
                    let task = tokio::spawn(run_init(Arc::clone(&inner), Arc::clone(&slot)));
                    let component = slot.name().to_owned();
                    let shared = async move {
                        task.await.unwrap_or_else(|err| {
                            Err(Arc::new(InitError::Thread {
                                component,
                                reason: err.to_string(),
                            }))
                        })
                    }
                    .boxed()
                    .shared();
                    *state = SlotState::Initializing(shared.clone());
                    shared
                }
            }
        };
        shared
            .await
            .map(|ready| ComponentHandle { ready })
            .map_err(GetError::Init)
    }
    .boxed()
}

async fn run_init(inner: Arc<Inner>, slot: Arc<Slot>) -> InitResult {
    let started = Instant::now();
    let result = create_with_dependencies(&inner, &slot).await;
    let stats = &slot.info.stats;
    let mut state = slot.state.lock();
    match result {
        Ok(instance) if inner.shutting_down.load(Ordering::SeqCst) => {
            // Shutdown has already taken its list of running components: publishing this
            // one now would leave it running after shutdown. Drop it instead.
            *state = SlotState::Stopped;
            drop(state);
            drop(instance);
            tracing::info!(component = %slot.name(), "component finished initialising during shutdown; stopped");
            Err(Arc::new(InitError::ShuttingDown {
                component: slot.name().to_owned(),
            }))
        }
        Ok(instance) => {
            let ready = Arc::new(Ready {
                instance,
                info: Arc::clone(&slot.info),
            });
            let elapsed = started.elapsed();
            stats.inits.inc();
            stats.init_duration.record(elapsed.as_secs_f64());
            stats.init_micros.store(
                u64::try_from(elapsed.as_micros())
                    .unwrap_or(u64::MAX)
                    .max(1),
                Ordering::Relaxed,
            );
            ready.info.touch();
            slot.ready.store(Some(Arc::clone(&ready)));
            *state = SlotState::Ready;
            inner.init_order.lock().push(slot.name().to_owned());
            tracing::info!(component = %slot.name(), elapsed = ?elapsed, "component initialised");
            Ok(ready)
        }
        Err(error) => {
            let error = Arc::new(error);
            stats.init_failures.inc();
            tracing::warn!(component = %slot.name(), error = %ErrorChainDisplay(&*error), "component failed to initialise");
            *state = match &*error {
                InitError::TimedOut { .. } => SlotState::TimedOut {
                    error: Arc::clone(&error),
                    at: Instant::now(),
                },
                _ => SlotState::Failed {
                    error: Arc::clone(&error),
                    at: Instant::now(),
                },
            };
            Err(error)
        }
    }
}

async fn create_with_dependencies(
    inner: &Arc<Inner>,
    slot: &Arc<Slot>,
) -> Result<Box<dyn Instance>, InitError> {
    let spec = slot.spec();
    let coordinator = Coordinator {
        inner: Arc::clone(inner),
    };
    let gets = spec.dependencies.iter().map(|dep| {
        let coordinator = coordinator.clone();
        async move {
            let result = coordinator.get(dep).await.map_err(|err| match err {
                GetError::UnknownComponent { name } => GetError::MissingDependency {
                    component: spec.name.clone(),
                    dependency: name,
                },
                other => other,
            });
            (dep.clone(), result)
        }
    });
    let mut handles = HashMap::new();
    for (dependency, result) in futures::future::join_all(gets).await {
        match result {
            Ok(handle) => {
                handles.insert(dependency, handle);
            }
            Err(source) => {
                return Err(InitError::Dependency {
                    component: spec.name.clone(),
                    dependency,
                    source,
                })
            }
        }
    }

    let _permit = Arc::clone(&inner.init_permits)
        .acquire_owned()
        .await
        .map_err(|_| InitError::Thread {
            component: spec.name.clone(),
            reason: "the coordinator is closed".into(),
        })?;
    let reservation = super::eviction::admit(inner, slot).await?;
    let limit = spec.init_timeout.unwrap_or(inner.default_timeout);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let provider = Arc::clone(&slot.provider);
    let thread_spec = spec.clone();
    let config = slot.config.clone();
    let dependencies = Dependencies::new(handles);
    std::thread::Builder::new()
        .name(format!("init:{}", spec.name))
        .spawn(move || {
            let result = provider.create(&thread_spec, &config, dependencies);
            if let Err(late) = tx.send(result) {
                // The caller gave up (timeout): drop the late instance here, cleanly.
                tracing::warn!(component = %thread_spec.name, succeeded = late.is_ok(), "late initialisation result dropped");
            }
        })
        .map_err(|err| InitError::Thread {
            component: spec.name.clone(),
            reason: err.to_string(),
        })?;
    let timed = inner
        .timeouts
        .run(OperationKind::Init, &spec.name, None, limit, rx)
        .await;
    match timed {
        Ok(Ok(result)) => {
            if result.is_ok() {
                reservation.commit();
            }
            result
        }
        Ok(Err(_)) => Err(InitError::Thread {
            component: spec.name.clone(),
            reason: "the init thread ended without a result".into(),
        }),
        Err(Interrupted::Expired) => Err(InitError::TimedOut {
            component: spec.name.clone(),
            limit,
        }),
        Err(Interrupted::Cancelled) => Err(InitError::Cancelled {
            component: spec.name.clone(),
        }),
    }
}
