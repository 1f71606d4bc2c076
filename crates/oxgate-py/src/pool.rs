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
    pub ctx: AppContext,
    pub worker: Arc<WorkerContext>,
    served: AtomicU64,
}

/// Start `threads` app threads; `queue` requests may wait for one.
pub fn start(
    app: Py<PyAny>,
    ctx: AppContext,
    worker: Arc<WorkerContext>,
    threads: usize,
    queue: usize,
) -> std::io::Result<(Pool, Vec<JoinHandle<()>>)> {
    let (tx, rx) = bounded::<Request>(queue);
    let shared = Arc::new(Shared {
        app,
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
            handle(py, &shared.app, &shared.ctx, req);
            w.scoreboard.end(w.slot, index);
            let served = shared.served.fetch_add(1, Ordering::Relaxed) + 1;
            if w.max_requests > 0 && served == w.max_requests {
                log::info!("Autorestarting worker after {served} requests");
                w.retire();
            }
        }
    });
}
