//! A component looked up once by name, for callers that ask for it again and again.
//!
//! [`Coordinator::get`] pays for a registry snapshot, a name lookup and a load of the
//! ready instance (about 5x an `OnceLock<Arc<_>>` get and clone). A resolved component
//! remembers its slot and, weakly, the instance it last handed out, with the slot's
//! generation: while the generation has not moved, `get` is one atomic load and one
//! reference count increment. The cache is weak so that holding a resolved component
//! never keeps an evicted instance alive.

use std::sync::{atomic::Ordering, Arc, Weak};

use super::{handle::Ready, slot::Slot, ComponentHandle, Coordinator, GetError};

/// A component resolved by [`Coordinator::resolve`]. Cloning is cheap; each clone keeps
/// its own cache, so give each task or thread its own.
///
/// A component whose instance is ready is never unregistered (a changed or removed file
/// only marks it), so the resolved slot stays right while it is ready; when it is not,
/// `get` goes through the coordinator by name like [`Coordinator::get`].
#[derive(Clone)]
pub struct ResolvedComponent {
    coordinator: Coordinator,
    slot: Arc<Slot>,
    /// The instance last handed out and the slot's generation then.
    cached: Option<(u64, Weak<Ready>)>,
}

impl std::fmt::Debug for ResolvedComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedComponent")
            .field("name", &self.name())
            .finish()
    }
}

impl Coordinator {
    /// Looks component `name` up once, for many [`ResolvedComponent::get`]s.
    ///
    /// # Errors
    ///
    /// [`GetError::UnknownComponent`] when no such component is registered,
    /// [`GetError::Unusable`] when the file that provided it cannot be used now.
    pub fn resolve(&self, name: &str) -> Result<ResolvedComponent, GetError> {
        let slot = self
            .inner
            .slots
            .load()
            .get(name)
            .cloned()
            .ok_or_else(|| self.not_registered(name))?;
        Ok(ResolvedComponent {
            coordinator: self.clone(),
            slot,
            cached: None,
        })
    }
}

impl ResolvedComponent {
    /// The component if its instance is ready, without waiting for anything: the
    /// instance handed out last time, if it is still the slot's. `None` when it is not
    /// ready, or was replaced since: [`Self::get`] then does the rest.
    #[inline]
    pub fn get_ready(&mut self) -> Option<ComponentHandle> {
        let (generation, cached) = self.cached.as_ref()?;
        if self.slot.ready_generation.load(Ordering::Acquire) != *generation {
            return None;
        }
        let ready = cached.upgrade()?;
        ready.info.touch();
        Some(ComponentHandle { ready })
    }

    /// The component's name.
    pub fn name(&self) -> &str {
        self.slot.name()
    }

    /// The component, initialising it and its dependencies first if needed, as
    /// [`Coordinator::get`] does. A ready component is found before the future is made
    /// (a ready future, not a state machine that looks on its first poll).
    ///
    /// # Errors
    ///
    /// As [`Coordinator::get`].
    #[inline]
    pub fn get(
        &mut self,
    ) -> impl std::future::Future<Output = Result<ComponentHandle, GetError>> + Send + '_ {
        use futures::future::Either;
        match self.get_ready() {
            Some(handle) => Either::Left(std::future::ready(Ok(handle))),
            // Boxed, so that the ready case's future stays small (it is moved whole).
            None => Either::Right(Box::pin(self.get_slow())),
        }
    }

    /// [`Self::get`] when the cached instance is not the slot's ready one.
    async fn get_slow(&mut self) -> Result<ComponentHandle, GetError> {
        let handle = match self.slot.ready.load_full() {
            Some(ready) => {
                ready.info.touch();
                ComponentHandle { ready }
            }
            None => self.coordinator.get(self.name()).await?,
        };
        // Cached only if it is this slot's instance now (a name looked up anew may have
        // found another slot), as of a generation that did not move while we looked.
        let generation = self.slot.ready_generation.load(Ordering::Acquire);
        let current = self
            .slot
            .ready
            .load()
            .as_ref()
            .is_some_and(|ready| Arc::ptr_eq(ready, &handle.ready));
        self.cached = (current && self.slot.ready_generation.load(Ordering::Acquire) == generation)
            .then(|| (generation, Arc::downgrade(&handle.ready)));
        Ok(handle)
    }
}
