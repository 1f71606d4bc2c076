//! Liveness the master reads without a syscall per worker: a shared
//! anonymous mapping made before any fork, one cell per worker slot, where
//! the worker stamps a heartbeat and each app thread what it is running,
//! and, with --metrics-bind, its request counters (see `counters`).

use std::io;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::counters::{SlotCounters, SlowSeen, SlowTracker, Totals};

/// App threads per worker with their own cell; more share none (untracked).
pub const THREAD_CELLS: usize = 64;
const TEXT: usize = 116;

#[repr(C)]
struct ThreadCell {
    /// Monotonic ms when the running request started; 0 = idle.
    since_ms: AtomicU64,
    len: AtomicU32,
    text: [AtomicU8; TEXT],
}

#[repr(C)]
struct WorkerCell {
    heartbeat_ms: AtomicU64,
    threads: [ThreadCell; THREAD_CELLS],
    counters: SlotCounters,
}

pub struct Scoreboard {
    cells: *const WorkerCell,
    slots: usize,
    /// One past the highest slot ever handed out (the master's own count:
    /// summing stops there, so untouched pages stay untouched).
    used: AtomicUsize,
}

// SAFETY: the mapping is only accessed through atomics and lives as long
// as the process (it is never unmapped).
unsafe impl Send for Scoreboard {}
// SAFETY: as above: shared access is through atomics only.
unsafe impl Sync for Scoreboard {}

/// Milliseconds on the system-wide monotonic clock, the same in every process.
pub fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

impl Scoreboard {
    pub fn new(slots: usize) -> io::Result<Scoreboard> {
        let size = std::mem::size_of::<WorkerCell>() * slots;
        // SAFETY: an anonymous shared mapping with no address hint; the
        // kernel zero-fills it, and all-zero bytes are valid atomics.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Scoreboard {
            cells: ptr.cast(),
            slots,
            used: AtomicUsize::new(0),
        })
    }

    fn cell(&self, slot: usize) -> &WorkerCell {
        assert!(slot < self.slots, "scoreboard slot out of range");
        // SAFETY: slot is in bounds of the mapping, which outlives self.
        unsafe { &*self.cells.add(slot) }
    }

    /// Clear a slot for a new worker (its request counters go on).
    pub fn reset(&self, slot: usize) {
        let cell = self.cell(slot);
        cell.heartbeat_ms.store(now_ms(), Ordering::Release);
        for t in &cell.threads {
            t.since_ms.store(0, Ordering::Release);
        }
        cell.counters.reset();
        self.used.fetch_max(slot + 1, Ordering::Relaxed);
    }

    pub fn heartbeat(&self, slot: usize) {
        self.cell(slot)
            .heartbeat_ms
            .store(now_ms(), Ordering::Release);
    }

    pub fn last_heartbeat(&self, slot: usize) -> u64 {
        self.cell(slot).heartbeat_ms.load(Ordering::Acquire)
    }

    /// Thread `thread` of worker `slot` starts a request described by the
    /// pieces of `what` end to end (["GET", " ", "/path"]: no string to
    /// allocate per request).
    pub fn begin(&self, slot: usize, thread: usize, what: &[&str]) {
        self.begin_at(slot, thread, what, now_ms());
    }

    /// [`Scoreboard::begin`] with the time (`now_ms`'s clock) already read.
    pub fn begin_at(&self, slot: usize, thread: usize, what: &[&str], ms: u64) {
        let Some(t) = self.cell(slot).threads.get(thread) else {
            return;
        };
        let bytes = what.iter().flat_map(|p| p.as_bytes()).take(TEXT);
        let mut n = 0;
        for (dst, src) in t.text.iter().zip(bytes) {
            dst.store(*src, Ordering::Relaxed);
            n += 1;
        }
        t.len.store(n as u32, Ordering::Relaxed);
        t.since_ms.store(ms.max(1), Ordering::Release);
    }

    pub fn end(&self, slot: usize, thread: usize) {
        if let Some(t) = self.cell(slot).threads.get(thread) {
            t.since_ms.store(0, Ordering::Release);
        }
    }

    /// The longest-running request of a worker: (started ms, description).
    pub fn oldest_request(&self, slot: usize) -> Option<(u64, String)> {
        self.running(slot)
            .into_iter()
            .min_by_key(|(since, _)| *since)
    }

    /// The requests a worker's app threads run: (started ms, description).
    /// A description being rewritten while read is skipped.
    pub fn running(&self, slot: usize) -> Vec<(u64, String)> {
        let mut out = Vec::new();
        for t in &self.cell(slot).threads {
            let since = t.since_ms.load(Ordering::Acquire);
            if since == 0 {
                continue;
            }
            let len = (t.len.load(Ordering::Relaxed) as usize).min(TEXT);
            let text: Vec<u8> = t.text[..len]
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect();
            fence(Ordering::Acquire);
            if t.since_ms.load(Ordering::Relaxed) == since {
                out.push((since, String::from_utf8_lossy(&text).into_owned()));
            }
        }
        out
    }

    // --- request counters (--metrics-bind), written by the worker ---

    /// A request head was read: one more in flight.
    pub fn request_started(&self, slot: usize) {
        self.cell(slot).counters.started();
    }

    /// That request is over, answered or not.
    pub fn request_ended(&self, slot: usize) {
        self.cell(slot).counters.ended();
    }

    /// A response ended (`method` an index into `counters::METHODS`).
    pub fn request_answered(&self, slot: usize, method: usize, status: u16, took_us: u64) {
        self.cell(slot).counters.answered(method, status, took_us);
    }

    /// Answered before a whole head arrived.
    pub fn request_invalid(&self, slot: usize) {
        self.cell(slot).counters.invalid();
    }

    /// Offer a request that ended at `now_ms` (`now_ms()`'s clock) to the
    /// worker's ring of slowest ones.
    pub fn offer_slow(
        &self,
        slot: usize,
        tracker: &SlowTracker,
        took_us: u64,
        now_ms: u64,
        status: u16,
        what: &[&str],
    ) {
        let cell = &self.cell(slot).counters;
        tracker.offer(cell, took_us, now_ms, status, what);
    }

    /// A request waited this long for an app thread.
    pub fn queue_waited(&self, slot: usize, us: u64) {
        self.cell(slot).counters.waited(us);
    }

    /// A request was refused with 503 (the queue was full).
    pub fn refused(&self, slot: usize) {
        self.cell(slot).counters.refused();
    }

    pub fn slow_clients(&self, slot: usize, kind: crate::counters::Slow, n: u64) {
        self.cell(slot).counters.add_slow(kind, n);
    }

    // --- read by the master ---

    /// Every slot's counters, added up: all workers there ever were.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for slot in 0..self.used.load(Ordering::Relaxed).min(self.slots) {
            self.cell(slot).counters.add_to(&mut t);
        }
        t
    }

    /// Requests a slot has answered, over all its workers.
    pub fn slot_requests(&self, slot: usize) -> u64 {
        self.cell(slot).counters.requests()
    }

    pub fn in_flight(&self, slot: usize) -> u64 {
        self.cell(slot).counters.in_flight().unsigned_abs()
    }

    /// The slot's slowest requests finished after `since_ms`.
    pub fn slowest(&self, slot: usize, since_ms: u64) -> Vec<SlowSeen> {
        self.cell(slot).counters.slowest(since_ms)
    }
}
