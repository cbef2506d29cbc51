//! Whose turn it is to read a worker's link (see `reading`), and the link's reading half.

use std::{
    thread::Thread,
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex};

use crate::{platform::LinkStop, protocol::FrameReader};

/// The link's reading half, and whose turn it is to read it.
pub(super) struct Reading {
    pub(super) reader: Mutex<FrameReader>,
    pub(super) stop: LinkStop,
    pub(super) turn: Mutex<Turn>,
    /// Signalled when a caller lets go with requests still waiting.
    pub(super) turned: Condvar,
    /// Whether reading has ended (the end of the link, or a breach), and its signal.
    pub(super) done: (Mutex<bool>, Condvar),
}

pub(super) struct Turn {
    pub(super) holder: Holder,
    /// When the turn was last let go.
    pub(super) released: Instant,
    /// The callers waiting for an answer that do not read: by request, the thread to
    /// wake when its answer or its turn comes.
    pub(super) followers: Vec<(u64, Thread)>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Holder {
    Nobody,
    /// The caller of this request.
    Caller(u64),
    ReaderThread,
    /// Reading has ended: no one reads again.
    Over,
}

impl Reading {
    pub(super) fn new(reader: FrameReader, stop: LinkStop) -> Self {
        Self {
            reader: Mutex::new(reader),
            stop,
            turn: Mutex::new(Turn {
                holder: Holder::Nobody,
                released: Instant::now(),
                followers: Vec::new(),
            }),
            turned: Condvar::new(),
            done: (Mutex::new(false), Condvar::new()),
        }
    }

    /// Waits up to `limit` for reading to end; whether it has.
    pub(super) fn wait_done(&self, limit: Duration) -> bool {
        let mut done = self.done.0.lock();
        if !*done {
            let _ = self.done.1.wait_for(&mut done, limit);
        }
        *done
    }

    /// Ends the link both ways, so a reader waiting in it sees its end.
    pub(super) fn stop(&self) {
        self.stop.stop();
    }
}
