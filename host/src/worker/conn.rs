//! The worker's side of its link to the host: frames out under one lock, and the
//! requests plugin code makes of the host (a lock, a dependency, a metric), each waiting
//! for its answer.

use std::{
    cell::RefCell,
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
};

use parking_lot::Mutex;
use plugin_api::PluginError;

use crate::protocol::{FrameWriter, FromWorker, Reply, WorkerRequest, THREAD_HOLDER};

/// The worker's side of the socket.
pub(super) struct Conn {
    writer: Mutex<FrameWriter>,
    pending: Mutex<HashMap<u64, mpsc::SyncSender<Reply>>>,
    next_req: AtomicU64,
    /// The lowest level the host records; records below it are not sent.
    pub(super) log_level: u8,
}

impl Conn {
    pub(super) fn new(writer: FrameWriter, log_level: u8) -> Self {
        Self {
            writer: Mutex::new(writer),
            pending: Mutex::default(),
            next_req: AtomicU64::new(1),
            log_level,
        }
    }

    /// Sends a message; if the host is gone there is nothing left to do.
    pub(super) fn send(&self, message: &FromWorker) {
        if self.writer.lock().write(message).is_err() {
            crate::platform::leave(0);
        }
    }

    /// Asks the host and waits for the answer.
    pub(super) fn request(&self, instance: u64, request: WorkerRequest) -> Reply {
        let req = self.next_req.fetch_add(1, Ordering::Relaxed);
        let (sender, answer) = mpsc::sync_channel(1);
        self.pending.lock().insert(req, sender);
        let call = CALL.with(|call| call.borrow().clone()).or_else(|| {
            // Outside any call: the locks it takes belong to this thread.
            Some((
                THREAD_HOLDER | THREAD_SEQ.with(|seq| *seq),
                "(own thread)".to_owned(),
            ))
        });
        self.send(&FromWorker::Request {
            req,
            instance,
            call,
            request,
        });
        answer
            .recv()
            .unwrap_or_else(|_| Reply::Error(PluginError::failed("the host hung up").into()))
    }

    /// The host answered request `req`.
    pub(super) fn answered(&self, req: u64, reply: Reply) {
        if let Some(waiting) = self.pending.lock().remove(&req) {
            let _ = waiting.send(reply);
        }
    }
}

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// The call this thread serves: its id and method.
    static CALL: RefCell<Option<(u64, String)>> = const { RefCell::new(None) };
    /// This thread's number, for the locks it takes outside calls.
    static THREAD_SEQ: u64 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

/// Runs `f` as call `req` of `method`: the locks its code takes belong to that call.
pub(super) fn as_call<T>(req: u64, method: &str, f: impl FnOnce() -> T) -> T {
    CALL.with(|call| *call.borrow_mut() = Some((req, method.to_owned())));
    let result = f();
    CALL.with(|call| *call.borrow_mut() = None);
    result
}
