//! The Python threads that run the app (`--threads`): each attaches to the
//! interpreter once and takes requests from a bounded queue, waiting for
//! them without the GIL. Each marks what it runs on the master's scoreboard.
//!
//! With one thread, the I/O thread itself runs requests inline while the
//! app answers fast (and the body is in memory): the hand-off to another
//! thread and back costs more than a small app does, and a call of well
//! under a millisecond holds the other connections no longer than the
//! hand-off would. Once calls get slow (or one waited for its client to
//! read a streamed response), requests go to the app thread, so
//! the I/O thread keeps reading, timing out and refusing (503) while the
//! app works. A lane lock keeps it to one request at a time, as
//! `--threads 1` promises.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use oxgate_server::observe::now_us;
use oxgate_server::{Handler, Request};
use oxgate_supervisor::WorkerContext;
use pyo3::prelude::*;

use crate::environ::AppContext;
use crate::gil_hold;
use crate::hooks::{self, Hooks};
use crate::io_policy::IoPolicy;
use crate::queue::Queue;
use crate::respond::handle;

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

/// Inline calls stop while app calls average more than this.
const INLINE_MAX_NANOS: u64 = 1_000_000;

/// The one app lane of `--threads 1`, shared by the I/O thread's inline
/// calls and the app thread.
struct Lane {
    /// Recent app call time, in nanoseconds: a moving average that a slow
    /// call lifts at once and fast calls bring down over a few dozen.
    recent: AtomicU64,
    busy: Mutex<bool>,
    freed: Condvar,
    /// The app thread waits for the lane.
    wanted: AtomicUsize,
}

impl Lane {
    fn lock(&self) -> MutexGuard<'_, bool> {
        self.busy.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn try_take(&self) -> bool {
        let mut busy = self.lock();
        !std::mem::replace(&mut *busy, true)
    }

    fn take(&self) {
        let mut busy = self.lock();
        while *busy {
            busy = self
                .freed
                .wait(busy)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *busy = true;
    }

    fn give(&self) {
        *self.lock() = false;
        // A futex wake costs a syscall: only when the app thread waits.
        if self.wanted.load(Ordering::Acquire) > 0 {
            self.freed.notify_one();
        }
    }
}

impl Handler for Pool {
    fn call(&self, req: Request) -> Result<(), Box<Request>> {
        // An app thread will want the GIL for this one.
        gil_hold::release();
        self.queue.push(req).map_err(Box::new)
    }

    fn tend(&self) -> Option<Duration> {
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

    fn call_inline(&self, req: Request) -> Result<(), Box<Request>> {
        let Some(lane) = &self.shared.lane else {
            return Err(Box::new(req));
        };
        // Queued requests go first: the app thread has them, or will.
        if lane.recent.load(Ordering::Relaxed) > INLINE_MAX_NANOS
            || lane.wanted.load(Ordering::Acquire) > 0
            || !self.queue.is_empty()
            || !lane.try_take()
        {
            // The app thread has work, or is about to: it needs the GIL.
            gil_hold::release();
            return Err(Box::new(req));
        }
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
        drop(responder);
        lane.give();
        Ok(())
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
        lane: (threads == 1).then(|| Lane {
            recent: AtomicU64::new(0),
            busy: Mutex::new(false),
            freed: Condvar::new(),
            wanted: AtomicUsize::new(0),
        }),
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
                None => run(py, &shared, req, index),
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
