//! Responses an app thread finished while more requests waited for it,
//! not yet written. With more than one app thread, each writes its own
//! responses (a handed call's sink), and a `send` between two calls runs
//! the client's receive path on this core and leaves the next call with
//! colder caches: Django's JSON view cost 10-20% more CPU per request at
//! `--threads 4` than at `--threads 1`, whose I/O thread writes a burst's
//! responses together. So while requests wait in the queue, a response
//! that ends waits here; an app thread writes what waits before it runs a
//! call that leaves the queue empty, and when it runs out of requests.
//! Nothing waits longer than `HOLD_MAX` (a slow call behind fast ones, or
//! a slow `close()` or hook after the response): the I/O thread writes
//! it, without the GIL.
//!
//! One list for the process: a worker runs one server, and a held response
//! carries its own socket, so any server's I/O thread may write it.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::observe::now_us;
use crate::sink::HandedTx;

/// The longest a response waits here, give or take the I/O thread's wakeup.
const HOLD_MAX: Duration = Duration::from_millis(1);
/// How soon the I/O thread looks again at a sink an app thread held.
const BUSY_RETRY: Duration = Duration::from_micros(100);

static HELD: Held = Held {
    items: Mutex::new(Vec::new()),
    since: AtomicU64::new(0),
    first: Notify::const_new(),
};

struct Held {
    items: Mutex<Vec<HandedTx>>,
    /// When the oldest of `items` was held (`now_us`); 0 while none is.
    since: AtomicU64,
    /// Something was held where nothing was: the I/O thread's clock starts.
    first: Notify,
}

thread_local! {
    /// The app thread's next responses may wait (set per call by the pool).
    static HOLDING: Cell<bool> = const { Cell::new(false) };
}

/// On an app thread, before a call: whether the responses that end on this
/// thread from now on may wait, because more requests wait behind this one.
/// With `false`, what waits is written now, so it waits for no call that
/// leaves the queue empty.
pub fn hold_responses(yes: bool) {
    HOLDING.with(|h| h.set(yes));
    if !yes {
        write_held();
    }
}

/// Whether a response ending on this thread now is to wait.
pub(crate) fn holding() -> bool {
    HOLDING.with(Cell::get)
}

/// Write what waits, now: an app thread out of requests, or about to run
/// a call that leaves the queue empty (`hold_responses(false)`).
pub(crate) fn write_held() {
    if HELD.since.load(Ordering::Relaxed) != 0 {
        for tx in HELD.take() {
            tx.write_out();
        }
    }
}

/// App side: `tx`'s response ended; it waits to be written.
pub(crate) fn hold(tx: HandedTx) {
    let mut items = HELD.lock();
    let first = items.is_empty();
    if first {
        HELD.since.store(now_us().max(1), Ordering::Relaxed);
    }
    items.push(tx);
    drop(items);
    if first {
        // Mostly the I/O thread is on a clock already (requests are
        // queued): then this only leaves a permit, no wakeup.
        HELD.first.notify_one();
    }
}

/// I/O side: write what has waited `HOLD_MAX`. When to look again, if
/// anything still waits.
pub(crate) fn tend() -> Option<Duration> {
    let since = HELD.since.load(Ordering::Relaxed);
    if since == 0 {
        return None;
    }
    let age = Duration::from_micros(now_us().saturating_sub(since));
    if age < HOLD_MAX {
        return Some(HOLD_MAX - age);
    }
    let mut busy = Vec::new();
    for tx in HELD.take() {
        // Never wait for a sink an app thread holds: look again soon.
        if let Err(tx) = tx.try_write_out() {
            busy.push(tx);
        }
    }
    if busy.is_empty() {
        return None;
    }
    let mut items = HELD.lock();
    // Older than anything held since.
    HELD.since.store(since, Ordering::Relaxed);
    items.append(&mut busy);
    Some(BUSY_RETRY)
}

/// I/O side: ready once something is held where nothing was.
pub(crate) async fn held() {
    HELD.first.notified().await;
}

impl Held {
    fn lock(&self) -> MutexGuard<'_, Vec<HandedTx>> {
        self.items.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take(&self) -> Vec<HandedTx> {
        let mut items = self.lock();
        self.since.store(0, Ordering::Relaxed);
        std::mem::take(&mut *items)
    }
}
