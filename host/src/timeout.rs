//! The timeout manager: every timed operation (a component's init, a call) is registered
//! while it runs, so operators can list what is in flight and cancel it by id.
//!
//! Plugin code is synchronous native code and cannot be killed. An expired or cancelled
//! operation stops being *waited for*: its caller gets an error at once, the thread running
//! the plugin code is abandoned, and whatever it returns later is dropped.

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use serde::Serialize;

/// What kind of operation a timeout guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// A component's initialisation (`create`).
    Init,
    /// A call to a component's method.
    Call,
}

impl OperationKind {
    /// `init` or `call`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Init => "init",
            Self::Call => "call",
        }
    }
}

/// One operation running under a timeout.
#[derive(Debug, Clone, Serialize)]
pub struct ActiveTimeout {
    /// Id to cancel it by.
    pub id: u64,
    /// Init or call.
    pub kind: OperationKind,
    /// The component.
    pub component: String,
    /// The method, for calls.
    pub method: Option<String>,
    /// The limit, in milliseconds.
    pub limit_ms: u64,
    /// How long it has run, in milliseconds.
    pub elapsed_ms: u64,
}

/// Counters since the manager was created.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TimeoutStats {
    /// Operations started under a timeout.
    pub started: u64,
    /// Operations whose timeout expired.
    pub expired: u64,
    /// Operations cancelled by id.
    pub cancelled: u64,
    /// Operations running now.
    pub active: u64,
}

/// Why a timed operation ended without its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interrupted {
    /// The limit passed.
    Expired,
    /// Someone cancelled it by id.
    Cancelled,
}

struct Entry {
    kind: OperationKind,
    component: String,
    method: Option<String>,
    limit: Duration,
    started: Instant,
    cancel: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Default)]
struct Inner {
    next_id: AtomicU64,
    active: Mutex<HashMap<u64, Entry>>,
    started: AtomicU64,
    expired: AtomicU64,
    cancelled: AtomicU64,
}

/// Registers, expires and cancels timed operations. Cheap to clone; clones share state.
#[derive(Clone, Default)]
pub struct TimeoutManager {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TimeoutManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeoutManager")
            .field("stats", &self.stats())
            .finish()
    }
}

/// Removes the entry however the operation ends, the caller dropping it included.
struct Registration<'a> {
    inner: &'a Inner,
    id: u64,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.inner.active.lock().remove(&self.id);
    }
}

impl TimeoutManager {
    /// A manager with nothing running.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `operation` until it finishes, `limit` passes, or it is cancelled by id.
    ///
    /// # Errors
    ///
    /// [`Interrupted`] saying which of the two cut it short.
    pub(crate) async fn run<F: Future>(
        &self,
        kind: OperationKind,
        component: &str,
        method: Option<&str>,
        limit: Duration,
        operation: F,
    ) -> Result<F::Output, Interrupted> {
        let inner = &*self.inner;
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (cancel, cancelled) = tokio::sync::oneshot::channel();
        inner.active.lock().insert(
            id,
            Entry {
                kind,
                component: component.to_owned(),
                method: method.map(str::to_owned),
                limit,
                started: Instant::now(),
                cancel: Some(cancel),
            },
        );
        inner.started.fetch_add(1, Ordering::Relaxed);
        let _registration = Registration { inner, id };
        tokio::select! {
            output = operation => Ok(output),
            () = tokio::time::sleep(limit) => {
                inner.expired.fetch_add(1, Ordering::Relaxed);
                Err(Interrupted::Expired)
            }
            Ok(()) = cancelled => {
                inner.cancelled.fetch_add(1, Ordering::Relaxed);
                Err(Interrupted::Cancelled)
            }
        }
    }

    /// Cancels the operation `id`: its caller gets an error now. Returns whether it was
    /// still running.
    pub fn cancel(&self, id: u64) -> bool {
        let sender = self
            .inner
            .active
            .lock()
            .get_mut(&id)
            .and_then(|entry| entry.cancel.take());
        sender.is_some_and(|sender| sender.send(()).is_ok())
    }

    /// The operations running now, oldest first.
    pub fn active(&self) -> Vec<ActiveTimeout> {
        let mut list: Vec<ActiveTimeout> = self
            .inner
            .active
            .lock()
            .iter()
            .map(|(id, entry)| ActiveTimeout {
                id: *id,
                kind: entry.kind,
                component: entry.component.clone(),
                method: entry.method.clone(),
                limit_ms: entry.limit.as_millis() as u64,
                elapsed_ms: entry.started.elapsed().as_millis() as u64,
            })
            .collect();
        list.sort_by_key(|entry| entry.id);
        list
    }

    /// Counters of started, expired and cancelled operations.
    pub fn stats(&self) -> TimeoutStats {
        let inner = &*self.inner;
        TimeoutStats {
            started: inner.started.load(Ordering::Relaxed),
            expired: inner.expired.load(Ordering::Relaxed),
            cancelled: inner.cancelled.load(Ordering::Relaxed),
            active: inner.active.lock().len() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_operation_that_finishes_in_time_returns_its_output_and_leaves_no_entry() {
        let manager = TimeoutManager::new();
        let output = manager
            .run(
                OperationKind::Call,
                "c",
                Some("m"),
                Duration::from_secs(5),
                async { 7 },
            )
            .await;
        assert_eq!(output, Ok(7));
        assert!(manager.active().is_empty());
        assert_eq!(manager.stats().started, 1);
        assert_eq!(manager.stats().expired, 0);
    }

    #[tokio::test]
    async fn an_expired_operation_is_counted_and_removed() {
        let manager = TimeoutManager::new();
        let output = manager
            .run(
                OperationKind::Init,
                "slow",
                None,
                Duration::from_millis(20),
                std::future::pending::<()>(),
            )
            .await;
        assert_eq!(output, Err(Interrupted::Expired));
        assert_eq!(manager.stats().expired, 1);
        assert!(manager.active().is_empty());
    }

    #[tokio::test]
    async fn an_active_operation_is_listed_and_can_be_cancelled_by_id() {
        let manager = TimeoutManager::new();
        let running = {
            let manager = manager.clone();
            tokio::spawn(async move {
                manager
                    .run(
                        OperationKind::Call,
                        "feed",
                        Some("quote"),
                        Duration::from_secs(60),
                        std::future::pending::<()>(),
                    )
                    .await
            })
        };
        let active = loop {
            let active = manager.active();
            if !active.is_empty() {
                break active;
            }
            tokio::task::yield_now().await;
        };
        assert_eq!(active[0].component, "feed");
        assert_eq!(active[0].method.as_deref(), Some("quote"));
        assert_eq!(active[0].limit_ms, 60_000);
        assert!(manager.cancel(active[0].id));
        assert_eq!(running.await.unwrap(), Err(Interrupted::Cancelled));
        assert!(!manager.cancel(active[0].id), "already gone");
        let stats = manager.stats();
        assert_eq!((stats.started, stats.cancelled, stats.active), (1, 1, 0));
    }
}
