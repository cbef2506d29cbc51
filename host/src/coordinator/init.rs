//! Initialisation: exactly one per component however many callers wait, dependencies
//! first and concurrently, then one job on the plugin executor (memory admission, load,
//! `create`) under the init timeout.
//!
//! A timed-out initialisation ends the wait, not the work: its job keeps the init permit
//! and the memory reservation until `create` really returns, the late instance is then
//! dropped on its plugin thread, and no second `create` of the component starts
//! meanwhile.

use std::{
    collections::HashMap,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use futures::{future::BoxFuture, FutureExt};
use tracing::Instrument as _;

use super::{
    handle::Ready,
    slot::{InitResult, SharedInit, Slot, SlotState},
    ComponentHandle, Coordinator, Dependencies, ErrorChainDisplay, GetError, InitError, Inner,
    Instance,
};
use crate::{
    executor::Hooks,
    timeout::{Interrupted, OperationKind},
};

/// Initialises `slot` or joins the initialisation already running.
pub(super) fn initialize(
    inner: Arc<Inner>,
    slot: Arc<Slot>,
) -> BoxFuture<'static, Result<ComponentHandle, GetError>> {
    async move {
        let shared = match join_or_start(&inner, &slot)? {
            Joined::Ready(ready) => return Ok(ComponentHandle { ready }),
            Joined::Init(shared) => shared,
        };
        shared
            .await
            .map(|ready| ComponentHandle { ready })
            .map_err(GetError::Init)
    }
    .boxed()
}

/// What a caller of `initialize` joins.
enum Joined {
    /// The component is ready.
    Ready(Arc<Ready>),
    /// The one initialisation running for it.
    Init(SharedInit),
}

/// Under the slot's lock: the ready instance, the running init, a refusal (still running
/// abandoned, stopped, in backoff), or a new init started now.
fn join_or_start(inner: &Arc<Inner>, slot: &Arc<Slot>) -> Result<Joined, GetError> {
    let mut state = slot.state.lock();
    if let Some(ready) = slot.ready.load_full() {
        ready.info.touch();
        return Ok(Joined::Ready(ready));
    }
    let component = || slot.name().to_owned();
    match &*state {
        SlotState::Initializing(shared) => return Ok(Joined::Init(shared.clone())),
        _ if slot.init_abandoned.load(Ordering::Acquire) => {
            return Err(GetError::InitStillRunning {
                component: component(),
            })
        }
        SlotState::Stopped => return Err(GetError::ShuttingDown { name: component() }),
        SlotState::Failed { error, at } | SlotState::TimedOut { error, at }
            if at.elapsed() < inner.failure_backoff =>
        {
            return Err(GetError::Backoff {
                component: component(),
                since: at.elapsed(),
                backoff: inner.failure_backoff,
                source: Arc::clone(error),
            });
        }
        _ => {}
    }
    if inner.shutting_down.load(Ordering::SeqCst) {
        return Err(GetError::ShuttingDown { name: component() });
    }
    // The init runs as its own task: it finishes even if every caller gives up, and its
    // result is stored exactly once.
    // In the trace of the caller that started it (a child of its request's span).
    let span = tracing::trace_span!(target: crate::telemetry::SPAN_TARGET, "init", component = slot.name());
    let task = tokio::spawn(run_init(Arc::clone(inner), Arc::clone(slot)).instrument(span));
    let name = component();
    let shared = async move {
        task.await.unwrap_or_else(|err| {
            Err(Arc::new(InitError::Thread {
                component: name,
                reason: err.to_string(),
            }))
        })
    }
    .boxed()
    .shared();
    *state = SlotState::Initializing(shared.clone());
    Ok(Joined::Init(shared))
}

async fn run_init(inner: Arc<Inner>, slot: Arc<Slot>) -> InitResult {
    let started = Instant::now();
    let result = create_with_dependencies(&inner, &slot).await;
    let mut state = slot.state.lock();
    match result {
        Ok(instance) if inner.shutting_down.load(Ordering::SeqCst) => {
            // Shutdown has already taken its list of running components: publishing this
            // one now would leave it running after shutdown. Drop it instead.
            *state = SlotState::Stopped;
            drop(state);
            inner.executor.execute(move || drop(instance));
            tracing::info!(component = %slot.name(), "component finished initialising during shutdown; stopped");
            Err(Arc::new(InitError::ShuttingDown {
                component: slot.name().to_owned(),
            }))
        }
        Ok(instance) => {
            let ready = publish(&inner, &slot, instance, started.elapsed());
            *state = SlotState::Ready;
            Ok(ready)
        }
        Err(error) => {
            let error = Arc::new(error);
            slot.info.stats.init_failures.inc();
            *slot.last_error.lock() = Some(Arc::clone(&error));
            tracing::warn!(component = %slot.name(), error = %ErrorChainDisplay(&*error), "component failed to initialise");
            *state = match &*error {
                // A refusal says nothing about the component: the next call runs
                // admission again, with no backoff.
                e if e.is_memory_refusal() => {
                    if slot.info.stats.inits.get() > 0 {
                        SlotState::Evicted
                    } else {
                        SlotState::Registered
                    }
                }
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

/// Makes a new instance the slot's ready one and records the init.
fn publish(
    inner: &Arc<Inner>,
    slot: &Slot,
    instance: Box<dyn Instance>,
    took: Duration,
) -> Arc<Ready> {
    let stats = &slot.info.stats;
    let ready = Arc::new(Ready::new(
        instance,
        Arc::clone(&slot.info),
        inner.executor.clone(),
        Arc::downgrade(inner),
    ));
    stats.inits.inc();
    stats.init_duration.record(took.as_secs_f64());
    stats.init_micros.store(
        u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1),
        Ordering::Relaxed,
    );
    ready.info.touch();
    slot.swap_ready(Some(Arc::clone(&ready)));
    *slot.last_error.lock() = None;
    let mut order = inner.init_order.lock();
    order.retain(|name| name != slot.name());
    order.push(slot.name().to_owned());
    drop(order);
    tracing::info!(component = %slot.name(), elapsed = ?took, "component initialised");
    ready
}

/// Gets every dependency of `slot`, concurrently.
async fn dependencies(inner: &Arc<Inner>, slot: &Slot) -> Result<Dependencies, InitError> {
    let component = slot.name().to_owned();
    let gets = slot.spec().dependencies.iter().cloned().map(|dep| {
        let coordinator = Coordinator {
            inner: Arc::clone(inner),
        };
        async move {
            let result = coordinator.get(&dep).await;
            (dep, result)
        }
    });
    let mut handles = HashMap::new();
    for (dependency, result) in futures::future::join_all(gets).await {
        match result {
            Ok(handle) => {
                handles.insert(dependency, handle);
            }
            Err(GetError::UnknownComponent { .. }) => {
                return Err(InitError::MissingDependency {
                    component,
                    dependency,
                })
            }
            Err(source) => {
                return Err(InitError::Dependency {
                    component,
                    dependency,
                    source,
                })
            }
        }
    }
    Ok(Dependencies::new(handles))
}

async fn create_with_dependencies(
    inner: &Arc<Inner>,
    slot: &Arc<Slot>,
) -> Result<Box<dyn Instance>, InitError> {
    let dependencies = dependencies(inner, slot).await?;
    let spec = slot.spec();
    let limit = spec
        .init_timeout
        .unwrap_or(inner.plans.engine.default_timeout);
    let timed_out = || InitError::TimedOut {
        component: spec.name.clone(),
        limit,
    };
    let started = Instant::now();
    // The wait for an init slot counts against the limit: abandoned inits keep theirs.
    let permit = tokio::time::timeout(limit, Arc::clone(&inner.init_permits).acquire_owned())
        .await
        .map_err(|_| timed_out())?
        .map_err(|_| InitError::Thread {
            component: spec.name.clone(),
            reason: "the coordinator is closed".into(),
        })?;
    let job = {
        let (inner, slot) = (Arc::clone(inner), Arc::clone(slot));
        move || {
            let _permit = permit;
            let reservation = super::eviction::admit(&inner, &slot)?;
            let instance = slot
                .provider
                .create(slot.spec(), &slot.config, dependencies)?;
            reservation.commit();
            Ok(instance)
        }
    };
    let task = inner.executor.spawn_with(job, abandon_hooks(slot));
    let remaining = limit.saturating_sub(started.elapsed());
    match inner
        .timeouts
        .run(OperationKind::Init, &spec.name, None, remaining, task)
        .await
    {
        Ok(result) => result,
        Err(Interrupted::Expired) => Err(timed_out()),
        Err(Interrupted::Cancelled) => Err(InitError::Cancelled {
            component: spec.name.clone(),
        }),
    }
}

/// While an abandoned init still runs, the slot says so; its late instance is dropped on
/// its own plugin thread by the executor.
fn abandon_hooks(slot: &Arc<Slot>) -> Hooks {
    let (abandoned, late) = (Arc::clone(slot), Arc::clone(slot));
    Hooks {
        on_abandon: Some(Box::new(move || {
            abandoned.init_abandoned.store(true, Ordering::Release);
        })),
        on_late: Some(Box::new(move || {
            late.init_abandoned.store(false, Ordering::Release);
            tracing::warn!(component = %late.name(), "an abandoned initialisation returned late; its result was dropped");
        })),
    }
}
