//! `bytes` objects made ahead of need by the app threads, for the I/O
//! thread to receive request bodies into when it does not hold the GIL
//! (`--threads` > 1, whose I/O thread never does, and the first body of a
//! turn with one thread): it may not wait for the GIL to make one, so it
//! takes a spare, and the app thread cuts it to the body's length before
//! the call (`LentBody::filled`).
//!
//! Made on demand: a body that found no spare raises how many are kept and
//! their size (the largest such body), up to `MAX_SPARES` and `SPARE_BYTES`
//! in all. A body with a spare is not also held in the connection's buffer,
//! so in flight they cost no more memory than before; the idle ones cost at
//! most `SPARE_BYTES` per worker, however large `--request-buffer` is, and
//! only until `IDLE_US` passes without a body taking one.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use oxgate_server::observe::now_us;
use oxgate_server::BodyBuffer;
use pyo3::prelude::*;

use crate::lent_body::{LentBody, LEND_MIN};

/// Spares kept at most: a turn of the I/O loop may read several bodies
/// before an app thread runs to make more...
const MAX_SPARES: usize = 16;
/// ...and their bytes: 16 bodies of the default `--request-buffer`, one of
/// the largest body lent. Larger bodies are copied as before.
const SPARE_BYTES: usize = 1 << 20;
/// Spares none took for this long are freed, and made again on demand.
const IDLE_US: u64 = 10_000_000;

#[derive(Default)]
pub struct SpareBodies {
    spares: Mutex<Vec<LentBody>>,
    /// How many there are, read without the lock after every request.
    have: AtomicUsize,
    /// How many to keep: one more for every body that found none.
    wanted: AtomicUsize,
    /// Their size: the largest body that found none.
    size: AtomicUsize,
    /// When a body last asked for one (`now_us`).
    asked: AtomicU64,
}

impl SpareBodies {
    fn lock(&self) -> MutexGuard<'_, Vec<LentBody>> {
        self.spares.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A spare for a body of `n` bytes, cut to it: None if there is none
    /// big enough, which asks the app threads for one.
    pub fn take(&self, n: usize) -> Option<Box<dyn BodyBuffer>> {
        if !(LEND_MIN..=SPARE_BYTES).contains(&n) || !LentBody::can_cut() {
            return None;
        }
        self.asked.store(now_us(), Ordering::Relaxed);
        let found = {
            let mut spares = self.lock();
            let found = match spares.last() {
                Some(spare) if spare.capacity() >= n => spares.pop(),
                _ => None,
            };
            self.have.store(spares.len(), Ordering::Relaxed);
            found
        };
        match found {
            Some(mut spare) => {
                spare.cut_to(n);
                Some(Box::new(spare))
            }
            None => {
                let size = self.size.fetch_max(n, Ordering::Relaxed).max(n);
                let most = MAX_SPARES.min(SPARE_BYTES / size);
                let _ = self
                    .wanted
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                        Some((w + 1).min(most))
                    });
                None
            }
        }
    }

    /// Make the spares asked for, or free them once unused for `IDLE_US`
    /// (on an app thread, after a call that started at `now`: the GIL is
    /// held). Two relaxed loads per request while there are enough.
    pub fn refill(&self, py: Python<'_>, now: u64) {
        let (have, wanted) = (
            self.have.load(Ordering::Relaxed),
            self.wanted.load(Ordering::Relaxed),
        );
        if have > 0 && now.saturating_sub(self.asked.load(Ordering::Relaxed)) > IDLE_US {
            let mut spares = self.lock();
            // Counted and sized afresh by the next large bodies.
            self.wanted.store(0, Ordering::Relaxed);
            self.size.store(0, Ordering::Relaxed);
            spares.clear();
            self.have.store(0, Ordering::Relaxed);
            return;
        }
        if have >= wanted {
            return;
        }
        let size = self.size.load(Ordering::Relaxed);
        if size < LEND_MIN {
            // Freed just now, before the body that asks again set it.
            return;
        }
        // `wanted` was read before `size`: a larger body may have raised the
        // size since, and lowered the count only after.
        let wanted = wanted.min(SPARE_BYTES / size);
        let mut spares = self.lock();
        // Smaller than the largest body asked for: no use any more.
        spares.retain(|s| s.capacity() >= size);
        while spares.len() < wanted {
            match LentBody::make(py, size) {
                Some(spare) => spares.push(spare),
                None => break,
            }
        }
        self.have.store(spares.len(), Ordering::Relaxed);
    }
}
