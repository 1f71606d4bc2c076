//! Finished responses on their way from the app threads to the I/O thread,
//! handed over in batches. Must not block the app side on the I/O side.
//!
//! Each message an app thread sends would wake its connection's task, and
//! a wake from another thread costs an eventfd write when the I/O thread
//! sleeps, often a context switch too on a shared core, and the client a
//! wakeup per response. So messages wait here, in order, while the app
//! thread goes on to the next queued request; when the app thread runs
//! out of requests (`flush_responses`), or `FLUSH_BYTES` wait, or it must
//! wait for a slow client, the I/O thread is woken once for the lot and
//! writes them one after another. Nothing waits long: while any request
//! is with the app side, the I/O thread delivers what is here every
//! `MAX_WAIT` by itself, so a slow call after fast ones (or a stream of
//! small pieces) holds their messages at most that long.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::handler::ResponseMsg;
use crate::response_queue::QueueTx;

/// The longest a message waits for its batch.
const MAX_WAIT: Duration = Duration::from_millis(1);
/// Body bytes that go out without waiting for more.
const FLUSH_BYTES: usize = 64 * 1024;

type Delivery = (QueueTx, ResponseMsg);

#[derive(Default)]
pub(crate) struct Outbox {
    waiting: Mutex<Waiting>,
    /// The app side flushed, or a request went to it: deliver now.
    ready: Notify,
    /// Requests handed to the app side and not yet answered in full.
    in_flight: AtomicUsize,
}

#[derive(Default)]
struct Waiting {
    items: Vec<Delivery>,
    bytes: usize,
}

thread_local! {
    /// The outbox this (app) thread left responses in since its last flush.
    static LEFT_IN: RefCell<Option<Arc<Outbox>>> = const { RefCell::new(None) };
}

/// Write the responses held for the queue to run dry, hand what this thread
/// sent to the I/O thread now, and write out the access-log lines it left
/// pending. An app thread calls it when it has no more requests to run.
pub fn flush_responses() {
    crate::hold::write_held();
    if let Some(outbox) = LEFT_IN.with(|o| o.borrow_mut().take()) {
        outbox.flush();
    }
    crate::access_log::flush_lines();
}

impl Outbox {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wake the I/O thread to deliver what waits.
    pub(crate) fn flush(&self) {
        self.ready.notify_one();
    }

    /// App side: queue `msg` (of `bytes` body bytes) for `tx`, behind what
    /// this response sent before it.
    pub(crate) fn send(self: &Arc<Self>, tx: &QueueTx, msg: ResponseMsg, bytes: usize) {
        let mut w = self.lock();
        w.items.push((tx.clone(), msg));
        w.bytes += bytes;
        let full = w.bytes >= FLUSH_BYTES;
        drop(w);
        if full {
            self.flush();
        }
        LEFT_IN.with(|o| {
            let mut o = o.borrow_mut();
            if o.as_ref().is_none_or(|have| !Arc::ptr_eq(have, self)) {
                if let Some(other) = o.replace(self.clone()) {
                    other.flush();
                }
            }
        });
    }

    /// I/O side: a request went to the app side.
    pub(crate) fn sent(&self) {
        if self.in_flight.fetch_add(1, Ordering::Relaxed) == 0 {
            // Start the delivery timer.
            self.ready.notify_one();
        }
    }

    /// I/O side: a request handed over is answered (or abandoned).
    pub(crate) fn answered(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// I/O side: send what waits on to the connections; on this thread
    /// that wakes their tasks without a syscall.
    fn deliver(&self) {
        let mut items = {
            let mut w = self.lock();
            w.bytes = 0;
            std::mem::take(&mut w.items)
        };
        for (tx, msg) in items.drain(..) {
            tx.deliver(msg);
        }
        // The emptied vector serves the next batch: one allocation less.
        let mut w = self.lock();
        if w.items.capacity() == 0 {
            w.items = items;
        }
    }

    /// The I/O thread's delivery task.
    pub(crate) async fn run(self: Arc<Self>) {
        loop {
            let busy = self.in_flight.load(Ordering::Relaxed) > 0;
            tokio::select! {
                () = self.ready.notified() => {}
                () = tokio::time::sleep(MAX_WAIT), if busy => {}
            }
            self.deliver();
        }
    }
}
