//! --metrics-bind in a worker: the I/O side's request events written into
//! this worker's scoreboard slot, which the master sums and serves. Only
//! relaxed atomics on the request path; no Python here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use oxgate_proto::RequestHead;
use oxgate_server::{Observer, SlowClient};
use oxgate_supervisor::{method_index, Slow, SlowTracker, WorkerContext};

pub struct SlotObserver {
    worker: Arc<WorkerContext>,
    slowest: SlowTracker,
    /// Write timeouts already published (see `publish_write_stalls`).
    stalls_published: AtomicU64,
}

impl SlotObserver {
    pub fn new(worker: Arc<WorkerContext>) -> Self {
        SlotObserver {
            worker,
            slowest: SlowTracker::default(),
            stalls_published: AtomicU64::new(0),
        }
    }

    /// Write timeouts are counted where the write fails, in a process-wide
    /// counter; the worker's tick (5 a second) moves new ones to the slot.
    pub fn publish_write_stalls(&self) {
        let now = oxgate_server::observe::write_stalls();
        let before = self.stalls_published.swap(now, Ordering::Relaxed);
        if now > before {
            let w = &self.worker;
            w.scoreboard.slow_clients(w.slot, Slow::Write, now - before);
        }
    }
}

impl Observer for SlotObserver {
    fn started(&self) {
        self.worker.scoreboard.request_started(self.worker.slot);
    }

    fn ended(&self) {
        self.worker.scoreboard.request_ended(self.worker.slot);
    }

    fn answered(&self, head: &RequestHead, status: u16, since_us: Option<u64>) {
        let now = oxgate_server::observe::now_us();
        let took_us = since_us.map_or(0, |t| now.saturating_sub(t));
        let (board, slot) = (&self.worker.scoreboard, self.worker.slot);
        board.request_answered(slot, method_index(head.method()), status, took_us);
        let what = [head.method(), " ", head.path()];
        board.offer_slow(slot, &self.slowest, took_us, now / 1000, status, &what);
    }

    fn refused(&self) {
        self.worker.scoreboard.refused(self.worker.slot);
    }

    fn invalid(&self, _status: u16) {
        self.worker.scoreboard.request_invalid(self.worker.slot);
    }

    fn slow_client(&self, kind: SlowClient) {
        let kind = match kind {
            SlowClient::Header => Slow::Header,
            SlowClient::Body => Slow::Body,
        };
        self.worker
            .scoreboard
            .slow_clients(self.worker.slot, kind, 1);
    }
}
