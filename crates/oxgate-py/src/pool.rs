//! The Python threads that run the app (`--threads`): each attaches to the
//! interpreter once and takes requests from a bounded queue, waiting for
//! them without the GIL. Each marks what it runs on the master's scoreboard.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use oxgate_server::{Handler, Request};
use oxgate_supervisor::WorkerContext;
use pyo3::prelude::*;

use crate::environ::AppContext;
use crate::hooks::{self, Hooks};
use crate::respond::handle;

pub struct Pool {
    tx: Sender<Request>,
}

impl Handler for Pool {
    fn call(&self, req: Request) -> Result<(), Box<Request>> {
        self.tx.try_send(req).map_err(|e| match e {
            TrySendError::Full(r) | TrySendError::Disconnected(r) => Box::new(r),
        })
    }
}

/// What the app threads share: the app, its environ constants, and the
/// worker's bookkeeping with the master.
pub struct Shared {
    pub app: Py<PyAny>,
    pub hooks: Arc<Hooks>,
    pub ctx: AppContext,
    pub worker: Arc<WorkerContext>,
    served: AtomicU64,
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
    let (tx, rx) = bounded::<Request>(queue);
    let shared = Arc::new(Shared {
        app,
        hooks,
        ctx,
        worker,
        served: AtomicU64::new(0),
    });
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let (rx, shared) = (rx.clone(), shared.clone());
        let handle = std::thread::Builder::new()
            .name(format!("oxgate-app-{i}"))
            .spawn(move || serve(rx, shared, i))?;
        handles.push(handle);
    }
    Ok((Pool { tx }, handles))
}

fn serve(rx: Receiver<Request>, shared: Arc<Shared>, index: usize) {
    let w = &shared.worker;
    // recv fails once the server is gone and the queue is closed.
    Python::attach(|py| {
        while let Ok(req) = py.detach(|| rx.recv()) {
            w.scoreboard.begin(
                w.slot,
                index,
                &format!("{} {}", req.head.method, req.head.path),
            );
            let hooked = shared.hooks.has("pre_request") || shared.hooks.has("post_request");
            if hooked {
                with_hooks(py, &shared, req);
            } else {
                handle(py, &shared.app, &shared.ctx, req);
            }
            w.scoreboard.end(w.slot, index);
            let served = shared.served.fetch_add(1, Ordering::Relaxed) + 1;
            if w.max_requests > 0 && served == w.max_requests {
                log::info!("Autorestarting worker after {served} requests");
                w.retire();
            }
        }
    });
}

/// pre_request(worker, req) and post_request(worker, req, environ, resp)
/// around the app, with gunicorn's attribute names on req and resp.
fn with_hooks(py: Python<'_>, shared: &Shared, req: Request) {
    let head = &req.head;
    let described = (|| -> PyResult<(Bound<'_, PyAny>, Bound<'_, PyAny>)> {
        let headers: Vec<(String, String)> = head
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_ascii_uppercase(),
                    String::from_utf8_lossy(&h.value).into_owned(),
                )
            })
            .collect();
        let req_obj = hooks::namespace(
            py,
            &[
                ("method", head.method.clone().into_pyobject(py)?.into_any()),
                ("path", head.path.clone().into_pyobject(py)?.into_any()),
                ("query", head.query.clone().into_pyobject(py)?.into_any()),
                ("uri", head.target.clone().into_pyobject(py)?.into_any()),
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
        handle(py, &shared.app, &shared.ctx, req);
        return;
    };
    shared
        .hooks
        .call(py, "pre_request", &[worker.clone(), req_obj.clone()]);
    let done = handle(py, &shared.app, &shared.ctx, req);
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
