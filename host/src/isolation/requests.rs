//! Requests in flight to a worker, each waiting for its own kind of answer: an answer
//! of another kind, or for nothing asked, breaks the protocol. And how a request fails.

use std::{collections::HashMap, sync::mpsc};

use plugin_api::PluginError;

use crate::{
    fault::{CallFault, WorkerFault},
    protocol::{Outcome, WireError},
};

/// Where one request's answer goes: the answer, or the fault that ended its worker first.
type Sender<T> = mpsc::SyncSender<Result<T, WorkerFault>>;

/// What one request waits for.
pub(super) enum Waiter {
    Created(Sender<Result<(), WireError>>),
    /// The outcome, and the CPU time the call spent in the worker.
    Returned(Sender<(Outcome<Vec<u8>>, u64)>),
    Dropped(Sender<()>),
    StreamEnd(Sender<Outcome<()>>),
}

/// An answer the worker sent.
#[derive(Debug)]
pub(super) enum Answer {
    Created(Result<(), WireError>),
    Returned(Outcome<Vec<u8>>, u64),
    Dropped,
    StreamEnd(Outcome<()>),
}

impl Answer {
    /// Its kind, in words (its payload may be as large as a reply: never quoted).
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::Created(_) => "Created",
            Self::Returned(..) => "Returned",
            Self::Dropped => "Dropped",
            Self::StreamEnd(_) => "StreamEnd",
        }
    }
}

impl Waiter {
    /// Hands `answer` over; gives both back if it is not the kind this request waits
    /// for.
    pub(super) fn answer(self, answer: Answer) -> Result<(), (Self, Answer)> {
        match (self, answer) {
            (Self::Created(to), Answer::Created(result)) => drop(to.send(Ok(result))),
            (Self::Returned(to), Answer::Returned(outcome, cpu)) => {
                drop(to.send(Ok((outcome, cpu))));
            }
            (Self::Dropped(to), Answer::Dropped) => drop(to.send(Ok(()))),
            (Self::StreamEnd(to), Answer::StreamEnd(outcome)) => drop(to.send(Ok(outcome))),
            (waiter, answer) => return Err((waiter, answer)),
        }
        Ok(())
    }

    /// Its worker ended before answering: `fault` instead.
    pub(super) fn fail(self, fault: WorkerFault) {
        // A caller that went is no one to tell.
        match self {
            Self::Created(to) => drop(to.send(Err(fault))),
            Self::Returned(to) => drop(to.send(Err(fault))),
            Self::Dropped(to) => drop(to.send(Err(fault))),
            Self::StreamEnd(to) => drop(to.send(Err(fault))),
        }
    }

    /// The kind of answer it waits for, in words.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Self::Created(_) => "Created",
            Self::Returned(_) => "Returned",
            Self::Dropped(_) => "Dropped",
            Self::StreamEnd(_) => "StreamEnd",
        }
    }
}

/// The requests in flight and whether new ones are taken, under one lock: a worker is
/// retired only when nothing is in flight, and nothing is sent to a retired one.
pub(super) struct Requests {
    pub(super) pending: HashMap<u64, Waiter>,
    pub(super) accepting: bool,
}

/// How a request to a worker failed: as its caller sees it (`E`), or not at all because
/// the worker took no new request (it was retiring, or had ended): nothing was sent, so
/// the request may go to another worker.
#[derive(Debug)]
pub(crate) enum Failure<E> {
    Failed(E),
    NotSent,
}

impl Failure<CallFault> {
    /// The fault, for a failure known to be one (not `NotSent`).
    pub(crate) fn into_fault(self) -> CallFault {
        match self {
            Self::Failed(fault) => fault,
            Self::NotSent => CallFault::Plugin(PluginError::failed("its worker took no request")),
        }
    }
}

/// How creating an instance in a worker failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CreateFault {
    /// The plugin's `create` failed (a caught panic included).
    #[error(transparent)]
    Plugin(PluginError),
    /// The worker died first.
    #[error(transparent)]
    Worker(WorkerFault),
}

impl<E: std::fmt::Display> std::fmt::Display for Failure<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Failed(failed) => failed.fmt(f),
            Self::NotSent => f.write_str("the worker was stopping and took no request"),
        }
    }
}

/// What a call's outcome is to its caller.
pub(super) fn call_result<T>(outcome: Result<Outcome<T>, WorkerFault>) -> Result<T, CallFault> {
    match outcome {
        Ok(Outcome::Done(value)) => Ok(value),
        Ok(Outcome::Failed(err)) => Err(CallFault::Plugin(err.into())),
        Ok(Outcome::TooLarge { size, limit }) => Err(CallFault::ReplyTooLarge { size, limit }),
        Err(fault) => Err(CallFault::Worker(fault)),
    }
}
