//! Who reads what a worker says. One thread at a time reads the link and hands each
//! message on (see `inbound`): a caller waiting for its answer when no one else reads
//! (its answer then wakes no other thread: the round trip crosses two wake-ups, the
//! worker's and its own), otherwise the worker's reader thread, which also reads what the
//! worker says while no call is in flight (logs, its end).
//!
//! A caller that reads (the leader) keeps reading until its own answer came, handing on
//! the answers of the others meanwhile, each to its caller (a follower, parked until its
//! answer or its turn comes); then it hands the turn to a follower, which is woken once,
//! to lead, and then reads its own answer itself. With no follower the turn is free: the
//! reader thread takes it when no caller has read for [`LINGER`], so a caller that calls
//! again at once reads again itself. The reader thread lets go whenever nothing waits
//! for an answer.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use super::{process::WorkerProcess, turn::Holder};
use crate::protocol::FromWorker;

/// How long the reader thread leaves the link to callers after the last one let go,
/// when nothing waits: shorter than a caller's pause between calls in a busy loop, long
/// enough that its timer costs nothing measurable.
const LINGER: Duration = Duration::from_millis(2);

/// What a waiting caller does.
enum Role {
    Lead,
    Follow,
    Over,
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

    /// Waits for the answer to request `req` on `answer`, reading the link itself
    /// while no one else does.
    pub(super) fn await_answer<T>(
        self: &Arc<Self>,
        req: u64,
        answer: &std::sync::mpsc::Receiver<T>,
    ) -> Option<T> {
        loop {
            if let Ok(answer) = answer.try_recv() {
                self.leave(req);
                return Some(answer);
            }
            match self.lead_or_follow(req) {
                Role::Lead => {
                    let _turn = CallerTurn(self, req);
                    loop {
                        if let Ok(answer) = answer.try_recv() {
                            return Some(answer);
                        }
                        if let Read::Ended = self.read_one() {
                            break;
                        }
                    }
                }
                Role::Follow => {
                    // Its answer may have come before it was listed to be woken.
                    if let Ok(answer) = answer.try_recv() {
                        self.leave(req);
                        return Some(answer);
                    }
                    std::thread::park();
                    continue;
                }
                Role::Over => {}
            }
            // Reading has ended: its end fails every request still waiting, this one
            // included.
            self.leave(req);
            return answer.recv().ok();
        }
    }

    /// Takes the turn to read for request `req` if it is free or was handed to it;
    /// otherwise lists it to be woken.
    fn lead_or_follow(&self, req: u64) -> Role {
        let mut turn = self.reading.turn.lock();
        match turn.holder {
            Holder::Over => return Role::Over,
            Holder::Caller(holder) if holder == req => return Role::Lead,
            Holder::Nobody => {
                turn.holder = Holder::Caller(req);
                turn.followers.retain(|(follower, _)| *follower != req);
                return Role::Lead;
            }
            Holder::Caller(_) | Holder::ReaderThread => {}
        }
        if !turn.followers.iter().any(|(follower, _)| *follower == req) {
            turn.followers.push((req, std::thread::current()));
        }
        Role::Follow
    }

    /// The caller of request `req` has its answer: it is no longer woken, and a turn
    /// handed to it meanwhile goes on.
    fn leave(&self, req: u64) {
        let handed = {
            let mut turn = self.reading.turn.lock();
            turn.followers.retain(|(follower, _)| *follower != req);
            turn.holder == Holder::Caller(req)
        };
        if handed {
            self.let_go(Holder::Caller(req));
        }
    }

    /// Wakes every caller waiting as a follower: the worker ended, and their requests
    /// have failed.
    pub(super) fn wake_followers(&self) {
        for (_, thread) in &self.reading.turn.lock().followers {
            thread.unpark();
        }
    }

    /// Wakes the caller of request `req` if it waits as a follower: its answer came.
    pub(super) fn wake_follower(&self, req: u64) {
        let thread = {
            let turn = self.reading.turn.lock();
            turn.followers
                .iter()
                .find(|(follower, _)| *follower == req)
                .map(|(_, thread)| thread.clone())
        };
        if let Some(thread) = thread {
            thread.unpark();
        }
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
                Holder::Caller(_) | Holder::ReaderThread => {
                    let _ = self.reading.turned.wait_for(&mut turn, LINGER);
                }
            }
        }
    }

    /// `holder` lets go of the turn: to the first follower if there is one (it is woken
    /// to lead), else to no one (the reader thread is told if requests still wait).
    fn let_go(&self, holder: Holder) {
        let mut turn = self.reading.turn.lock();
        if turn.holder != holder {
            return;
        }
        turn.released = Instant::now();
        if !turn.followers.is_empty() {
            let (req, thread) = turn.followers.remove(0);
            turn.holder = Holder::Caller(req);
            drop(turn);
            // Woken outside the lock, which it takes at once.
            thread.unpark();
            return;
        }
        turn.holder = Holder::Nobody;
        drop(turn);
        if holder != Holder::ReaderThread && self.is_busy() {
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
        {
            let mut turn = self.reading.turn.lock();
            turn.holder = Holder::Over;
            for (_, thread) in turn.followers.drain(..) {
                thread.unpark();
            }
        }
        self.reading.turned.notify_all();
        *self.reading.done.0.lock() = true;
        self.reading.done.1.notify_all();
        Read::Ended
    }
}

/// The turn to read of the caller of a request, let go when it has its answer (or
/// unwinds).
struct CallerTurn<'a>(&'a WorkerProcess, u64);

impl Drop for CallerTurn<'_> {
    fn drop(&mut self) {
        self.0.let_go(Holder::Caller(self.1));
    }
}
