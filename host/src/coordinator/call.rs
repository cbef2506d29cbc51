//! Calls through the coordinator: on the plugin executor, inside the component's bulkhead,
//! under the call timeout.
//!
//! A call that times out ends the wait, not the work: its caller gets `TimedOut` at once,
//! the locks it took are released, and it keeps its place in the bulkhead until its code
//! really returns. A component whose abandoned calls reach `quarantine_after` fails new
//! calls fast until they do.
//!
//! A call of a component with a CPU budget (`cpu_per_call`) is watched as it runs, and
//! abandoned in the same way once it has used more.

use std::{
    future::Future,
    sync::{
        mpsc::{Receiver, RecvTimeoutError},
        Arc,
    },
    time::{Duration, Instant},
};

use futures::FutureExt;

use super::{
    info::{Bulkhead, SlotInfo},
    CallError, ComponentHandle, Coordinator, GetError,
};
use crate::{
    call_context::{CallOptions, CallToken},
    context::next_call_id,
    executor::Hooks,
    timeout::{Interrupted, OperationKind},
};

impl Coordinator {
    /// Gets `component` and calls `method` on the plugin executor, under its call timeout
    /// (see [`Self::call_timeout`]).
    ///
    /// # Errors
    ///
    /// [`CallError`] for init failures, the component's error, an expired timeout, or a
    /// refusal by the component's bulkhead (saturated, quarantined).
    pub async fn call(
        &self,
        component: &str,
        method: &str,
        input: Vec<u8>,
    ) -> Result<Vec<u8>, CallError> {
        self.call_with(component, method, input, &CallOptions::default())
            .await
    }

    /// [`Self::call`] in the caller's trace, by its deadline if that is sooner than the
    /// call timeout: the component sees both (and whether the call was cancelled)
    /// through its request.
    ///
    /// # Errors
    ///
    /// As [`Self::call`].
    pub async fn call_with(
        &self,
        component: &str,
        method: &str,
        input: Vec<u8>,
        options: &CallOptions,
    ) -> Result<Vec<u8>, CallError> {
        // An undeclared method is refused before anything is loaded.
        if let Some(slot) = self.inner.slots.load().get(component) {
            slot.spec().check_method(method)?;
        }
        let handle = self.get(component).await?;
        self.call_handle(handle, method, input, options).await
    }

    /// Calls `method` of a component already got, on the plugin executor, inside its
    /// bulkhead, under its call timeout.
    pub(crate) async fn call_handle(
        &self,
        handle: ComponentHandle,
        method: &str,
        input: Vec<u8>,
        options: &CallOptions,
    ) -> Result<Vec<u8>, CallError> {
        let component = handle.name().to_owned();
        let result = self.run_call(handle, method, input, options).await;
        if let Err(err) = &result {
            self.note_fault(&component, err);
        }
        result
    }

    async fn run_call(
        &self,
        handle: ComponentHandle,
        method: &str,
        input: Vec<u8>,
        options: &CallOptions,
    ) -> Result<Vec<u8>, CallError> {
        let component = handle.name().to_owned();
        let permit = Bulkhead::enter(&handle.ready.info, &handle.ready.hung, method)?;
        let limit = self.call_limit(&component, method, options);
        let id = next_call_id();
        // With tracing on, the component sees the call's own span as its parent.
        let (span, trace) = crate::telemetry::call_span(&component, method, options);
        let token = Arc::new(
            CallToken::with_trace(options, trace, Some(limit), &self.inner.services.stopping)
                .with_cpu_budget(self.cpu_budget(&component)),
        );
        let hooks = abandon_hooks(&handle, method, id, &token);
        let info = Arc::clone(&handle.ready.info);
        let job_method = method.to_owned();
        let watched = Arc::clone(&token);
        let task = self.inner.executor.spawn_with(
            move || {
                span.in_scope(|| {
                    if let Some(cpu) = token.cpu() {
                        cpu.start_here();
                    }
                    let result = handle.call_as(id, &job_method, &input, Some(token));
                    // The handle first: shutdown waits for calls in flight, and then for
                    // drops, so the permit must not go before a drop has begun.
                    drop(handle);
                    drop(permit);
                    result
                })
            },
            hooks,
        );
        let timed =
            self.inner
                .timeouts
                .run(OperationKind::Call, &component, Some(method), limit, task);
        // Dropping the call when it is over its budget abandons it.
        let timed = match within_budget(timed, &watched).await {
            Ok(timed) => timed,
            Err(spent) => return Err(over_budget(&info, &watched, &component, method, spent)),
        };
        match timed {
            Ok(result) => result,
            Err(Interrupted::Expired) => {
                info.stats.call_timeouts.inc();
                Err(CallError::TimedOut {
                    component,
                    method: method.to_owned(),
                    limit,
                })
            }
            Err(Interrupted::Cancelled) => Err(CallError::Cancelled {
                component,
                method: method.to_owned(),
            }),
        }
    }

    /// [`Self::call_handle`] for a caller that blocks its own thread: the call runs on the
    /// plugin executor and this thread waits for it within the call timeout. Needs no
    /// runtime, so it cannot deadlock a single-threaded one it is called from.
    pub(crate) fn call_handle_waiting(
        &self,
        handle: ComponentHandle,
        method: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, CallError> {
        let component = handle.name().to_owned();
        let result = self.run_call_waiting(handle, method, input);
        if let Err(err) = &result {
            self.note_fault(&component, err);
        }
        result
    }

    fn run_call_waiting(
        &self,
        handle: ComponentHandle,
        method: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, CallError> {
        let component = handle.name().to_owned();
        let permit = Bulkhead::enter(&handle.ready.info, &handle.ready.hung, method)?;
        let options = CallOptions::default();
        let limit = self.call_limit(&component, method, &options);
        let id = next_call_id();
        let token = self.call_token(&component, &options, limit);
        let hooks = abandon_hooks(&handle, method, id, &token);
        let info = Arc::clone(&handle.ready.info);
        let (job_method, input) = (method.to_owned(), input.to_vec());
        let watched = Arc::clone(&token);
        let (send, receive) = std::sync::mpsc::sync_channel(1);
        // Dropping the task before the job returns abandons it, as an expired
        // `Self::call_handle` does: its place in the bulkhead and its locks are handled
        // by the hooks.
        let task = self.inner.executor.spawn_with(
            move || {
                if let Some(cpu) = token.cpu() {
                    cpu.start_here();
                }
                let result = handle.call_as(id, &job_method, &input, Some(token));
                drop(handle);
                drop(permit);
                let _ = send.send(result);
            },
            hooks,
        );
        match wait_within_budget(&receive, limit, &watched) {
            Ok(result) => {
                // The job is returning: let it finish, so that it is not taken for
                // abandoned.
                futures::executor::block_on(task);
                result
            }
            Err(over) => {
                drop(task);
                if let Some(spent) = over {
                    return Err(over_budget(&info, &watched, &component, method, spent));
                }
                info.stats.call_timeouts.inc();
                Err(CallError::TimedOut {
                    component,
                    method: method.to_owned(),
                    limit,
                })
            }
        }
    }

    /// Calls `method` and waits for it on the calling thread, as
    /// [`ComponentHandle::call_blocking`] does: inline on a plugin thread or a thread
    /// outside any tokio runtime (no hop, no timeout), else on the plugin executor while
    /// this thread waits within the call timeout. A component not ready yet is
    /// initialised first on the runtime the coordinator was built in.
    ///
    /// # Errors
    ///
    /// As [`Self::call`]; `ShuttingDown` when a cold component cannot be initialised
    /// because the coordinator was built outside a runtime.
    #[track_caller]
    pub fn call_blocking(
        &self,
        component: &str,
        method: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, CallError> {
        let handle = match self.get(component).now_or_never() {
            Some(got) => got?,
            None => match &self.inner.runtime {
                Some(runtime) if tokio::runtime::Handle::try_current().is_err() => {
                    runtime.block_on(self.get(component))?
                }
                Some(runtime) => {
                    // Inside a runtime: initialise there, wait here.
                    let coordinator = self.clone();
                    let name = component.to_owned();
                    let (send, receive) = std::sync::mpsc::sync_channel(1);
                    runtime.spawn(async move {
                        let _ = send.send(coordinator.get(&name).await);
                    });
                    receive.recv().unwrap_or_else(|_| {
                        Err(GetError::ShuttingDown {
                            name: component.to_owned(),
                        })
                    })?
                }
                None => {
                    return Err(CallError::Get(GetError::ShuttingDown {
                        name: component.to_owned(),
                    }))
                }
            },
        };
        handle.call_blocking(method, input)
    }
    /// A call of `component` failed with `err`. If that is a panic, a timeout or
    /// quarantine and the component runs with `isolation = "auto"`, its next instances
    /// run in a worker: the in-process one is evicted (with its dependents, which hold
    /// handles to it) and dropped once its running calls return.
    fn note_fault(&self, component: &str, err: &CallError) {
        let reason = match err {
            CallError::Failed {
                method,
                source: plugin_api::PluginError::Panicked(report),
                ..
            } => format!("a call of `{method}` panicked: {}", report.message),
            CallError::TimedOut { method, limit, .. } => {
                format!("a call of `{method}` timed out after {limit:?}")
            }
            CallError::CpuBudgetExceeded {
                method,
                budget,
                spent,
                ..
            } => format!(
                "a call of `{method}` used {} of CPU, over its budget of {}",
                crate::util::for_people(*spent),
                humantime::format_duration(*budget)
            ),
            CallError::Quarantined { .. } => "it was quarantined (too many hung calls)".to_owned(),
            _ => return,
        };
        let Some(slot) = self.inner.slots.load().get(component).cloned() else {
            return;
        };
        if !slot.provider.move_to_worker(&reason) {
            return;
        }
        tracing::warn!(component, reason = %reason, "isolation = \"auto\": the component moves to a worker process; its next calls are served there until the host restarts");
        let coordinator = self.clone();
        let name = component.to_owned();
        let evict = async move {
            if let Err(err) = coordinator.evict(&name, true).await {
                tracing::debug!(component = %name, error = %err, "nothing to evict before the move to a worker");
            }
        };
        match &self.inner.runtime {
            Some(runtime) => drop(runtime.spawn(evict)),
            None => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    drop(runtime.spawn(evict));
                }
            }
        }
    }

    /// How long the caller of `component.method` waits: its call timeout, or less if the
    /// caller's deadline comes sooner.
    fn call_limit(&self, component: &str, method: &str, options: &CallOptions) -> Duration {
        let limit = self.call_timeout(component, method);
        options.deadline.map_or(limit, |deadline| {
            limit.min(deadline.saturating_duration_since(Instant::now()))
        })
    }

    /// A new call's context: its caller waits `limit`.
    fn call_token(
        &self,
        component: &str,
        options: &CallOptions,
        limit: Duration,
    ) -> Arc<CallToken> {
        Arc::new(
            CallToken::new(options, Some(limit), &self.inner.services.stopping)
                .with_cpu_budget(self.cpu_budget(component)),
        )
    }

    /// The most CPU time one call of `component` may use (`cpu_per_call`).
    fn cpu_budget(&self, component: &str) -> Option<Duration> {
        self.inner.plans.component(component).cpu_per_call
    }

    /// The timeout for calls to `component.method`, most specific setting first: the
    /// method's (the component's own, then the host's), the component's, the default.
    pub fn call_timeout(&self, component: &str, method: &str) -> Duration {
        let plan = self.inner.plans.component(component);
        plan.operations
            .get(method)
            .copied()
            .or(plan.timeout)
            .unwrap_or(self.inner.plans.engine.default_timeout)
    }
}

/// What happens when a caller abandons a call (its timeout expired) and when that call's
/// code returns at last: its place in the bulkhead is marked, its locks are released.
fn abandon_hooks(handle: &ComponentHandle, method: &str, id: u64, token: &Arc<CallToken>) -> Hooks {
    // Weak: the hook must not keep the instance alive past its last real user.
    let abandoned = Arc::downgrade(&handle.ready);
    let token = Arc::clone(token);
    let late = Arc::clone(&handle.ready.info);
    let late_hung = Arc::clone(&handle.ready.hung);
    let (method_a, method_l) = (method.to_owned(), method.to_owned());
    Hooks {
        on_abandon: Some(Box::new(move || {
            // Its code sees it from now on, and may stop early.
            token.cancel();
            if let Some(ready) = abandoned.upgrade() {
                ready.info.bulkhead.abandon(&ready.hung, &method_a);
                // Its locks end with the wait: nobody is there to release them.
                ready.instance().end_call(id);
            }
        })),
        on_late: Some(Box::new(move || {
            late.bulkhead.returned(&late_hung, &method_l);
            tracing::info!(component = %late.spec.name, method = %method_l, "an abandoned call returned");
        })),
    }
}

/// Awaits `call`; for a call with a CPU budget, looks at the CPU it has used every budget
/// period, and gives up on it once that is over the budget (`Err`: what it had used).
async fn within_budget<T>(call: impl Future<Output = T>, token: &CallToken) -> Result<T, Duration> {
    let Some(budget) = token.cpu() else {
        return Ok(call.await);
    };
    let mut call = std::pin::pin!(call);
    let mut tick = tokio::time::interval(budget.period());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            done = &mut call => return Ok(done),
            _ = tick.tick() => {
                if let Some(spent) = budget.overrun() {
                    return Err(spent);
                }
            }
        }
    }
}

/// Waits up to `limit` for a call's result on `receive`, as [`within_budget`] does for an
/// async caller: `Err(None)` when the limit passed, `Err(Some(spent))` when the call went
/// over its CPU budget.
fn wait_within_budget<T>(
    receive: &Receiver<T>,
    limit: Duration,
    token: &CallToken,
) -> Result<T, Option<Duration>> {
    let Some(budget) = token.cpu() else {
        return receive.recv_timeout(limit).map_err(|_| None);
    };
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(None);
        }
        match receive.recv_timeout(left.min(budget.period())) {
            Ok(result) => return Ok(result),
            // The call's thread dropped it without an answer: nothing more will come.
            Err(RecvTimeoutError::Disconnected) => return Err(None),
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Some(spent) = budget.overrun() {
            return Err(Some(spent));
        }
    }
}

/// The error of a call of `component.method` abandoned after using `spent` of CPU,
/// logged and counted.
fn over_budget(
    info: &SlotInfo,
    token: &CallToken,
    component: &str,
    method: &str,
    spent: Duration,
) -> CallError {
    info.stats.cpu_overruns.inc();
    let budget = token
        .cpu()
        .map_or(Duration::ZERO, crate::cpu::CpuBudget::limit);
    tracing::warn!(
        component,
        method,
        budget = %humantime::format_duration(budget),
        spent = %crate::util::for_people(spent),
        "a call went over its CPU budget (cpu_per_call); it is abandoned as a hung call is"
    );
    CallError::CpuBudgetExceeded {
        component: component.to_owned(),
        method: method.to_owned(),
        budget,
        spent,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    #[test]
    fn a_budgeted_wait_ends_when_its_call_is_dropped_unanswered() {
        let stopping = Arc::new(AtomicBool::new(false));
        let token = CallToken::new(&CallOptions::new(), None, &stopping)
            .with_cpu_budget(Some(Duration::from_secs(1)));
        let (send, receive) = std::sync::mpsc::channel::<()>();
        drop(send);
        let started = Instant::now();
        let result = wait_within_budget(&receive, Duration::from_secs(60), &token);
        assert_eq!(result, Err(None));
        // Without the disconnect ending it, the wait spins until the 60 s limit.
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }
}
