//! The buffer between a stream's producer (plugin code on a plugin thread, or an isolated
//! worker's frames) and its consumer (an async task): bounded in items and in bytes, so a
//! consumer that reads nothing holds the producer, not the host's memory.

use std::{
    collections::VecDeque,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{Context, Poll},
};

use futures::task::AtomicWaker;
use parking_lot::{Condvar, Mutex};

/// Items a stream buffers at most.
pub(crate) const MAX_ITEMS: usize = 64;

/// Bytes a stream buffers at most (one larger item always fits when the buffer is empty).
pub(crate) const MAX_BYTES: usize = 4 << 20;

/// What happens when the consumer takes an item or goes: an isolated stream grants its
/// worker credit, or cancels it.
pub(crate) trait Consumer: Send + Sync {
    /// The consumer took an item of `len` bytes: there is room for one more (`drained`:
    /// the buffer is empty now).
    fn took(&self, len: usize, drained: bool);
    /// The consumer went.
    fn gone(&self);
}

struct State<E> {
    items: VecDeque<Vec<u8>>,
    bytes: usize,
    /// How the stream ended, once the producer said so.
    end: Option<Result<(), E>>,
}

/// One stream's buffer; `E` is how a stream fails.
pub(crate) struct StreamQueue<E> {
    state: Mutex<State<E>>,
    room: Condvar,
    waker: AtomicWaker,
    consumer_gone: AtomicBool,
    consumer: Mutex<Option<Arc<dyn Consumer>>>,
}

/// What a worker's frames feed: items, within the credit it was given.
pub(crate) trait ItemSink: Send + Sync {
    /// Hands over one item without waiting; false once the consumer has gone.
    fn push(&self, item: Vec<u8>) -> bool;
    /// Tells `consumer` about the consumer's reads and its end.
    fn set_consumer(&self, consumer: Arc<dyn Consumer>);
}

impl<E: Send> ItemSink for StreamQueue<E> {
    fn push(&self, item: Vec<u8>) -> bool {
        if self.is_closed() {
            return false;
        }
        let mut state = self.state.lock();
        state.bytes += item.len();
        state.items.push_back(item);
        drop(state);
        self.waker.wake();
        true
    }

    fn set_consumer(&self, consumer: Arc<dyn Consumer>) {
        *self.consumer.lock() = Some(consumer);
    }
}

impl<E> StreamQueue<E> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                bytes: 0,
                end: None,
            }),
            room: Condvar::new(),
            waker: AtomicWaker::new(),
            consumer_gone: AtomicBool::new(false),
            consumer: Mutex::new(None),
        })
    }

    /// Whether the consumer has gone.
    pub(crate) fn is_closed(&self) -> bool {
        self.consumer_gone.load(Ordering::Acquire)
    }

    /// Hands over one item, waiting while the buffer is full; false once the consumer has
    /// gone. Blocking: for plugin threads.
    pub(crate) fn send(&self, item: Vec<u8>) -> bool {
        let mut state = self.state.lock();
        loop {
            if self.is_closed() {
                return false;
            }
            let full = state.items.len() >= MAX_ITEMS
                || (!state.items.is_empty() && state.bytes + item.len() > MAX_BYTES);
            if !full {
                break;
            }
            self.room.wait(&mut state);
        }
        state.bytes += item.len();
        state.items.push_back(item);
        drop(state);
        self.waker.wake();
        true
    }

    /// The producer is done: how the stream ended. Only the first end counts.
    pub(crate) fn finish(&self, result: Result<(), E>) {
        let mut state = self.state.lock();
        if state.end.is_none() {
            state.end = Some(result);
        }
        drop(state);
        self.waker.wake();
    }

    /// The next item, the end (`Some(Err)` once, then `None`), or pending.
    pub(crate) fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Vec<u8>, E>>> {
        self.waker.register(cx.waker());
        let mut state = self.state.lock();
        if let Some(item) = state.items.pop_front() {
            state.bytes -= item.len();
            let drained = state.items.is_empty();
            drop(state);
            self.room.notify_one();
            if let Some(consumer) = self.consumer.lock().as_ref() {
                consumer.took(item.len(), drained);
            }
            return Poll::Ready(Some(Ok(item)));
        }
        match state.end.take() {
            Some(Err(err)) => {
                state.end = Some(Ok(()));
                Poll::Ready(Some(Err(err)))
            }
            Some(Ok(())) => {
                state.end = Some(Ok(()));
                Poll::Ready(None)
            }
            None => Poll::Pending,
        }
    }

    /// The consumer goes: the producer's next (or waiting) send fails.
    pub(crate) fn close(&self) {
        if self.consumer_gone.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state.lock();
        state.items.clear();
        state.bytes = 0;
        drop(state);
        self.stop_producer();
    }

    /// The host ends the stream: the consumer gets what is buffered, then `err`; the
    /// producer's next (or waiting) send fails.
    pub(crate) fn stop(&self, err: E) {
        self.finish(Err(err));
        self.stop_producer();
    }

    fn stop_producer(&self) {
        if self.consumer_gone.swap(true, Ordering::AcqRel) {
            return;
        }
        self.room.notify_all();
        if let Some(consumer) = self.consumer.lock().take() {
            consumer.gone();
        }
    }
}
