//! The plugin executor: the threads that run plugin code (create, call, drop), apart from
//! the async workers and from tokio's blocking pool, which stays for the host's own
//! blocking work (RSS reads, file I/O, scanning).
//!
//! Plugin code is synchronous native code that may block or hang, and nothing can stop it
//! in-process. So every job gets a thread of its own: a pool keeps idle threads for reuse
//! and starts a new one whenever none is free, so a job never queues behind a stuck one.
//! What bounds the thread count is the callers' own limits (calls in flight per
//! component, init permits), with a hard ceiling as the last line.
//!
//! A [`Task`] is the caller's side of one job. A caller that stops waiting (a timeout, a
//! cancelled future) *abandons* it: the job keeps its thread and whatever it captured
//! (permits, reservations) until it really returns, and its late result is dropped on the
//! plugin thread, so an instance's `Drop` never runs on an async worker.

use std::{
    cell::Cell,
    collections::VecDeque,
    future::Future,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};

use parking_lot::{Condvar, Mutex};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// Idle threads exit after this long without work.
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Threads the pool never goes beyond. Jobs past it queue; the callers' own limits keep
/// the pool far below it.
const MAX_THREADS: usize = 4096;

struct Queue {
    jobs: VecDeque<Job>,
    idle: usize,
}

struct Pool {
    queue: Mutex<Queue>,
    work: Condvar,
    threads: AtomicUsize,
    busy: AtomicUsize,
    /// When (`util::coarse_millis`) the pool last said it is full; 0: never.
    full_said_ms: AtomicU64,
}

/// Runs plugin code on threads of its own. Cheap to clone; clones share the threads.
#[derive(Clone)]
pub(crate) struct PluginExecutor {
    pool: Arc<Pool>,
}

impl std::fmt::Debug for PluginExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginExecutor")
            .field("threads", &self.threads())
            .field("busy", &self.busy())
            .finish()
    }
}

impl Default for PluginExecutor {
    fn default() -> Self {
        Self::new()
    }
}

impl PluginExecutor {
    pub(crate) fn new() -> Self {
        Self {
            pool: Arc::new(Pool {
                queue: Mutex::new(Queue {
                    jobs: VecDeque::new(),
                    idle: 0,
                }),
                work: Condvar::new(),
                threads: AtomicUsize::new(0),
                busy: AtomicUsize::new(0),
                full_said_ms: AtomicU64::new(0),
            }),
        }
    }

    /// Whether the calling thread is one of the plugin executor's.
    pub(crate) fn on_plugin_thread() -> bool {
        ON_PLUGIN_THREAD.with(Cell::get)
    }

    /// Threads alive now, idle ones included.
    pub(crate) fn threads(&self) -> usize {
        self.pool.threads.load(Ordering::Relaxed)
    }

    /// Threads running a job now.
    pub(crate) fn busy(&self) -> usize {
        self.pool.busy.load(Ordering::Relaxed)
    }

    /// Runs `job` on a plugin thread, starting one if none is idle.
    pub(crate) fn execute(&self, job: impl FnOnce() + Send + 'static) {
        let mut queue = self.pool.queue.lock();
        queue.jobs.push_back(Box::new(job));
        // Each queued job needs an idle thread of its own; otherwise start one.
        let enough_idle = queue.idle >= queue.jobs.len();
        drop(queue);
        if enough_idle {
            self.pool.work.notify_one();
        } else if self.pool.threads.load(Ordering::Relaxed) < MAX_THREADS {
            self.start_thread();
        } else {
            // Once a second at most: a pool this full takes jobs by the thousand.
            let now = crate::util::coarse_millis().max(1);
            let last = self.pool.full_said_ms.load(Ordering::Relaxed);
            if (last == 0 || now.saturating_sub(last) >= 1000)
                && self
                    .pool
                    .full_said_ms
                    .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
            {
                tracing::error!(
                    limit = MAX_THREADS,
                    "every plugin thread is busy; plugin jobs wait for one to return"
                );
            }
        }
    }

    fn start_thread(&self) {
        let pool = Arc::clone(&self.pool);
        pool.threads.fetch_add(1, Ordering::Relaxed);
        let spawned = std::thread::Builder::new()
            .name("plugin".into())
            .spawn(move || worker(&pool));
        if let Err(err) = spawned {
            self.pool.threads.fetch_sub(1, Ordering::Relaxed);
            tracing::error!(error = %err, "cannot start a plugin thread; the job waits for a free one");
        }
    }

    /// Runs `job` on a plugin thread and returns the caller's side of it.
    pub(crate) fn spawn<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Task<T> {
        self.spawn_with(job, Hooks::default())
    }

    /// As [`Self::spawn`], with hooks called when the caller abandons the job and when an
    /// abandoned job finally returns.
    pub(crate) fn spawn_with<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
        hooks: Hooks,
    ) -> Task<T> {
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let state = Arc::new(Mutex::new(RUNNING));
        let job_state = Arc::clone(&state);
        let on_late = hooks.on_late;
        self.execute(move || {
            let value = job();
            // The caller's abandon hook runs under this lock, so `on_late` always comes
            // after it.
            let abandoned = {
                let mut state = job_state.lock();
                let abandoned = *state == ABANDONED;
                *state = DONE;
                abandoned
            };
            if abandoned {
                drop(value);
                if let Some(on_late) = on_late {
                    on_late();
                }
            } else {
                // If the receiver is gone, the value comes back and drops here, on this
                // plugin thread.
                let _ = sender.send(value);
            }
        });
        let executor = self.clone();
        Task {
            receiver: Some(receiver),
            state,
            on_abandon: hooks.on_abandon,
            drop_elsewhere: Box::new(move |value| executor.execute(move || drop(value))),
        }
    }
}

thread_local! {
    static ON_PLUGIN_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn worker(pool: &Arc<Pool>) {
    ON_PLUGIN_THREAD.with(|flag| flag.set(true));
    loop {
        let job = {
            let mut queue = pool.queue.lock();
            loop {
                if let Some(job) = queue.jobs.pop_front() {
                    break Some(job);
                }
                queue.idle += 1;
                let timed_out = pool.work.wait_for(&mut queue, KEEP_ALIVE).timed_out();
                queue.idle -= 1;
                if timed_out && queue.jobs.is_empty() {
                    break None;
                }
            }
        };
        let Some(job) = job else { break };
        pool.busy.fetch_add(1, Ordering::Relaxed);
        job();
        pool.busy.fetch_sub(1, Ordering::Relaxed);
    }
    pool.threads.fetch_sub(1, Ordering::Relaxed);
}

const RUNNING: u8 = 0;
const DONE: u8 = 1;
const ABANDONED: u8 = 2;

/// Callbacks around abandonment.
#[derive(Default)]
pub(crate) struct Hooks {
    /// The caller stopped waiting while the job still ran.
    pub(crate) on_abandon: Option<Box<dyn FnOnce() + Send + Sync>>,
    /// An abandoned job returned (on its plugin thread, after its result was dropped).
    pub(crate) on_late: Option<Box<dyn FnOnce() + Send + Sync>>,
}

/// The caller's side of a job on the plugin executor. Await it for the result; drop it
/// to abandon the job.
///
/// The struct itself has no bounds on `T` (the executor's `spawn` has them): a bound here
/// would make the compiler prove `'static` for lifetimes it erases inside async
/// functions, and fail.
pub(crate) struct Task<T> {
    receiver: Option<tokio::sync::oneshot::Receiver<T>>,
    state: Arc<Mutex<u8>>,
    on_abandon: Option<Box<dyn FnOnce() + Send + Sync>>,
    /// Sends a value to a plugin thread to be dropped there.
    drop_elsewhere: Box<dyn Fn(T) + Send + Sync>,
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let Some(receiver) = self.receiver.as_mut() else {
            return Poll::Pending;
        };
        match Pin::new(receiver).poll(cx) {
            Poll::Ready(Ok(value)) => {
                self.receiver = None;
                Poll::Ready(value)
            }
            // The job panicked past its own guards: the pool thread survived, the value
            // is lost. Plugin code never gets here (the adapters catch panics).
            Poll::Ready(Err(_)) => {
                self.receiver = None;
                Poll::Pending
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        let Some(mut receiver) = self.receiver.take() else {
            return;
        };
        {
            let mut state = self.state.lock();
            if *state == RUNNING {
                *state = ABANDONED;
                if let Some(on_abandon) = self.on_abandon.take() {
                    on_abandon();
                }
                return;
            }
        }
        // The job finished first: its value may already wait in the channel. It may own
        // plugin code (an instance), so it is dropped on a plugin thread.
        if let Ok(value) = receiver.try_recv() {
            (self.drop_elsewhere)(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_job_runs_on_a_plugin_thread_and_returns_its_value() {
        let executor = PluginExecutor::new();
        let name = executor
            .spawn(|| std::thread::current().name().map(str::to_owned))
            .await;
        assert_eq!(name.as_deref(), Some("plugin"));
    }

    #[tokio::test]
    async fn a_stuck_job_does_not_delay_the_next_one() {
        let executor = PluginExecutor::new();
        let (release, stuck) = std::sync::mpsc::channel::<()>();
        let first = executor.spawn(move || stuck.recv().is_ok());
        let second = tokio::time::timeout(Duration::from_secs(10), executor.spawn(|| 7))
            .await
            .expect("the second job ran beside the stuck one");
        assert_eq!(second, 7);
        assert!(executor.threads() >= 2);
        release.send(()).unwrap();
        assert!(first.await);
    }

    #[tokio::test]
    async fn an_abandoned_job_drops_its_late_value_on_its_own_thread() {
        struct Noisy(std::sync::mpsc::Sender<Option<String>>);
        impl Drop for Noisy {
            fn drop(&mut self) {
                let _ = self
                    .0
                    .send(std::thread::current().name().map(str::to_owned));
            }
        }
        let executor = PluginExecutor::new();
        let (dropped_tx, dropped_rx) = std::sync::mpsc::channel();
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let abandoned = Arc::new(AtomicUsize::new(0));
        let late = Arc::new(AtomicUsize::new(0));
        let hooks = Hooks {
            on_abandon: Some(Box::new({
                let abandoned = Arc::clone(&abandoned);
                move || {
                    abandoned.fetch_add(1, Ordering::SeqCst);
                }
            })),
            on_late: Some(Box::new({
                let late = Arc::clone(&late);
                move || {
                    late.fetch_add(1, Ordering::SeqCst);
                }
            })),
        };
        let task = executor.spawn_with(
            move || {
                let _ = gate.recv();
                Noisy(dropped_tx)
            },
            hooks,
        );
        let waited = tokio::time::timeout(Duration::from_millis(50), task).await;
        assert!(waited.is_err(), "the job is still blocked");
        assert_eq!(abandoned.load(Ordering::SeqCst), 1);
        release.send(()).unwrap();
        let thread = dropped_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the late value was dropped");
        assert_eq!(thread.as_deref(), Some("plugin"));
        for _ in 0..1000 {
            if late.load(Ordering::SeqCst) == 1 {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(late.load(Ordering::SeqCst), 1);
    }
}
