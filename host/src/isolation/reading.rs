//! Who reads what a worker says. One thread at a time reads the link and hands each
//! message on (see `inbound`): a caller waiting for its answer when no one else reads
//! (its answer then wakes no other thread: the round trip crosses two wake-ups, the
//! worker's and its own), otherwise the worker's reader thread, which also reads what the
//! worker says while no call is in flight (logs, its end).
//!
//! A caller that reads keeps reading until its own answer came, handing on the answers
//! of the others meanwhile (they wait for theirs as before); then it lets go. The reader
//! thread takes over when requests still wait, or when no caller has read for
//! [`LINGER`]: a caller that calls again at once reads again itself. The reader thread
//! lets go whenever nothing waits for an answer.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::{Condvar, Mutex};

use super::process::WorkerProcess;
use crate::{
    platform::LinkStop,
    protocol::{FrameReader, FromWorker},
};

/// How long the reader thread leaves the link to callers after the last one let go,
/// when nothing waits: shorter than a caller's pause between calls in a busy loop, long
/// enough that its timer costs nothing measurable.
const LINGER: Duration = Duration::from_millis(2);

/// The link's reading half, and whose turn it is to read it.
pub(super) struct Reading {
    reader: Mutex<FrameReader>,
    stop: LinkStop,
    turn: Mutex<Turn>,
    /// Signalled when a caller lets go with requests still waiting.
    turned: Condvar,
    /// Whether reading has ended (the end of the link, or a breach), and its signal.
    done: (Mutex<bool>, Condvar),
}

struct Turn {
    holder: Holder,
    /// When a caller last let go.
    released: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Holder {
    Nobody,
    Caller,
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

/// Whether to read on.
enum Read {
    On,
    Ended,
}

impl WorkerProcess {
    /// The worker's reader thread: reads when no caller does and someone must.
    pub(super) fn read_in_background(self: &Arc<Self>) {
        while self.take_turn_in_background() {
            loop {
                if let Read::Ended = self.read_one() {
                    return;
                }
                if !self.is_busy() {
                    break;
                }
            }
            self.let_go(Holder::ReaderThread);
        }
    }

    /// Waits for `answer`, reading the link itself while no one else does.
    pub(super) fn await_answer<T>(
        self: &Arc<Self>,
        answer: &std::sync::mpsc::Receiver<T>,
    ) -> Option<T> {
        if self.take_turn_as_caller() {
            let _turn = CallerTurn(self);
            loop {
                if let Ok(answer) = answer.try_recv() {
                    return Some(answer);
                }
                if let Read::Ended = self.read_one() {
                    // Its end fails every request still waiting, this one included.
                    break;
                }
            }
        }
        answer.recv().ok()
    }

    /// Takes the turn to read if no one has it.
    fn take_turn_as_caller(&self) -> bool {
        let mut turn = self.reading.turn.lock();
        if turn.holder != Holder::Nobody {
            return false;
        }
        turn.holder = Holder::Caller;
        true
    }

    /// Waits until the reader thread should read, and takes the turn; `false` once
    /// reading has ended.
    fn take_turn_in_background(&self) -> bool {
        let mut turn = self.reading.turn.lock();
        loop {
            match turn.holder {
                Holder::Over => return false,
                Holder::Nobody => {
                    let idle = turn.released.elapsed();
                    if idle >= LINGER || self.is_busy() {
                        turn.holder = Holder::ReaderThread;
                        return true;
                    }
                    let _ = self.reading.turned.wait_for(&mut turn, LINGER - idle);
                }
                Holder::Caller | Holder::ReaderThread => {
                    let _ = self.reading.turned.wait_for(&mut turn, LINGER);
                }
            }
        }
    }

    /// `holder` lets go of the turn; the reader thread is told if requests still wait.
    fn let_go(&self, holder: Holder) {
        {
            let mut turn = self.reading.turn.lock();
            if turn.holder != holder {
                return;
            }
            turn.holder = Holder::Nobody;
            turn.released = Instant::now();
        }
        if holder == Holder::Caller && self.is_busy() {
            self.reading.turned.notify_one();
        }
    }

    /// Reads one message and hands it on, or ends reading at the link's end or breach.
    fn read_one(self: &Arc<Self>) -> Read {
        let read = self.reading.reader.lock().read::<FromWorker>();
        match read {
            Ok(Some(message)) => {
                self.dispatch(message);
                return Read::On;
            }
            Ok(None) => self.hung_up(),
            // A frame that does not decode, or is too large: a breach.
            Err(err) if err.kind() == std::io::ErrorKind::InvalidData => {
                self.breach(&format!("it sent an unreadable frame: {err}"));
            }
            // The link broke (a worker that died with our frames unread resets it, or
            // died inside a frame): its end, as the kernel will say.
            Err(_) => self.hung_up(),
        }
        self.reading.turn.lock().holder = Holder::Over;
        self.reading.turned.notify_all();
        *self.reading.done.0.lock() = true;
        self.reading.done.1.notify_all();
        Read::Ended
    }
}

/// A caller's turn to read, let go when it has its answer (or unwinds).
struct CallerTurn<'a>(&'a WorkerProcess);

impl Drop for CallerTurn<'_> {
    fn drop(&mut self) {
        self.0.let_go(Holder::Caller);
    }
}
