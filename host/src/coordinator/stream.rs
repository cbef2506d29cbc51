//! Streaming calls: a method that answers many times. The plugin's code runs on the plugin
//! executor, as for a call, and hands each item to a bounded buffer; the caller reads them
//! as an async [`Stream`](futures::Stream). An open stream takes a place in the
//! component's bulkhead until its code returns; a timeout bounds the gap between items
//! (`[timeouts] stream_idle`), not the whole stream; dropping the stream cancels it: the
//! plugin's next `send` fails.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{atomic::Ordering, Arc, Weak},
    task::{Context, Poll},
    time::{Duration, Instant},
};

use parking_lot::Mutex;

use super::{info::Bulkhead, CallError, ComponentHandle, Coordinator, GetError};
use crate::{
    call_context::{CallOptions, CallToken},
    context::{next_call_id, CallScope},
    stream_buffer::StreamQueue,
};

/// Where a streaming method's items go, as an [`super::Instance`] sees it.
#[derive(Clone)]
pub struct ItemSender {
    queue: Arc<StreamQueue<CallError>>,
    info: Arc<super::info::SlotInfo>,
}

impl std::fmt::Debug for ItemSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ItemSender").finish_non_exhaustive()
    }
}

impl ItemSender {
    /// Hands over one item, waiting while the consumer is behind; false once it has gone.
    /// Blocking: call it from the thread running the stream's code.
    pub fn send(&self, item: Vec<u8>) -> bool {
        self.send_with(item.len(), || item)
    }

    /// As [`Self::send`], for an item of `len` bytes made by `make` once there is room for
    /// it (a plugin's item is copied into the host's memory then, not while it waits).
    pub(crate) fn send_with(&self, len: usize, make: impl FnOnce() -> Vec<u8>) -> bool {
        let bytes = len as u64;
        let sent = self.queue.send_with(len, make);
        if sent {
            self.info.stats.stream_items.inc();
            self.info.stats.stream_bytes.add(bytes);
        }
        sent
    }

    /// Whether the consumer has gone.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// The buffer itself, for an isolated stream that feeds it from its worker's frames.
    pub(crate) fn queue(&self) -> &Arc<StreamQueue<CallError>> {
        &self.queue
    }

    /// Counts an item fed without [`Self::send`] (from a worker).
    pub(crate) fn count(&self, bytes: usize) {
        self.info.stats.stream_items.inc();
        self.info.stats.stream_bytes.add(bytes as u64);
    }
}

/// The streams open in a coordinator, by call id, so that a stop can end them.
#[derive(Default)]
pub(crate) struct OpenStreams {
    open: Mutex<HashMap<u64, OpenStream>>,
}

/// An open stream: its component, and its buffer while anything holds it.
type OpenStream = (String, Weak<StreamQueue<CallError>>);

impl OpenStreams {
    fn add(&self, id: u64, component: &str, queue: &Arc<StreamQueue<CallError>>) {
        self.open
            .lock()
            .insert(id, (component.to_owned(), Arc::downgrade(queue)));
    }

    fn remove(&self, id: u64) {
        self.open.lock().remove(&id);
    }

    /// Ends every open stream with `shutting_down` after what it buffered, and tells its
    /// code to stop.
    pub(crate) fn stop_all(&self) {
        let open: Vec<_> = self.open.lock().drain().collect();
        for (_, (component, queue)) in open {
            if let Some(queue) = queue.upgrade() {
                queue.stop(CallError::Get(GetError::ShuttingDown { name: component }));
            }
        }
    }
}

/// The items of one streaming call, as they come: `Ok(item)` each, then the end (a last
/// `Err` if the stream failed). Dropping it cancels the stream.
pub struct ComponentStream {
    queue: Arc<StreamQueue<CallError>>,
    component: String,
    method: String,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
    ended: bool,
    /// The stream's context: dropping the stream cancels it.
    token: Arc<CallToken>,
}

impl std::fmt::Debug for ComponentStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentStream")
            .field("component", &self.component)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl futures::Stream for ComponentStream {
    type Item = Result<Vec<u8>, CallError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.ended {
            return Poll::Ready(None);
        }
        match self.queue.poll_next(cx) {
            Poll::Ready(Some(Ok(item))) => {
                let next = tokio::time::Instant::now() + self.idle;
                self.deadline.as_mut().reset(next);
                Poll::Ready(Some(Ok(item)))
            }
            Poll::Ready(end) => {
                self.ended = true;
                Poll::Ready(end)
            }
            Poll::Pending => {
                if std::future::Future::poll(self.deadline.as_mut(), cx).is_pending() {
                    return Poll::Pending;
                }
                self.ended = true;
                self.queue.close();
                Poll::Ready(Some(Err(CallError::StreamIdle {
                    component: self.component.clone(),
                    method: self.method.clone(),
                    limit: self.idle,
                })))
            }
        }
    }
}

impl Drop for ComponentStream {
    fn drop(&mut self) {
        // Its code sees it through its request, and its next `send` fails.
        self.token.cancel();
        self.queue.close();
    }
}

impl Coordinator {
    /// Gets `component` and opens a stream of streaming method `method`: its code runs on
    /// the plugin executor, holding a place in the component's bulkhead until it returns.
    ///
    /// # Errors
    ///
    /// [`CallError`]: the method does not stream (`not_a_stream`), init failures, or a
    /// refusal by the bulkhead. Errors while it streams end the stream as its last item.
    pub async fn stream(
        &self,
        component: &str,
        method: &str,
        input: Vec<u8>,
    ) -> Result<ComponentStream, CallError> {
        self.stream_with(component, method, input, &CallOptions::default())
            .await
    }

    /// [`Self::stream`] in the caller's trace (a stream has no deadline: its idle
    /// timeout bounds the gaps between items). Its code sees the trace, and whether the
    /// stream was dropped, through its request.
    ///
    /// # Errors
    ///
    /// As [`Self::stream`].
    pub async fn stream_with(
        &self,
        component: &str,
        method: &str,
        input: Vec<u8>,
        options: &CallOptions,
    ) -> Result<ComponentStream, CallError> {
        // An undeclared stream is refused before anything is loaded.
        if let Some(slot) = self.inner.slots.load().get(component) {
            slot.spec().check_stream_method(method)?;
        }
        let handle = self.get(component).await?;
        self.stream_handle(handle, method, input, options)
    }

    fn stream_handle(
        &self,
        handle: ComponentHandle,
        method: &str,
        input: Vec<u8>,
        options: &CallOptions,
    ) -> Result<ComponentStream, CallError> {
        let info = Arc::clone(&handle.ready.info);
        info.spec.check_stream_method(method)?;
        let permit = Bulkhead::enter(&info, &handle.ready.hung, method)?;
        let queue = StreamQueue::new();
        let sender = ItemSender {
            queue: Arc::clone(&queue),
            info: Arc::clone(&info),
        };
        info.touch();
        info.stats.calls.inc();
        info.stats.streams_open.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let (name, job_method) = (handle.name().to_owned(), method.to_owned());
        let id = next_call_id();
        let (span, trace) = crate::telemetry::call_span(&name, method, options);
        let token = Arc::new(CallToken::with_trace(
            options,
            trace,
            None,
            &self.inner.services.stopping,
        ));
        let job_token = Arc::clone(&token);
        let coordinator = Arc::clone(&self.inner);
        coordinator.streams.add(id, &name, &queue);
        if self.is_shutting_down() {
            // A stop that began since `get`: it may have missed this stream.
            coordinator.streams.stop_all();
        }
        self.inner.executor.execute(move || {
            span.in_scope(|| {
                let scope = CallScope::enter(id, &job_method, Some(job_token));
                let result = handle.ready.instance().stream(&job_method, &input, &sender);
                drop(scope);
                handle.ready.instance().end_call(id);
                let result = result.map_err(|fault| handle.fault_error(&job_method, fault));
                if result.is_err() {
                    info.stats.call_errors.inc();
                }
                sender.queue.finish(result);
                coordinator.streams.remove(id);
                info.stats.streams_open.fetch_sub(1, Ordering::Relaxed);
                info.stats
                    .stream_duration
                    .record(started.elapsed().as_secs_f64());
                drop(handle);
                drop(permit);
            });
        });
        let idle = self.stream_idle(&name, method);
        Ok(ComponentStream {
            queue,
            component: name,
            method: method.to_owned(),
            idle,
            deadline: Box::pin(tokio::time::sleep(idle)),
            ended: false,
            token,
        })
    }

    /// The longest gap between two items of `component`'s stream `method`:
    /// `[timeouts] stream_idle`.
    pub fn stream_idle(&self, component: &str, method: &str) -> Duration {
        let _ = (component, method);
        self.inner.plans.engine.stream_idle
    }
}
