//! Calling the app for one request and driving its response iterable to
//! the connection (PEP 3333 "Specification Details"), with close() called
//! on every path: normal end, app exception, client disconnect.

use std::fs::File;
use std::os::fd::BorrowedFd;
use std::sync::{Mutex, PoisonError};

use bytes::BytesMut;
use oxgate_server::{Request, ResponseMsg, WholeBody};
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple, PyType};

use crate::conn_cache::ConnCache;
use crate::environ::{build_environ, AppContext};
use crate::file_wrapper::FileWrapper;
use crate::input::WsgiInput;
use crate::pybytes::to_bytes;
use crate::start_response::{
    lock, send_body, send_msg, send_whole, set_length_if_missing, type_name, SendError, SharedCore,
};
use crate::traceback::format_exception;

/// How driving the iterable ended.
enum Outcome {
    Done,
    Disconnected,
    Failed(PyErr),
}

/// What hooks see of a finished request: its environ and the status sent
/// ("500 Internal Server Error" when the app failed before sending one).
pub struct Handled<'py> {
    pub environ: Option<Bound<'py, PyDict>>,
    pub status: String,
}

/// Run `req` through the app; `hooked`: the post_request hook wants the
/// environ and status back.
pub fn handle<'py>(
    py: Python<'py>,
    app: &Py<PyAny>,
    ctx: &AppContext,
    req: Request,
    hooked: bool,
) -> Option<Handled<'py>> {
    let Request {
        head,
        body,
        conn,
        responder,
        request_id,
        ready_at: _,
    } = req;
    let mut cache = conn.app_state.take::<ConnCache>().unwrap_or_default();
    let (start, core) = match cache.start_response(py, responder, hooked) {
        Ok(made) => made,
        Err(e) => {
            log::error!(
                "Error preparing request {} {}: {e}",
                head.method(),
                head.path()
            );
            return None;
        }
    };
    let mut kept = None;
    let mut input = None;
    let outcome = (|| -> PyResult<Outcome> {
        let wsgi_input = cache.input(py, body)?;
        input = Some(wsgi_input.clone_ref(py));
        let environ = build_environ(py, ctx, &head, &conn, wsgi_input, &mut cache.strings)?;
        if let Some(id) = request_id.as_ref().filter(|id| !id.from_client) {
            // A generated id replaces what the client sent, if anything: the
            // app reads the id the log and the response carry.
            environ.set_item(intern!(py, "HTTP_X_REQUEST_ID"), id.as_str())?;
        }
        kept = Some(environ.clone());
        let result = app.bind(py).call1((environ, start))?;
        let outcome = drive(py, &core, &result);
        // PEP 3333: close() whatever happened while iterating. A list or
        // tuple has none, and asking would build an AttributeError.
        let plain =
            result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>();
        if !plain && matches!(result.hasattr(intern!(py, "close")), Ok(true)) {
            if let Err(e) = result.call_method0(intern!(py, "close")) {
                log::error!(
                    "Error closing response of {} {}\n{}",
                    head.method(),
                    head.path(),
                    format_exception(py, &e)
                );
            }
        }
        Ok(outcome)
    })()
    .unwrap_or_else(Outcome::Failed);
    match outcome {
        Outcome::Done => {}
        Outcome::Disconnected => {
            log::debug!("client went away during {} {}", head.method(), head.path());
        }
        Outcome::Failed(e) if client_left(input.as_ref(), &core) => {
            // The app raised because the client left (wsgi.input or write()
            // found it gone): not an app fault, and one line is enough.
            log::debug!(
                "client went away during {} {} (the app got: {})",
                head.method(),
                head.path(),
                e
            );
            lock(&core).abandon();
        }
        Outcome::Failed(e) => {
            log::error!(
                "Error handling request {} {}\n{}",
                head.method(),
                head.target(),
                format_exception(py, &e)
            );
            // Before the head went out the I/O side answers 500; after, it
            // cuts the connection. Either way the app's response is over.
            lock(&core).abandon();
        }
    }
    let status = hooked.then(|| {
        lock(&core)
            .sent_status
            .take()
            .unwrap_or_else(|| "500 Internal Server Error".to_owned())
    });
    cache.end_request(&core);
    conn.app_state.put(cache);
    let status = status?;
    Some(Handled {
        environ: kept,
        status,
    })
}

/// A read of wsgi.input or a write() found the connection closed by the
/// client, so whatever the app raised next is that disconnect.
fn client_left(input: Option<&Py<WsgiInput>>, core: &SharedCore) -> bool {
    input.is_some_and(|i| i.get().client_gone()) || lock(core).client_gone()
}

fn drive(py: Python<'_>, core: &SharedCore, result: &Bound<'_, PyAny>) -> Outcome {
    let sent = match drive_inner(py, core, result) {
        Ok(sent) => sent,
        Err(e) => return Outcome::Failed(e),
    };
    match sent {
        Ok(()) => Outcome::Done,
        Err(SendError::Disconnected) => Outcome::Disconnected,
        Err(e @ SendError::NoHead) => Outcome::Failed(e.into()),
    }
}

fn drive_inner(
    py: Python<'_>,
    core: &SharedCore,
    result: &Bound<'_, PyAny>,
) -> PyResult<Result<(), SendError>> {
    // A list or tuple is all in memory: one write with a Content-Length.
    // The usual single item is indexed, without an iterator object.
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        if result.len()? == 1 {
            let item = match result.cast_exact::<PyList>() {
                Ok(list) => list.get_item(0)?,
                Err(_) => result.get_item(0)?,
            };
            return Ok(send_whole(py, core, whole_body(body_bytes(&item)?)));
        }
        let mut whole = BytesMut::new();
        for item in result.try_iter()? {
            whole.extend_from_slice(body_bytes(&item?)?.as_bytes());
        }
        return Ok(send_whole(py, core, WholeBody::Shared(whole.freeze())));
    }
    // PEP 3333: any iterable with a len() of 1 has a known length too.
    if has_len(&result.get_type())? && result.len().is_ok_and(|n| n == 1) {
        if let Some(item) = result.try_iter()?.next() {
            return Ok(send_whole(py, core, whole_body(body_bytes(&item?)?)));
        }
    }
    if let Ok(wrapper) = result.cast::<FileWrapper>() {
        if let Some(sent) = try_sendfile(py, core, wrapper.get())? {
            return Ok(sent);
        }
    }
    for item in result.try_iter()? {
        let item = item?;
        let chunk = body_bytes(&item)?;
        if let Err(e) = send_body(py, core, to_bytes(chunk)) {
            return Ok(Err(e));
        }
    }
    Ok(send_msg(py, core, ResponseMsg::End))
}

/// Whether instances of `ty` have a `__len__`. Asking a type that has none
/// builds an AttributeError, about 4,000 instructions (a generator, Django's
/// HttpResponse): the answer for the last type asked is kept, since an app
/// answers with one type nearly always. A class given `__len__` after its
/// first response would go on without a Content-Length from it.
fn has_len(ty: &Bound<'_, PyType>) -> PyResult<bool> {
    static LAST: Mutex<Option<(Py<PyType>, bool)>> = Mutex::new(None);
    let lock = || LAST.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((known, has)) = lock().as_ref() {
        if known.is(ty) {
            return Ok(*has);
        }
    }
    // Not under the lock: a metaclass's Python code may let another thread
    // run, which could ask too.
    let has = ty.hasattr(intern!(ty.py(), "__len__"))?;
    let previous = lock().replace((ty.clone().unbind(), has));
    drop(previous);
    Ok(has)
}

/// One bytes object as a whole body: a small one is borrowed (an inline
/// call encodes it straight from the object), a large one shared.
fn whole_body<'a>(item: &'a Bound<'_, PyBytes>) -> WholeBody<'a> {
    let data = item.as_bytes();
    if data.len() <= SMALL_BODY {
        WholeBody::Borrowed(data)
    } else {
        WholeBody::Shared(to_bytes(item))
    }
}

/// Bodies up to this size go into the response buffer as they are.
const SMALL_BODY: usize = 16 * 1024;

fn body_bytes<'a, 'py>(item: &'a Bound<'py, PyAny>) -> PyResult<&'a Bound<'py, PyBytes>> {
    item.cast::<PyBytes>().map_err(|_| {
        PyTypeError::new_err(format!(
            "response body items must be bytes, not {}",
            type_name(item)
        ))
    })
}

/// The zero-copy path: a FileWrapper around a regular file is sent by the
/// kernel from the file's current position. None: not a real file, iterate.
fn try_sendfile(
    py: Python<'_>,
    core: &SharedCore,
    wrapper: &FileWrapper,
) -> PyResult<Option<Result<(), SendError>>> {
    let filelike = wrapper.filelike.bind(py);
    let Some(fd) = filelike
        .call_method0("fileno")
        .ok()
        .and_then(|f| f.extract::<i32>().ok())
        .filter(|fd| *fd >= 0)
    else {
        return Ok(None);
    };
    // SAFETY: the fd came from the file object, which we keep alive (and
    // open) for the duration of this borrow; we only dup it.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let Ok(owned) = borrowed.try_clone_to_owned() else {
        return Ok(None);
    };
    let file = File::from(owned);
    let Ok(meta) = file.metadata() else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Ok(None);
    }
    // Buffered Python files may have read ahead; tell() is where the app is.
    let offset = match filelike
        .call_method0("tell")
        .and_then(|t| t.extract::<u64>())
    {
        Ok(pos) => pos,
        Err(_) => return Ok(None),
    };
    let len = meta.len().saturating_sub(offset);
    set_length_if_missing(core, len);
    Ok(Some(
        send_msg(py, core, ResponseMsg::File { file, offset, len })
            .and_then(|()| send_msg(py, core, ResponseMsg::End)),
    ))
}
