//! Request counters in the scoreboard's shared memory, one block per worker
//! slot: written by the worker with relaxed atomics on the request path,
//! summed by the master for /metrics. Cumulative per slot (never cleared
//! when a replacement worker takes the slot), so a worker's counts outlive
//! it and the totals never go down. No I/O and no allocation here.

use std::sync::atomic::{fence, AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};

/// The method label's values: RFC 9110 section 9 methods and PATCH
/// (RFC 5789); anything else is OTHER, so the label set stays bounded.
pub const METHODS: [&str; 10] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];
/// Status classes 1xx..5xx.
pub const CLASSES: usize = 5;
/// Request latency bucket bounds, microseconds (le in seconds: 1 ms .. 30 s).
pub const LATENCY_BOUNDS_US: [u64; 14] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000, 10_000_000, 30_000_000,
];
/// Queue-wait bucket bounds, microseconds (100 us .. 5 s).
pub const QUEUE_BOUNDS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];
const BUCKETS: usize = 15;
/// The slowest recent requests each worker keeps.
pub const SLOW_RING: usize = 8;
/// A slow request stays in its worker's ring for this long at most.
pub const SLOW_WINDOW_MS: u64 = 60_000;
const SLOW_TEXT: usize = 100;

/// Why a client counts as slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slow {
    /// No complete head within --header-timeout (408).
    Header = 0,
    /// A body read stalled past --body-timeout (408).
    Body = 1,
    /// A response write made no progress for --write-timeout.
    Write = 2,
}

/// The `kind` label of each `Slow`.
pub const SLOW_KINDS: [&str; 3] = ["header", "body", "write"];

/// Index of a method in `METHODS`.
pub fn method_index(method: &str) -> usize {
    match method {
        "GET" => 0,
        "HEAD" => 1,
        "POST" => 2,
        "PUT" => 3,
        "DELETE" => 4,
        "PATCH" => 5,
        "OPTIONS" => 6,
        "CONNECT" => 7,
        "TRACE" => 8,
        _ => 9,
    }
}

#[repr(C)]
struct Histogram {
    /// Per-bucket counts (not cumulative; the last is +Inf).
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, bounds: &[u64; BUCKETS - 1], us: u64) {
        let i = bounds.iter().position(|&b| us <= b).unwrap_or(BUCKETS - 1);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    fn add_to(&self, out: &mut HistogramTotals) {
        for (o, b) in out.buckets.iter_mut().zip(&self.buckets) {
            *o += b.load(Ordering::Relaxed);
        }
        out.sum_us += self.sum_us.load(Ordering::Relaxed);
    }
}

/// One slow request, published with a sequence lock (odd = being written).
#[repr(C)]
struct SlowEntry {
    seq: AtomicU32,
    status: AtomicU32,
    len: AtomicU32,
    took_us: AtomicU64,
    /// Monotonic ms when it finished; 0 = empty.
    at_ms: AtomicU64,
    text: [AtomicU8; SLOW_TEXT],
}

/// A worker slot's counters (all-zero bytes are a valid, empty block).
#[repr(C)]
pub(crate) struct SlotCounters {
    requests: [[AtomicU64; CLASSES]; METHODS.len()],
    latency: Histogram,
    queue_wait: Histogram,
    refused: AtomicU64,
    invalid: AtomicU64,
    slow: [AtomicU64; 3],
    /// A gauge: reset with the slot, summed over live workers only.
    in_flight: AtomicI64,
    slowest: [SlowEntry; SLOW_RING],
}

/// Counts of a histogram, summed (buckets not yet cumulative).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HistogramTotals {
    pub buckets: [u64; BUCKETS],
    pub sum_us: u64,
}

impl HistogramTotals {
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// The counters of some slots, added up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals {
    /// By `METHODS` index, then status class (0 = 1xx).
    pub requests: [[u64; CLASSES]; METHODS.len()],
    pub latency: HistogramTotals,
    pub queue_wait: HistogramTotals,
    pub refused: u64,
    /// Answered before a whole head arrived (4xx).
    pub invalid: u64,
    /// By `Slow` as index.
    pub slow: [u64; 3],
}

/// A slow request as the master reads it.
#[derive(Debug, Clone)]
pub struct SlowSeen {
    pub took_us: u64,
    pub at_ms: u64,
    pub status: u16,
    /// "METHOD /path", truncated.
    pub what: String,
}

impl SlotCounters {
    /// A new worker takes the slot: the gauge and the ring start empty; the
    /// counters go on from where the last worker left them.
    pub(crate) fn reset(&self) {
        self.in_flight.store(0, Ordering::Relaxed);
        for e in &self.slowest {
            e.at_ms.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn add_to(&self, t: &mut Totals) {
        for (row, cells) in t.requests.iter_mut().zip(&self.requests) {
            for (o, c) in row.iter_mut().zip(cells) {
                *o += c.load(Ordering::Relaxed);
            }
        }
        self.latency.add_to(&mut t.latency);
        self.queue_wait.add_to(&mut t.queue_wait);
        t.refused += self.refused.load(Ordering::Relaxed);
        t.invalid += self.invalid.load(Ordering::Relaxed);
        for (o, c) in t.slow.iter_mut().zip(&self.slow) {
            *o += c.load(Ordering::Relaxed);
        }
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests
            .iter()
            .flatten()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed).max(0)
    }

    pub(crate) fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn ended(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn answered(&self, method: usize, status: u16, took_us: u64) {
        let class = usize::from(status / 100).clamp(1, CLASSES) - 1;
        if let Some(cell) = self.requests.get(method).and_then(|m| m.get(class)) {
            cell.fetch_add(1, Ordering::Relaxed);
        }
        self.latency.observe(&LATENCY_BOUNDS_US, took_us);
    }

    pub(crate) fn invalid(&self) {
        self.invalid.fetch_add(1, Ordering::Relaxed);
    }

    /// Add to a counter the worker keeps itself and publishes in steps.
    pub(crate) fn add_slow(&self, kind: Slow, n: u64) {
        self.slow[kind as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn waited(&self, us: u64) {
        self.queue_wait.observe(&QUEUE_BOUNDS_US, us);
    }

    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    fn publish(&self, i: usize, took_us: u64, at_ms: u64, status: u16, what: &[&str]) {
        let Some(e) = self.slowest.get(i) else {
            return;
        };
        let seq = e.seq.load(Ordering::Relaxed);
        e.seq.store(seq.wrapping_add(1) | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let mut n = 0;
        for (dst, src) in e.text.iter().zip(what.iter().flat_map(|p| p.bytes())) {
            dst.store(src, Ordering::Relaxed);
            n += 1;
        }
        e.len.store(n, Ordering::Relaxed);
        e.status.store(u32::from(status), Ordering::Relaxed);
        e.took_us.store(took_us, Ordering::Relaxed);
        e.at_ms.store(at_ms, Ordering::Relaxed);
        e.seq.store((seq | 1).wrapping_add(1), Ordering::Release);
    }

    /// The ring's entries finished after `since_ms`; an entry being
    /// rewritten while read is skipped.
    pub(crate) fn slowest(&self, since_ms: u64) -> Vec<SlowSeen> {
        let mut out = Vec::new();
        for e in &self.slowest {
            let seq = e.seq.load(Ordering::Acquire);
            if seq & 1 == 1 {
                continue;
            }
            let at_ms = e.at_ms.load(Ordering::Relaxed);
            let len = (e.len.load(Ordering::Relaxed) as usize).min(SLOW_TEXT);
            let text: Vec<u8> = e.text[..len]
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect();
            let seen = SlowSeen {
                took_us: e.took_us.load(Ordering::Relaxed),
                at_ms,
                status: u16::try_from(e.status.load(Ordering::Relaxed)).unwrap_or(0),
                what: String::from_utf8_lossy(&text).into_owned(),
            };
            fence(Ordering::Acquire);
            if e.seq.load(Ordering::Relaxed) == seq && at_ms != 0 && at_ms > since_ms {
                out.push(seen);
            }
        }
        out
    }
}

/// The worker's side of its ring of slowest recent requests: which entry
/// a new slow request replaces. Process-local; the fast path is two
/// relaxed loads (a request no slower than the ring's fastest, while none
/// of its entries has aged out).
#[derive(Default)]
pub struct SlowTracker {
    /// The ring's fastest entry, in us (0 while it has a free entry).
    floor_us: AtomicU64,
    /// When the ring's oldest entry ages out, monotonic ms.
    expiry_ms: AtomicU64,
    /// (took_us, at_ms) of each entry, as published.
    entries: Mutex<[(u64, u64); SLOW_RING]>,
}

impl SlowTracker {
    pub(crate) fn offer(
        &self,
        cell: &SlotCounters,
        took_us: u64,
        now_ms: u64,
        status: u16,
        what: &[&str],
    ) {
        if took_us <= self.floor_us.load(Ordering::Relaxed)
            && now_ms < self.expiry_ms.load(Ordering::Relaxed)
        {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        for e in entries.iter_mut() {
            if e.1 != 0 && now_ms.saturating_sub(e.1) >= SLOW_WINDOW_MS {
                *e = (0, 0);
            }
        }
        // A free entry, else the fastest one if this request is slower.
        let pick = entries.iter().position(|e| e.1 == 0).or_else(|| {
            let (i, fastest) = entries.iter().enumerate().min_by_key(|(_, e)| e.0)?;
            (took_us > fastest.0).then_some(i)
        });
        if let Some(i) = pick {
            entries[i] = (took_us, now_ms.max(1));
            cell.publish(i, took_us, now_ms.max(1), status, what);
        }
        let full = entries.iter().all(|e| e.1 != 0);
        let floor = if full {
            entries.iter().map(|e| e.0).min().unwrap_or(0)
        } else {
            0
        };
        let oldest = entries.iter().map(|e| e.1).filter(|&at| at != 0).min();
        self.floor_us.store(floor, Ordering::Relaxed);
        self.expiry_ms.store(
            oldest.map_or(u64::MAX, |at| at + SLOW_WINDOW_MS),
            Ordering::Relaxed,
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn zeroed() -> Box<SlotCounters> {
        // SAFETY: all-zero bytes are valid atomics, as in the shared mapping.
        unsafe { Box::new(std::mem::zeroed()) }
    }

    #[test]
    fn methods_outside_the_standard_set_count_as_other() {
        assert_eq!(METHODS[method_index("GET")], "GET");
        assert_eq!(METHODS[method_index("PATCH")], "PATCH");
        assert_eq!(METHODS[method_index("get")], "OTHER");
        assert_eq!(METHODS[method_index("PROPFIND")], "OTHER");
    }

    #[test]
    fn finished_requests_count_by_method_class_and_latency_bucket() {
        let c = zeroed();
        c.started();
        c.answered(method_index("POST"), 201, 3_000);
        c.ended();
        c.started();
        c.answered(method_index("GET"), 503, 40_000_000);
        c.ended();
        let mut t = Totals::default();
        c.add_to(&mut t);
        assert_eq!(t.requests[2][1], 1);
        assert_eq!(t.requests[0][4], 1);
        assert_eq!(t.latency.buckets[2], 1, "3 ms lands in le=0.005");
        assert_eq!(t.latency.buckets[BUCKETS - 1], 1, "40 s lands in +Inf");
        assert_eq!(t.latency.count(), 2);
        assert_eq!(t.latency.sum_us, 40_003_000);
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.requests(), 2);
    }

    #[test]
    fn reset_keeps_counters_and_clears_the_gauge_and_ring() {
        let c = zeroed();
        let tracker = SlowTracker::default();
        c.started();
        c.started();
        c.answered(0, 200, 10);
        c.ended();
        tracker.offer(&c, 10, 5, 200, &["GET", " ", "/a"]);
        c.reset();
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.requests(), 1);
        assert!(c.slowest(0).is_empty());
    }

    #[test]
    fn the_ring_keeps_the_slowest_recent_requests() {
        let c = zeroed();
        let t = SlowTracker::default();
        for i in 1..=20u64 {
            let path = format!("/{i}");
            t.offer(&c, i * 1000, 1000 + i, 200, &["GET ", &path]);
        }
        let mut seen: Vec<u64> = c.slowest(0).iter().map(|s| s.took_us / 1000).collect();
        seen.sort_unstable();
        assert_eq!(seen, (13..=20).collect::<Vec<_>>());
        let s = c
            .slowest(0)
            .into_iter()
            .find(|s| s.took_us == 20_000)
            .unwrap();
        assert_eq!((s.what.as_str(), s.status), ("GET /20", 200));
        // A fast one a minute later replaces an aged-out entry.
        t.offer(&c, 1, 1020 + SLOW_WINDOW_MS, 404, &["HEAD /late"]);
        let late = c.slowest(1020);
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].what, "HEAD /late");
    }

    #[test]
    fn long_descriptions_are_truncated() {
        let c = zeroed();
        let t = SlowTracker::default();
        let long = "x".repeat(500);
        t.offer(&c, 5, 7, 200, &["GET ", &long]);
        assert_eq!(c.slowest(0)[0].what.len(), SLOW_TEXT);
    }
}
