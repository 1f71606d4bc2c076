//! What the I/O side reports about requests when --metrics-bind is on: a
//! trait the worker implements over its scoreboard slot. With no observer
//! set a request pays a branch or two; nothing here does I/O.

use std::sync::atomic::{AtomicU64, Ordering};

use oxgate_proto::RequestHead;

/// Why a client counts as slow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowClient {
    /// No complete head within --header-timeout (408).
    Header,
    /// A body read stalled past --body-timeout (408).
    Body,
}

/// Receives request events from the connection loop (one I/O thread per
/// worker, so calls never overlap in practice; implementations still use
/// atomics, since app threads report queue waits beside them).
pub trait Observer: Send + Sync {
    /// A request head was read: one more in flight.
    fn started(&self);
    /// That request is over, answered or not (called on every path).
    fn ended(&self);
    /// A response to `head` with `status` ended; its head was read at
    /// `since_us` (`now_us` microseconds).
    fn answered(&self, head: &RequestHead, status: u16, since_us: Option<u64>);
    /// Refused with 503: the request queue was full.
    fn refused(&self);
    /// Answered with `status` before a whole head arrived (malformed, too
    /// large, too slow, bad PROXY or uwsgi preamble).
    fn invalid(&self, status: u16);
    fn slow_client(&self, kind: SlowClient);
}

/// Microseconds on the monotonic clock (the metrics' clock: a u64 to
/// subtract, where `Instant` costs a checked timespec subtraction and a
/// 128-bit division per duration).
pub fn now_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1000
}

/// Response writes that made no progress for --write-timeout, in this
/// process. A plain counter the write paths bump on their (rare) failure,
/// so they need no observer; the worker publishes it on its tick.
static WRITE_STALLS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn write_stalled() {
    WRITE_STALLS.fetch_add(1, Ordering::Relaxed);
}

/// Write timeouts so far in this process.
pub fn write_stalls() -> u64 {
    WRITE_STALLS.load(Ordering::Relaxed)
}
