//! One snapshot of the server for the --metrics-bind endpoint: the
//! scoreboard's counters summed, plus what only the master knows (pids,
//! states, restarts). Built per request to the endpoint, never otherwise.

use std::time::Duration;

use crate::counters::{SlowSeen, Totals, SLOW_WINDOW_MS};
use crate::memory::rss_bytes;
use crate::scoreboard::{now_ms, Scoreboard};

/// Why a worker was replaced (the `cause` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    /// It died without being asked to (a signal, an exit, a failed boot).
    Crash = 0,
    /// A request or its heartbeat passed --timeout.
    Timeout = 1,
    MaxRequests = 2,
    /// Past --max-worker-memory.
    Memory = 3,
    /// HUP, or --reload saw its code change.
    Reload = 4,
}

pub(crate) const CAUSES: [&str; 5] = ["crash", "timeout", "max-requests", "memory", "reload"];

/// What the master tells about one worker.
pub(crate) struct WorkerFacts {
    pub pid: libc::pid_t,
    pub slot: usize,
    pub state: &'static str,
    pub age: Duration,
    /// The slot's request count when this worker took it.
    pub baseline: u64,
}

pub(crate) struct WorkerView {
    pub facts: WorkerFacts,
    pub served: u64,
    pub in_flight: u64,
    pub rss: Option<u64>,
    /// App threads' current requests: (elapsed ms, "METHOD /path").
    pub running: Vec<(u64, String)>,
}

pub(crate) struct View {
    pub totals: Totals,
    pub workers: Vec<WorkerView>,
    pub target: usize,
    pub restarts: [u64; CAUSES.len()],
    pub in_flight: u64,
    /// The slowest requests of the last minute, slowest first, with the
    /// pid of the worker that served them.
    pub slowest: Vec<(SlowSeen, libc::pid_t)>,
    pub master_pid: u32,
    pub uptime: Duration,
    pub now_ms: u64,
}

/// How many slow requests the status page lists.
const SLOWEST_SHOWN: usize = 20;

impl View {
    pub(crate) fn build(
        board: &Scoreboard,
        mut facts: Vec<WorkerFacts>,
        target: usize,
        restarts: [u64; CAUSES.len()],
        uptime: Duration,
    ) -> View {
        let now_ms = now_ms();
        facts.sort_by_key(|f| f.slot);
        let mut slowest = Vec::new();
        let workers: Vec<WorkerView> = facts
            .into_iter()
            .map(|f| {
                let since = now_ms.saturating_sub(SLOW_WINDOW_MS);
                slowest.extend(board.slowest(f.slot, since).into_iter().map(|s| (s, f.pid)));
                let mut running: Vec<(u64, String)> = board
                    .running(f.slot)
                    .into_iter()
                    .map(|(since, what)| (now_ms.saturating_sub(since), what))
                    .collect();
                running.sort_by_key(|r| std::cmp::Reverse(r.0));
                WorkerView {
                    served: board.slot_requests(f.slot).saturating_sub(f.baseline),
                    in_flight: board.in_flight(f.slot),
                    rss: rss_bytes(f.pid),
                    running,
                    facts: f,
                }
            })
            .collect();
        slowest.sort_by_key(|(s, _)| std::cmp::Reverse(s.took_us));
        slowest.truncate(SLOWEST_SHOWN);
        View {
            totals: board.totals(),
            in_flight: workers.iter().map(|w| w.in_flight).sum(),
            workers,
            target,
            restarts,
            slowest,
            master_pid: std::process::id(),
            uptime,
            now_ms,
        }
    }
}
