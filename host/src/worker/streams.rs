//! The worker's open streams: each item goes to the host as a frame once the host has
//! given credit for it, in items and in bytes (`protocol::charge`; the host keeps the
//! same account and kills a worker that sends past it), and a cancelled stream's next
//! (or waiting) send fails.

use std::{collections::HashMap, sync::Arc};

use abi_stable::std_types::RVec;
use parking_lot::{Condvar, Mutex};

use super::conn::Conn;
use crate::protocol::{charge, FromWorker};

/// What the host allows one stream now.
#[derive(Debug, Default)]
struct Allowed {
    items: u32,
    bytes: u64,
    /// Its consumer has gone.
    cancelled: bool,
}

/// What the host allows one stream: how many items and bytes it may still send (of a
/// window of `window_bytes`), and whether its consumer has gone.
#[derive(Default)]
pub(super) struct StreamCredit {
    state: Mutex<Allowed>,
    changed: Condvar,
    window_bytes: u64,
    /// An item was larger than `[limits] max_reply`: the stream ends with that error.
    too_large: Mutex<Option<u64>>,
}

impl StreamCredit {
    /// The size of the item that was too large to send, if one was.
    pub(super) fn too_large(&self) -> Option<u64> {
        *self.too_large.lock()
    }
}

/// The open streams, by request.
#[derive(Default)]
pub(super) struct OpenStreams {
    open: Mutex<HashMap<u64, Arc<StreamCredit>>>,
}

impl OpenStreams {
    /// Opens stream `req` with `credit` (items, bytes), its whole window.
    pub(super) fn open(&self, req: u64, credit: (u32, u64)) -> Arc<StreamCredit> {
        let state = Arc::new(StreamCredit {
            state: Mutex::new(Allowed {
                items: credit.0,
                bytes: credit.1,
                cancelled: false,
            }),
            window_bytes: credit.1,
            ..StreamCredit::default()
        });
        self.open.lock().insert(req, Arc::clone(&state));
        state
    }

    /// Stream `req` is done.
    pub(super) fn close(&self, req: u64) {
        self.open.lock().remove(&req);
    }

    /// The host granted stream `req` `n` more items and `bytes` more bytes.
    pub(super) fn grant(&self, req: u64, n: u32, bytes: u64) {
        if let Some(state) = self.open.lock().get(&req) {
            let mut allowed = state.state.lock();
            allowed.items = allowed.items.saturating_add(n);
            allowed.bytes = allowed.bytes.saturating_add(bytes);
            drop(allowed);
            state.changed.notify_all();
        }
    }

    /// The consumer of stream `req` has gone.
    pub(super) fn cancel(&self, req: u64) {
        if let Some(state) = self.open.lock().get(&req) {
            state.state.lock().cancelled = true;
            state.changed.notify_all();
        }
    }
}

/// The sink of one stream: each item goes to the host as a frame, once the host has
/// given credit for it.
pub(super) struct StreamFrames {
    pub(super) conn: Arc<Conn>,
    pub(super) req: u64,
    pub(super) credit: Arc<StreamCredit>,
    pub(super) max_reply: usize,
}

impl plugin_api::ffi::StreamSinkObj for StreamFrames {
    fn send(&self, item: RVec<u8>) -> bool {
        if item.len() > self.max_reply {
            *self.credit.too_large.lock() = Some(item.len() as u64);
            return false;
        }
        let cost = charge(item.len(), self.credit.window_bytes);
        let starved =
            |state: &Allowed| (state.items == 0 || state.bytes < cost) && !state.cancelled;
        let mut state = self.credit.state.lock();
        if starved(&state) {
            drop(state);
            self.conn.send(&FromWorker::Starved { req: self.req });
            state = self.credit.state.lock();
            while starved(&state) {
                self.credit.changed.wait(&mut state);
            }
        }
        if state.cancelled {
            return false;
        }
        state.items -= 1;
        state.bytes -= cost;
        drop(state);
        self.conn.send(&FromWorker::Item {
            req: self.req,
            item: item.into_vec(),
        });
        true
    }
}
