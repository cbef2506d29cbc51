//! The worker's side of its link to the host: frames out, in order, and the requests
//! plugin code makes of the host (a lock, a dependency, a metric), each waiting for its
//! answer.
//!
//! Frames queue in one buffer and one thread at a time writes it: a thread that finds
//! another writing leaves its frame to it, so frames sent at once go out in one write.
//! Stream items are written by a thread of their own (the flusher, started with the
//! first item) while the producer makes the next ones: a fast stream crosses the link in
//! batches, not a system call and a wake-up of the host per item.

use std::{
    cell::RefCell,
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc, Once,
    },
};

use bytes::BytesMut;
use parking_lot::{Condvar, Mutex, MutexGuard};
use plugin_api::PluginError;

use crate::protocol::{FrameEncoder, FrameWriter, FromWorker, Reply, WorkerRequest};

/// Queued stream items the producer writes itself rather than leave to the flusher.
const BATCH: usize = 64 << 10;

/// The most buffer the queue keeps between writes.
const RETAINED: usize = 256 << 10;

/// Bit set in the holder ids of worker threads that take locks outside any call, apart
/// from the host's call ids.
const THREAD_HOLDER: u64 = 1 << 62;

/// The worker's side of the socket.
pub(super) struct Conn {
    out: Mutex<Outbox>,
    /// Asks the flusher to write.
    flush: Condvar,
    flusher: Once,
    flusher_runs: AtomicBool,
    /// Held only by the thread that writes.
    writer: Mutex<FrameWriter>,
    pending: Mutex<HashMap<u64, mpsc::SyncSender<Reply>>>,
    next_req: AtomicU64,
    /// The lowest level the host records; records below it are not sent.
    pub(super) log_level: u8,
}

/// Frames encoded and not yet written.
struct Outbox {
    encoder: FrameEncoder,
    frames: BytesMut,
    /// Whether a thread writes: it writes what is queued meanwhile too.
    writing: bool,
    /// Whether the flusher is asked to write.
    asked: bool,
}

impl Conn {
    pub(super) fn new(writer: FrameWriter, max_frame: usize, log_level: u8) -> Self {
        Self {
            out: Mutex::new(Outbox {
                encoder: FrameEncoder::new(max_frame),
                frames: BytesMut::new(),
                writing: false,
                asked: false,
            }),
            flush: Condvar::new(),
            flusher: Once::new(),
            flusher_runs: AtomicBool::new(false),
            writer: Mutex::new(writer),
            pending: Mutex::default(),
            next_req: AtomicU64::new(1),
            log_level,
        }
    }

    /// Sends a message; if the host is gone there is nothing left to do.
    pub(super) fn send(&self, message: &FromWorker) {
        if let Some(out) = self.queue(message) {
            self.write_out(out);
        }
    }

    /// Sends a stream item: written with what follows it while the producer goes on.
    pub(super) fn send_item(self: &Arc<Self>, message: &FromWorker) {
        let flusher = self.flusher_runs();
        let Some(mut out) = self.queue(message) else {
            return;
        };
        if flusher && out.frames.len() < BATCH {
            // The flusher writes it, with what follows.
            out.writing = false;
            let ask = !std::mem::replace(&mut out.asked, true);
            drop(out);
            if ask {
                self.flush.notify_one();
            }
            return;
        }
        self.write_out(out);
    }

    /// Queues `message`; the queue, to write, if no other thread writes it.
    fn queue(&self, message: &FromWorker) -> Option<MutexGuard<'_, Outbox>> {
        let mut out = self.out.lock();
        let Outbox {
            encoder, frames, ..
        } = &mut *out;
        if encoder.encode(message, frames).is_err() {
            // A message too large for a frame: the host would refuse it.
            crate::platform::leave(0);
        }
        if out.writing {
            return None;
        }
        out.writing = true;
        Some(out)
    }

    /// Writes what is queued, and what other threads queue meanwhile, until nothing is.
    fn write_out<'a>(&'a self, mut out: MutexGuard<'a, Outbox>) {
        loop {
            let mut frames = std::mem::take(&mut out.frames);
            drop(out);
            if self.writer.lock().write_encoded(&frames).is_err() {
                crate::platform::leave(0);
            }
            out = self.out.lock();
            if out.frames.is_empty() {
                out.writing = false;
                if frames.capacity() <= RETAINED {
                    frames.clear();
                    out.frames = frames;
                }
                return;
            }
        }
    }

    /// Whether the flusher runs; started on first use.
    fn flusher_runs(self: &Arc<Self>) -> bool {
        self.flusher.call_once(|| {
            let conn = Arc::clone(self);
            let started = std::thread::Builder::new()
                .name("flusher".into())
                .spawn(move || conn.flush_items());
            self.flusher_runs.store(started.is_ok(), Ordering::Release);
        });
        self.flusher_runs.load(Ordering::Acquire)
    }

    /// The flusher: writes what is queued whenever it is asked to.
    fn flush_items(&self) {
        loop {
            let mut out = self.out.lock();
            while !out.asked {
                self.flush.wait(&mut out);
            }
            out.asked = false;
            if out.writing || out.frames.is_empty() {
                continue;
            }
            out.writing = true;
            self.write_out(out);
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
