//! Evicting a component on request: its instance (and, with a cascade, its ready
//! dependents' instances) leave their slots under the slot locks, and are dropped
//! afterwards on the plugin executor, dependents first. No plugin code runs under a slot
//! lock or on an async worker.

use std::{sync::Arc, time::Duration};

use super::{handle::Ready, slot::SlotState, Coordinator, EvictError};
use crate::memory::release_free_memory;

impl Coordinator {
    /// Drops the ready instance of `name` (handles callers hold keep theirs alive until
    /// they let go); the next `get` creates a new one. With `cascade`, ready dependents are
    /// evicted first. Returns the components evicted, dependents first, once their
    /// instances are dropped (or the stop timeout passed; the drop then goes on).
    ///
    /// # Errors
    ///
    /// [`EvictError`] when the component is unknown, not ready, or needed by ready
    /// dependents and `cascade` is false.
    pub async fn evict(&self, name: &str, cascade: bool) -> Result<Vec<String>, EvictError> {
        let mut detached = Vec::new();
        let result = self.detach(name, cascade, &mut detached);
        let names: Vec<String> = detached.iter().map(|(name, _)| name.clone()).collect();
        if !detached.is_empty() {
            self.drop_instances(detached, self.inner.plans.engine.stop_timeout)
                .await;
        }
        result.map(|()| names)
    }

    /// Takes `name`'s instance (dependents' first, with `cascade`) out of its slot.
    fn detach(
        &self,
        name: &str,
        cascade: bool,
        detached: &mut Vec<(String, Arc<Ready>)>,
    ) -> Result<(), EvictError> {
        let slots = self.inner.slots.load_full();
        let slot = slots
            .get(name)
            .ok_or_else(|| EvictError::UnknownComponent {
                name: name.to_owned(),
            })?;
        let state = slot.state.lock();
        if !matches!(*state, SlotState::Ready) {
            return Err(EvictError::NotReady {
                name: name.to_owned(),
                state: state.public(),
            });
        }
        drop(state);
        let mut dependents: Vec<String> = slots
            .values()
            .filter(|other| {
                other.ready.load().is_some() && other.spec().dependencies.iter().any(|d| d == name)
            })
            .map(|other| other.name().to_owned())
            .collect();
        dependents.sort();
        if !dependents.is_empty() && !cascade {
            return Err(EvictError::HasReadyDependents {
                name: name.to_owned(),
                dependents,
            });
        }
        for dependent in &dependents {
            match self.detach(dependent, true, detached) {
                Ok(()) | Err(EvictError::NotReady { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        let mut state = slot.state.lock();
        if matches!(*state, SlotState::Ready) {
            if let Some(ready) = slot.swap_ready(None) {
                *state = SlotState::Evicted;
                tracing::info!(component = %name, "component evicted");
                detached.push((name.to_owned(), ready));
            }
        }
        Ok(())
    }

    /// Drops instances in order on the plugin executor, waiting up to `limit`.
    async fn drop_instances(&self, instances: Vec<(String, Arc<Ready>)>, limit: Duration) {
        let task = self.inner.executor.spawn(move || {
            for (_, ready) in instances {
                // The instance goes now unless a caller still holds a handle.
                drop(ready);
            }
            release_free_memory();
        });
        if tokio::time::timeout(limit, task).await.is_err() {
            tracing::warn!(limit = ?limit, "evicted instances did not finish dropping in time; their drop goes on");
        }
    }
}
