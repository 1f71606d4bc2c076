//! The Python threads that run the app (`--threads`): each attaches to the
//! interpreter once and takes requests from a bounded queue, waiting for
//! them without the GIL.

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use oxgate_server::{Handler, Request};
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

/// Start `threads` app threads; `queue` requests may wait for one.
pub fn start(
    app: Py<PyAny>,
    ctx: Arc<AppContext>,
    threads: usize,
    queue: usize,
) -> std::io::Result<(Pool, Vec<JoinHandle<()>>)> {
    let (tx, rx) = bounded::<Request>(queue);
    let app = Arc::new(app);
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let (rx, app, ctx) = (rx.clone(), app.clone(), ctx.clone());
        let handle = std::thread::Builder::new()
            .name(format!("oxgate-app-{i}"))
            .spawn(move || serve(rx, app, ctx))?;
        handles.push(handle);
    }
    Ok((Pool { tx }, handles))
}

fn serve(rx: Receiver<Request>, app: Arc<Py<PyAny>>, ctx: Arc<AppContext>) {
    // recv fails once the server is gone and the queue is closed.
    Python::attach(|py| {
        while let Ok(req) = py.detach(|| rx.recv()) {
            handle(py, &app, &ctx, req);
        }
    });
}
