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
pub(crate) const MAX_ITEMS: usize = 256;

/// Bytes a stream buffers at most (one larger item always fits when the buffer is empty).
pub(crate) const MAX_BYTES: usize = 4 << 20;

/// What happens when the consumer takes an item or goes: an isolated stream grants its
/// worker credit, or cancels it.
pub(crate) trait Consumer: Send + Sync {
    /// The consumer took an item of `len` bytes: there is room for one more.
    fn took(&self, len: usize);
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
    #[cfg(test)]
    pub(crate) fn send(&self, item: Vec<u8>) -> bool {
        self.send_with(item.len(), || item)
    }

    /// As [`Self::send`], for an item of `len` bytes made by `make` only once there is
    /// room for it: a producer that waits holds no copy of its item in the host.
    pub(crate) fn send_with(&self, len: usize, make: impl FnOnce() -> Vec<u8>) -> bool {
        let mut state = self.state.lock();
        loop {
            if self.is_closed() {
                return false;
            }
            let full = state.items.len() >= MAX_ITEMS
                || (!state.items.is_empty() && state.bytes + len > MAX_BYTES);
            if !full {
                break;
            }
            self.room.wait(&mut state);
        }
        let item = make();
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
            drop(state);
            self.room.notify_one();
            if let Some(consumer) = self.consumer.lock().as_ref() {
                consumer.took(item.len());
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

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::AtomicUsize,
        task::{Poll, Waker},
        time::Duration,
    };

    use super::*;

    type Queue = Arc<StreamQueue<String>>;

    fn poll(queue: &Queue) -> Poll<Option<Result<Vec<u8>, String>>> {
        queue.poll_next(&mut Context::from_waker(Waker::noop()))
    }

    /// Sends `item` from another thread; whether it went through within `wait`.
    fn sent_within(queue: &Queue, item: Vec<u8>, wait: Duration) -> bool {
        let queue = Arc::clone(queue);
        let (done, sent) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(queue.send(item));
        });
        sent.recv_timeout(wait).unwrap_or(false)
    }

    #[test]
    fn a_full_buffer_holds_the_producer_until_the_consumer_takes_an_item() {
        let queue: Queue = StreamQueue::new();
        for n in 0..MAX_ITEMS {
            assert!(queue.send(vec![n as u8]), "item {n} fits");
        }
        let (done, sent) = std::sync::mpsc::channel();
        let producer = Arc::clone(&queue);
        std::thread::spawn(move || done.send(producer.send(vec![0])));
        assert!(
            sent.recv_timeout(Duration::from_millis(100)).is_err(),
            "the 65th item waits"
        );
        assert_eq!(poll(&queue), Poll::Ready(Some(Ok(vec![0]))));
        assert_eq!(sent.recv_timeout(Duration::from_secs(10)), Ok(true));
    }

    #[test]
    fn the_buffer_holds_so_many_bytes_but_one_larger_item_when_empty() {
        let queue: Queue = StreamQueue::new();
        let large = vec![0u8; MAX_BYTES * 2];
        assert!(queue.send(large.clone()), "alone, any size");
        assert!(
            !sent_within(&queue, vec![1], Duration::from_millis(100)),
            "nothing more while it is buffered"
        );
        assert_eq!(poll(&queue), Poll::Ready(Some(Ok(large))));
        let bytes: Queue = StreamQueue::new();
        let half = vec![2u8; MAX_BYTES / 2];
        assert!(bytes.send(half.clone()) && bytes.send(half.clone()));
        assert!(
            !sent_within(&bytes, vec![3], Duration::from_millis(100)),
            "4 MiB buffered: full"
        );
    }

    #[test]
    fn the_end_comes_after_every_item_and_once() {
        let queue: Queue = StreamQueue::new();
        assert!(queue.send(vec![1]));
        queue.finish(Err("failed".into()));
        queue.finish(Ok(()));
        assert_eq!(poll(&queue), Poll::Ready(Some(Ok(vec![1]))));
        assert_eq!(poll(&queue), Poll::Ready(Some(Err("failed".into()))));
        assert_eq!(poll(&queue), Poll::Ready(None));
        let open: Queue = StreamQueue::new();
        assert_eq!(poll(&open), Poll::Pending);
    }

    #[test]
    fn a_consumer_that_goes_fails_the_producers_send_and_drops_what_was_buffered() {
        let queue: Queue = StreamQueue::new();
        assert!(queue.send(vec![1]));
        queue.close();
        assert!(!queue.send(vec![2]), "the consumer has gone");
        assert!(queue.is_closed());
        let stopped: Queue = StreamQueue::new();
        assert!(stopped.send(vec![1]));
        stopped.stop("shutting_down".into());
        assert!(!stopped.send(vec![2]));
        assert_eq!(poll(&stopped), Poll::Ready(Some(Ok(vec![1]))), "kept");
        assert_eq!(
            poll(&stopped),
            Poll::Ready(Some(Err("shutting_down".into())))
        );
    }

    /// Counts what a consumer is told.
    #[derive(Default)]
    struct Counting {
        took: AtomicUsize,
        gone: AtomicBool,
    }

    impl Consumer for Counting {
        fn took(&self, len: usize) {
            self.took.fetch_add(len, Ordering::SeqCst);
        }

        fn gone(&self) {
            self.gone.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn the_consumer_hears_of_every_item_taken_and_of_its_end() {
        let queue: Queue = StreamQueue::new();
        let counting = Arc::new(Counting::default());
        queue.set_consumer(Arc::clone(&counting) as Arc<dyn Consumer>);
        assert!(queue.push(vec![0; 10]) && queue.push(vec![0; 5]));
        let _ = poll(&queue);
        let _ = poll(&queue);
        assert_eq!(counting.took.load(Ordering::SeqCst), 15);
        queue.close();
        assert!(counting.gone.load(Ordering::SeqCst));
        assert!(!queue.push(vec![1]), "nothing is taken after");
    }
}
