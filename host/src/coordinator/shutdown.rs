//! Stopping one component: its instance is dropped on a thread of its own, under the
//! stop timeout.

use std::{sync::Arc, time::Duration};

use super::slot::{Slot, SlotState};

/// Drops a slot's instance on its own thread; `(name, finished within timeout)`.
pub(super) async fn stop_slot(slot: Arc<Slot>, stop_timeout: Duration) -> (String, bool) {
    let name = slot.name().to_owned();
    *slot.state.lock() = SlotState::Stopped;
    let Some(ready) = slot.ready.swap(None) else {
        return (name, true);
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("stop:{name}"))
        .spawn(move || {
            // Drops the instance now unless a caller still holds a handle; then it goes
            // when the last handle does.
            drop(ready);
            let _ = done_tx.send(());
        });
    let finished = match spawned {
        Ok(_) => tokio::time::timeout(stop_timeout, done_rx).await.is_ok(),
        Err(err) => {
            tracing::error!(component = %name, error = %err, "cannot start the stop thread");
            false
        }
    };
    if finished {
        tracing::info!(component = %name, "component stopped");
    } else {
        tracing::warn!(component = %name, limit = ?stop_timeout, "component did not stop in time; abandoned");
    }
    (name, finished)
}
