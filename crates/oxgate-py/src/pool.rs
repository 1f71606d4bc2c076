//! The Python threads that run the app (`--threads`): each attaches to the
//! interpreter once and takes requests from a bounded queue, waiting for
//! them without the GIL. Each marks what it runs on the master's scoreboard.
//!
//! With one thread, the I/O thread itself runs requests inline while the
//! app answers fast (and the body is in memory): the hand-off to another
//! thread and back costs more than a small app does, and the other
//! connections wait for the one lane either way. What they lose is the I/O
//! thread's own work meanwhile, so that is for calls of a few milliseconds
//! at most. Once calls get slow (or one waited for its client to
//! read a streamed response), requests go to the app thread, so
//! the I/O thread keeps reading, timing out and refusing (503) while the
//! app works. A lane lock keeps it to one request at a time, as
//! `--threads 1` promises. Once calls are fast again, the I/O thread takes
//! the queue back: it runs the queued requests that write their own
//! response (a body in memory) inline too, while the app thread steps aside
//! for a moment, or under load the queue would never empty.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oxgate_server::observe::now_us;
use oxgate_server::{BodyBuffer, Handler, Request};
use oxgate_supervisor::WorkerContext;
use pyo3::prelude::*;

use crate::environ::AppContext;
use crate::gil_hold;
use crate::hooks::{self, Hooks};
use crate::io_policy::IoPolicy;
use crate::lent_body::LentBody;
use crate::queue::{Front, Queue};
use crate::respond::handle;
use crate::spare_bodies::SpareBodies;

pub struct Pool {
    queue: Arc<Queue<Request>>,
    shared: Arc<Shared>,
    /// The I/O thread's scheduling policy. With one thread too: calls too
    /// slow to run inline pile up for the app thread the same way.
    policy: IoPolicy,
}

impl Drop for Pool {
    fn drop(&mut self) {
        // The server is gone: the threads finish what is queued and exit.
        self.queue.close();
    }
}

/// A waiting app thread joins the busy ones once no request has left the
/// queue for this long while they wait on I/O...
const JOIN_AFTER: Duration = Duration::from_millis(1);
/// ...or for this long while they compute: long calls then share the GIL
/// with the requests behind them.
const SHARE_AFTER: Duration = Duration::from_millis(20);
/// A thread that waits this long for the GIL after a take parks at the
/// next one while others are busy (Python hands the GIL over every 5 ms).
const GIL_CONTENDED: Duration = Duration::from_millis(1);

/// Inline calls stop while app calls average more than this: Python's own
/// switch interval, the time a thread waits for the GIL. Calls of a few
/// milliseconds (a Django page) gain as much from inline calls as small
/// ones: requests piling up for the app thread wake the I/O thread about
/// once per scheduler slice (about a millisecond), which preempts the app
/// thread and costs it its caches (a 1.1 ms template view: 10% of its
/// throughput). Longer calls would hold the I/O thread's own work
/// (timeouts, 503s, TLS and HTTP/2 output) too long.
const INLINE_MAX_NANOS: u64 = 5_000_000;

/// Inline calls run as a burst (`Handler::batch_inline`: the turn's reads
/// first, then its calls, then its responses) while calls average up to
/// this. The response's wait is up to a turn of the I/O loop, 61 calls: a
/// Django JSON view (0.25 ms) saved a client wakeup, about 25 us of CPU,
/// per response, and running its calls back to back another 6%; a
/// template view (a call of 0.9-1.1 ms) saved nothing, and its p99 at 64
/// connections was 150-158 ms against 115-128 ms with no wait.
const BATCH_MAX_NANOS: u64 = 500_000;

/// How long the app thread waits for the I/O thread to take the queue
/// back (see `Lane::yield_to_io`): on a shared core, the I/O thread runs
/// at once if it has anything to do, and if it has nothing, waiting on is
/// no use.
const HANDBACK_WAIT: Duration = Duration::from_micros(500);

/// The one app lane of `--threads 1`, shared by the I/O thread's inline
/// calls and the app thread.
struct Lane {
    /// Recent app call time, in nanoseconds: a moving average that a slow
    /// call lifts at once and fast calls bring down over a few dozen.
    recent: AtomicU64,
    state: Mutex<LaneState>,
    freed: Condvar,
    /// The app thread waits for the lane.
    wanted: AtomicUsize,
    /// `state.handback`, written under the lock and read without it: the
    /// app thread and the I/O thread look before every request and park.
    asked: AtomicBool,
}

#[derive(Default)]
struct LaneState {
    busy: bool,
    /// The I/O thread found the lane busy while calls are fast: it wants to
    /// run the queued requests inline. Without this, requests queued in a
    /// slow stretch keep new ones queuing behind them for as long as they
    /// arrive faster than one thread answers, long after calls got fast
    /// again: a hand-off per request where none is needed (Django's JSON
    /// view at 64 connections stayed there).
    handback: bool,
    /// The app thread waits in `yield_to_io`.
    yielding: bool,
}

impl Lane {
    fn new() -> Self {
        Lane {
            recent: AtomicU64::new(0),
            state: Mutex::new(LaneState::default()),
            freed: Condvar::new(),
            wanted: AtomicUsize::new(0),
            asked: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Calls are fast enough to run on the I/O thread.
    fn fast(&self) -> bool {
        self.recent.load(Ordering::Relaxed) <= INLINE_MAX_NANOS
    }

    /// The I/O thread asked for the queue back (a hint: read without the lock).
    fn asked_back(&self) -> bool {
        self.asked.load(Ordering::Acquire)
    }

    fn set_handback(&self, st: &mut LaneState, ask: bool) {
        st.handback = ask;
        self.asked.store(ask, Ordering::Release);
    }

    /// Take the lane if it is free; if not, and `ask`, ask for the queue back.
    fn try_take(&self, ask: bool) -> bool {
        let mut st = self.lock();
        if st.busy {
            if ask && !st.handback {
                self.set_handback(&mut st, true);
            }
            return false;
        }
        st.busy = true;
        true
    }

    fn take(&self) {
        let mut st = self.lock();
        while st.busy {
            st = self.freed.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        st.busy = true;
    }

    /// The app thread is through with the lane.
    fn give(&self) {
        self.release(false);
    }

    /// The I/O thread is through with the lane, and ran what it could of
    /// the queue: anything the app thread asked back is answered.
    fn give_back(&self) {
        self.release(true);
    }

    fn release(&self, answered: bool) {
        let mut st = self.lock();
        st.busy = false;
        if answered && st.handback {
            self.set_handback(&mut st, false);
        }
        let yielding = st.yielding;
        drop(st);
        // A futex wake costs a syscall: only when the app thread waits.
        if yielding || self.wanted.load(Ordering::Acquire) > 0 {
            self.freed.notify_one();
        }
    }

    /// On the app thread, before its next request: if the I/O thread asked
    /// for the queue back, let it have it. Waits while the I/O thread holds
    /// the lane, and for `max` for it to take it. Blocks: without the GIL.
    fn yield_to_io(&self, max: Duration) {
        let mut st = self.lock();
        if !st.handback {
            return;
        }
        let until = Instant::now() + max;
        st.yielding = true;
        while st.handback {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() && !st.busy {
                // Not taken up: the I/O thread has nothing to do meanwhile.
                self.set_handback(&mut st, false);
                break;
            }
            st = if st.busy {
                self.freed.wait(st).unwrap_or_else(PoisonError::into_inner)
            } else {
                let waited = self.freed.wait_timeout(st, left);
                waited.unwrap_or_else(PoisonError::into_inner).0
            };
        }
        st.yielding = false;
    }
}

impl Handler for Pool {
    fn call(&self, req: Request) -> Result<(), Box<Request>> {
        // An app thread will want the GIL for this one.
        gil_hold::release();
        self.queue.push(req).map_err(Box::new)
    }

    fn tend(&self) -> Option<Duration> {
        // The app thread may be waiting to hand the queue back.
        if let Some(lane) = &self.shared.lane {
            if lane.asked_back() && self.take_for_inline(lane, false) {
                lane.give_back();
            }
        }
        // About to sleep (or between turns): the app threads woken here,
        // and any other Python thread, get the GIL back.
        gil_hold::release();
        // One thread has nobody to call in.
        let next = self.queue.tend(self.shared.lane.is_none());
        self.policy.steer(&self.queue.contended);
        next
    }

    fn inline(&self) -> bool {
        self.shared.lane.is_some()
    }

    fn batch_inline(&self) -> bool {
        self.shared
            .lane
            .as_ref()
            .is_some_and(|l| l.recent.load(Ordering::Relaxed) <= BATCH_MAX_NANOS)
    }

    fn body_buffer(&self, n: usize) -> Option<Box<dyn BodyBuffer>> {
        LentBody::lend(n).or_else(|| self.shared.spares.take(n))
    }

    fn call_inline(&self, req: Request) -> Result<(), Box<Request>> {
        let Some(lane) = &self.shared.lane else {
            return Err(Box::new(req));
        };
        if !self.take_for_inline(lane, true) {
            // The app thread has work, or is about to: it needs the GIL.
            gil_hold::release();
            return Err(Box::new(req));
        }
        self.run_here(lane, req);
        lane.give_back();
        Ok(())
    }
}

impl Pool {
    /// On the I/O thread: take the lane if calls are fast and the app thread
    /// does not want it, and run what is queued. True with the lane held
    /// and the queue empty; if the lane is busy and `ask`, asks for it.
    fn take_for_inline(&self, lane: &Lane, ask: bool) -> bool {
        lane.fast()
            && lane.wanted.load(Ordering::Acquire) == 0
            && lane.try_take(ask)
            && self.run_queued(lane)
    }

    /// With the lane held, on the I/O thread: run what is queued (those
    /// requests go first) while calls stay fast. False, with the lane given
    /// back, when the app thread is to run the rest (a request whose body
    /// is still arriving or whose response goes through the outbox, or
    /// calls that got slow).
    fn run_queued(&self, lane: &Lane) -> bool {
        loop {
            match self.queue.take_front_if(|r| r.responder.writes_itself()) {
                Front::Empty => return true,
                Front::Taken(req) => self.run_here(lane, req),
                Front::Refused => break,
            }
            if !lane.fast() {
                break;
            }
        }
        lane.give_back();
        false
    }

    /// One call on the I/O thread, the lane held.
    fn run_here(&self, lane: &Lane, req: Request) {
        let responder = req.responder.clone();
        // Kept after the call, for the next inline call of this turn.
        gil_hold::take();
        Python::attach(|py| run(py, &self.shared, req, 0));
        if responder.waited_for_client() {
            // The call held the I/O thread while its client read: calls go
            // to the app thread until fast ones bring the average down.
            lane.recent
                .fetch_max(INLINE_MAX_NANOS.saturating_mul(4), Ordering::Relaxed);
        }
    }
}

/// What the app threads share: the app, its environ constants, and the
/// worker's bookkeeping with the master.
pub struct Shared {
    pub app: Py<PyAny>,
    pub hooks: Arc<Hooks>,
    pub ctx: AppContext,
    pub worker: Arc<WorkerContext>,
    /// A pre_request or post_request hook is set (looked up once).
    request_hooks: bool,
    served: AtomicU64,
    lane: Option<Lane>,
    spares: SpareBodies,
}

/// Start `threads` app threads; `queue` requests may wait for one.
pub fn start(
    app: Py<PyAny>,
    ctx: AppContext,
    worker: Arc<WorkerContext>,
    hooks: Arc<Hooks>,
    threads: usize,
    queue: usize,
) -> std::io::Result<(Pool, Vec<JoinHandle<()>>)> {
    let queue = Arc::new(Queue::new(queue, JOIN_AFTER, SHARE_AFTER));
    let request_hooks = hooks.has("pre_request") || hooks.has("post_request");
    let shared = Arc::new(Shared {
        app,
        request_hooks,
        hooks,
        ctx,
        worker,
        served: AtomicU64::new(0),
        lane: (threads == 1).then(Lane::new),
        spares: SpareBodies::default(),
    });
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let (queue, shared) = (queue.clone(), shared.clone());
        let handle = std::thread::Builder::new()
            .name(format!("oxgate-app-{i}"))
            .spawn(move || serve(&queue, shared, i))?;
        handles.push(handle);
    }
    let policy = IoPolicy::new();
    Ok((
        Pool {
            queue,
            shared,
            policy,
        },
        handles,
    ))
}

fn serve(queue: &Queue<Request>, shared: Arc<Shared>, index: usize) {
    let mut me = queue.taker();
    // None once the server is gone and the queue is closed and empty.
    Python::attach(|py| {
        // Out of requests: the responses this thread finished go out.
        let idle = oxgate_server::flush_responses;
        loop {
            // Looked at first: giving up the GIL to wait costs what it saves.
            if let Some(lane) = shared.lane.as_ref().filter(|l| l.asked_back()) {
                py.detach(|| lane.yield_to_io(HANDBACK_WAIT));
            }
            // A request already waiting is taken with the GIL kept: giving
            // it up and taking it back costs a request's worth of locking.
            let req = match queue.try_take(&mut me) {
                Some(req) => req,
                None => {
                    let (req, taken) = py.detach(|| (queue.take(&mut me, idle), Instant::now()));
                    let Some(req) = req else { break };
                    // Getting the GIL back took long: other app threads keep it busy.
                    me.retire = taken.elapsed() > GIL_CONTENDED;
                    req
                }
            };
            match &shared.lane {
                Some(lane) => {
                    lane.wanted.fetch_add(1, Ordering::AcqRel);
                    py.detach(|| lane.take());
                    lane.wanted.fetch_sub(1, Ordering::AcqRel);
                    run(py, &shared, req, index);
                    lane.give();
                }
                None => {
                    // Its response waits for the next call's, if one is queued.
                    oxgate_server::hold_responses(me.more);
                    run(py, &shared, req, index);
                }
            }
        }
    });
}

/// One request through the app, on the scoreboard as app thread `index`.
fn run(py: Python<'_>, shared: &Shared, req: Request, index: usize) {
    let w = &shared.worker;
    if req.responder.is_closed() {
        // Nobody waits for this answer any more: the client left (an HTTP/2
        // RST_STREAM, a closed connection) or got a 504 while the request
        // was queued. Running it would only spend an app thread, which a
        // client resetting streams as fast as it opens them could make its
        // way of loading the worker.
        log::debug!(
            "{} {}: the client left before an app thread was free; not run",
            req.head.method(),
            req.head.path()
        );
        return;
    }
    // One clock read for the queue wait, the scoreboard and the lane's
    // average, in plain microseconds (an Instant's checked subtraction cost
    // more than the read).
    let started = now_us();
    if let Some(ready) = req.ready_at {
        w.scoreboard
            .queue_waited(w.slot, started.saturating_sub(ready));
    }
    let what = [req.head.method(), " ", req.head.path()];
    w.scoreboard.begin_at(w.slot, index, &what, started / 1000);
    if shared.request_hooks {
        with_hooks(py, shared, req);
    } else {
        handle(py, &shared.app, &shared.ctx, req, false);
    }
    if let Some(lane) = &shared.lane {
        let took = now_us().saturating_sub(started).saturating_mul(1000);
        let avg = lane.recent.load(Ordering::Relaxed);
        // One lane: calls never overlap, so load-then-store loses nothing.
        lane.recent
            .store((avg - avg / 8).saturating_add(took / 8), Ordering::Relaxed);
    }
    w.scoreboard.end(w.slot, index);
    shared.spares.refill(py, started);
    let served = shared.served.fetch_add(1, Ordering::Relaxed) + 1;
    if w.max_requests > 0 && served == w.max_requests {
        log::info!("Autorestarting worker after {served} requests");
        w.retire();
    }
}

/// pre_request(worker, req) and post_request(worker, req, environ, resp)
/// around the app, with gunicorn's attribute names on req and resp.
fn with_hooks(py: Python<'_>, shared: &Shared, req: Request) {
    let head = &req.head;
    let described = (|| -> PyResult<(Bound<'_, PyAny>, Bound<'_, PyAny>)> {
        let headers: Vec<(String, String)> = head
            .headers()
            .map(|h| {
                (
                    h.name.to_ascii_uppercase(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let req_obj = hooks::namespace(
            py,
            &[
                ("method", head.method().into_pyobject(py)?.into_any()),
                ("path", head.path().into_pyobject(py)?.into_any()),
                ("query", head.query().into_pyobject(py)?.into_any()),
                ("uri", head.target().into_pyobject(py)?.into_any()),
                (
                    "version",
                    head.version.as_str().into_pyobject(py)?.into_any(),
                ),
                ("headers", headers.into_pyobject(py)?.into_any()),
            ],
        )?;
        Ok((hooks::worker_obj(py, shared.worker.age)?, req_obj))
    })();
    let Ok((worker, req_obj)) = described else {
        handle(py, &shared.app, &shared.ctx, req, false);
        return;
    };
    shared
        .hooks
        .call(py, "pre_request", &[worker.clone(), req_obj.clone()]);
    let Some(done) = handle(py, &shared.app, &shared.ctx, req, true) else {
        return;
    };
    let resp = done
        .status
        .clone()
        .into_pyobject(py)
        .map_err(PyErr::from)
        .and_then(|s| hooks::namespace(py, &[("status", s.into_any())]));
    if let (Some(environ), Ok(resp)) = (done.environ, resp) {
        shared.hooks.call(
            py,
            "post_request",
            &[worker, req_obj, environ.into_any(), resp],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane() -> Arc<Lane> {
        Arc::new(Lane::new())
    }

    #[test]
    fn an_app_thread_asked_for_the_queue_waits_only_while_the_io_thread_takes_it() {
        let lane = lane();
        // Nothing asked: no wait.
        let t = Instant::now();
        lane.yield_to_io(Duration::from_secs(5));
        assert!(t.elapsed() < Duration::from_secs(1));
        // Asked, and nobody takes the lane: a short wait, and the ask is dropped.
        assert!(lane.try_take(false));
        assert!(!lane.try_take(true));
        lane.give();
        assert!(lane.asked_back());
        let t = Instant::now();
        lane.yield_to_io(Duration::from_millis(20));
        assert!(t.elapsed() >= Duration::from_millis(20));
        assert!(!lane.asked_back());
        // Asked, and the I/O thread takes the lane: waited for until it gives it back.
        assert!(lane.try_take(false));
        assert!(!lane.try_take(true));
        lane.give();
        let io = {
            let lane = lane.clone();
            std::thread::spawn(move || {
                assert!(lane.try_take(false));
                std::thread::sleep(Duration::from_millis(100));
                lane.give_back();
            })
        };
        while !lane.lock().busy {
            std::thread::yield_now();
        }
        let t = Instant::now();
        lane.yield_to_io(Duration::from_millis(1));
        assert!(t.elapsed() >= Duration::from_millis(50));
        assert!(!lane.asked_back());
        assert!(!lane.lock().busy);
        io.join().ok();
    }
}
