//! Flow control of a worker's stream, the host's side: the worker may have so many items
//! and so many bytes in flight (sent, not yet taken by the consumer), as much as the
//! stream's buffer holds. The consumer's reads grant more, in batches, or at once when
//! the worker says the stream waits for credit; an item past the credit breaks the
//! protocol. The worker keeps the same account (the worker program), by
//! the same rule (`protocol::charge`).

use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::{
    protocol::{charge, ToWorker},
    stream_buffer::{Consumer, MAX_BYTES, MAX_ITEMS},
};

/// Items read before the worker is told it may send that many more.
const ITEM_BATCH: u64 = 64;

/// Bytes read before the worker is told it may send that many more.
const BYTE_BATCH: u64 = (MAX_BYTES / 4) as u64;

/// The credit a stream opens with: items, and bytes. A stream's buffer holds 4 MiB; an
/// isolated one is granted 1 MiB less, which is what its reader may hold of the frame it
/// is reading and decoding: an isolated stream too holds at most 4 MiB of the host's
/// memory (one item larger than that once its buffer is empty).
pub(super) const WINDOW: (u32, u64) = (MAX_ITEMS as u32, (MAX_BYTES - (1 << 20)) as u64);

/// One stream's account.
#[derive(Debug, PartialEq, Eq)]
struct Window {
    /// What the worker may still send.
    items: u64,
    bytes: u64,
    /// What the consumer took and the worker has not been told of yet.
    taken_items: u64,
    taken_bytes: u64,
    /// The worker waits for credit: what the consumer takes is granted at once.
    starved: bool,
}

impl Window {
    fn new() -> Self {
        Self {
            items: u64::from(WINDOW.0),
            bytes: WINDOW.1,
            taken_items: 0,
            taken_bytes: 0,
            starved: false,
        }
    }

    /// An item of `len` bytes came: false if the worker had no credit for it.
    fn spend(&mut self, len: usize) -> bool {
        let cost = charge(len, WINDOW.1);
        if self.items == 0 || cost > self.bytes {
            return false;
        }
        self.items -= 1;
        self.bytes -= cost;
        true
    }

    /// The consumer took an item of `len` bytes; the credit to grant the worker, if it
    /// is time to.
    fn took(&mut self, len: usize) -> Option<(u32, u64)> {
        self.taken_items += 1;
        self.taken_bytes += charge(len, WINDOW.1);
        let due = self.taken_items >= ITEM_BATCH || self.taken_bytes >= BYTE_BATCH;
        if !due && !self.starved {
            return None;
        }
        self.grant()
    }

    /// The worker waits for credit: what the consumer has taken is granted now, or
    /// the next item it takes.
    fn starved(&mut self) -> Option<(u32, u64)> {
        self.starved = true;
        self.grant()
    }

    /// Grants what the consumer has taken, if anything.
    fn grant(&mut self) -> Option<(u32, u64)> {
        if self.taken_items == 0 {
            return None;
        }
        self.starved = false;
        let grant = (
            std::mem::take(&mut self.taken_items),
            std::mem::take(&mut self.taken_bytes),
        );
        // Granted here before the worker hears of it: its items never outrun the window.
        self.items += grant.0;
        self.bytes += grant.1;
        Some((u32::try_from(grant.0).unwrap_or(u32::MAX), grant.1))
    }
}

/// Where a stream's credit and its cancellation go: its worker.
pub(super) trait CreditLink: Send + Sync {
    /// Sends `message` to the worker, from another thread than the caller's (a write may
    /// wait, and the caller may be an async task).
    fn send_later(self: Arc<Self>, message: ToWorker);
}

/// Grants a worker's stream more credit as its consumer reads, and cancels it when the
/// consumer goes.
pub(super) struct Credits {
    worker: Weak<dyn CreditLink>,
    req: u64,
    window: Mutex<Window>,
}

impl Credits {
    pub(super) fn new(worker: Weak<dyn CreditLink>, req: u64) -> Self {
        Self {
            worker,
            req,
            window: Mutex::new(Window::new()),
        }
    }

    /// An item of `len` bytes came: false if the worker had no credit left for it.
    pub(super) fn spend(&self, len: usize) -> bool {
        self.window.lock().spend(len)
    }
}

impl Credits {
    /// The worker said the stream waits for credit.
    pub(super) fn starved(&self) {
        let grant = self.window.lock().starved();
        self.send(grant);
    }

    fn send(&self, grant: Option<(u32, u64)>) {
        let Some((n, bytes)) = grant else {
            return;
        };
        if let Some(worker) = self.worker.upgrade() {
            worker.send_later(ToWorker::Credit {
                req: self.req,
                n,
                bytes,
            });
        }
    }
}

impl Consumer for Credits {
    fn took(&self, len: usize) {
        let grant = self.window.lock().took(len);
        self.send(grant);
    }

    fn gone(&self) {
        if let Some(worker) = self.worker.upgrade() {
            worker.send_later(ToWorker::Cancel { req: self.req });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_holds_so_many_items_and_so_many_bytes() {
        let mut window = Window::new();
        let item = 1 << 20;
        let fit = (WINDOW.1 as usize) / item;
        assert!((0..fit).all(|_| window.spend(item)), "{fit} MiB fit");
        assert!(!window.spend(item), "one more MiB is past the credit");
        let mut small = Window::new();
        assert!((0..WINDOW.0).all(|_| small.spend(1)));
        assert!(!small.spend(1), "one more item is past the credit");
    }

    #[test]
    fn an_item_larger_than_the_window_needs_the_whole_window() {
        let mut window = Window::new();
        assert!(window.spend(1));
        assert!(
            !window.spend(WINDOW.1 as usize * 2),
            "not with bytes in flight"
        );
        assert_eq!(window.took(1), None, "not yet a batch");
        assert_eq!(window.starved(), Some((1, 1)), "it waits: all granted back");
        assert!(
            window.spend(WINDOW.1 as usize * 2),
            "alone, it is one window"
        );
        assert!(!window.spend(1));
    }

    #[test]
    fn credit_is_granted_in_batches_and_when_the_worker_waits_for_it() {
        let mut window = Window::new();
        let batch = u32::try_from(ITEM_BATCH).expect("a small batch");
        for _ in 0..batch + 4 {
            assert!(window.spend(10));
        }
        let grants: Vec<_> = (0..batch + 4).filter_map(|_| window.took(10)).collect();
        assert_eq!(
            grants,
            [(batch, u64::from(batch) * 10)],
            "a batch, and four items held back"
        );
        assert_eq!(window.starved(), Some((4, 40)), "granted when it waits");
        assert_eq!(window, Window::new(), "everything given back");
        assert_eq!(window.starved(), None, "nothing taken, nothing to grant");
        assert!(window.spend(10));
        assert_eq!(window.took(10), Some((1, 10)), "the next take, at once");
        assert_eq!(window.took(0), None, "then batches again");
    }

    #[test]
    fn large_items_are_granted_back_by_the_bytes() {
        let mut window = Window::new();
        let item = 1 << 20;
        assert!(window.spend(item) && window.spend(item));
        assert_eq!(window.took(item), Some((1, item as u64)));
    }
}
