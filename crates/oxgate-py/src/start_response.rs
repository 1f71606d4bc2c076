//! `start_response` and the `write()` it returns (PEP 3333 "The
//! start_response() Callable"): validation, exc_info, and the rule that
//! headers leave only with the first body bytes.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use oxgate_proto::response::{
    is_hop_by_hop, parse_content_length, validate_header, validate_status,
};
use oxgate_server::{Responder, ResponseHead, ResponseMsg, WholeBody};
use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString, PyTuple};

/// The response as the app has shaped it so far.
pub struct Core {
    responder: Option<Responder>,
    /// The status that went out, kept only for post_request hooks.
    pub sent_status: Option<String>,
    keep_status: bool,
    pending: Option<ResponseHead>,
    pub head_sent: bool,
}

pub type SharedCore = Arc<Mutex<Core>>;

/// Why body bytes could not go out.
pub enum SendError {
    NoHead,
    Disconnected,
}

impl From<SendError> for PyErr {
    fn from(e: SendError) -> PyErr {
        match e {
            SendError::NoHead => {
                PyRuntimeError::new_err("response body sent before start_response() was called")
            }
            SendError::Disconnected => PyOSError::new_err("client disconnected"),
        }
    }
}

pub fn lock(core: &SharedCore) -> MutexGuard<'_, Core> {
    // A panic while holding this lock cannot leave it half-updated in a way
    // that matters more than serving on; take the data back.
    core.lock().unwrap_or_else(|p| p.into_inner())
}

impl Core {
    /// `keep_status`: remember the status sent (a copy per request).
    pub fn new(responder: Responder, keep_status: bool) -> SharedCore {
        Arc::new(Mutex::new(Core::fresh(responder, keep_status)))
    }

    fn fresh(responder: Responder, keep_status: bool) -> Core {
        Core {
            responder: Some(responder),
            sent_status: None,
            keep_status,
            pending: None,
            head_sent: false,
        }
    }

    /// Start over for another request's response.
    pub fn reset(&mut self, responder: Responder, keep_status: bool) {
        *self = Core::fresh(responder, keep_status);
    }

    pub fn has_head(&self) -> bool {
        self.pending.is_some() || self.head_sent
    }

    /// Take the pending head for sending, plus a sender to send it with.
    pub fn take_head(&mut self) -> Result<(Option<ResponseHead>, Responder), SendError> {
        let responder = self.responder.clone().ok_or(SendError::Disconnected)?;
        if self.head_sent {
            return Ok((None, responder));
        }
        let head = self.pending.take().ok_or(SendError::NoHead)?;
        self.head_sent = true;
        if self.keep_status {
            self.sent_status = Some(head.status_line().into_owned());
        }
        Ok((Some(head), responder))
    }

    pub fn disconnect(&mut self) {
        self.responder = None;
    }

    /// A send found the client gone (before `abandon`, only a disconnect
    /// drops the responder).
    pub fn client_gone(&self) -> bool {
        self.responder.is_none()
    }

    /// Give up the response: dropping the sender without `End` tells the
    /// I/O side to answer 500 or cut the connection.
    pub fn abandon(&mut self) {
        self.responder = None;
        self.pending = None;
    }
}

/// Send body bytes, with the head first if it has not gone yet. Empty data
/// sends nothing (PEP 3333: headers wait for the first non-empty block).
pub fn send_body(py: Python<'_>, core: &SharedCore, data: Bytes) -> Result<(), SendError> {
    if data.is_empty() {
        return Ok(());
    }
    let (head, responder) = lock(core).take_head()?;
    let sent = off_gil(py, &responder, data.len() + 1024, || {
        if let Some(head) = head {
            responder.send_blocking(ResponseMsg::Head(head))?;
        }
        responder.send_blocking(ResponseMsg::Body(data))
    });
    sent.map_err(|_| {
        lock(core).disconnect();
        SendError::Disconnected
    })
}

/// Run a send without the GIL when it may wait: for the I/O thread to take
/// what the buffer holds, or for a slow client (an inline responder's,
/// which other Python threads must not wait on with it). A send that waits
/// for nobody keeps the GIL rather than pay to hand it back and forth: an
/// inline responder's most of the time, a queued one's while the
/// connection's buffer has room.
fn off_gil<T: Send>(
    py: Python<'_>,
    responder: &Responder,
    n: usize,
    send: impl Send + FnOnce() -> T,
) -> T {
    if responder.sends_at_once(n) {
        send()
    } else {
        py.detach(send)
    }
}

/// Send a message that needs no head handling (File, End), head first if due.
pub fn send_msg(py: Python<'_>, core: &SharedCore, msg: ResponseMsg) -> Result<(), SendError> {
    let (head, responder) = lock(core).take_head()?;
    let sent = off_gil(py, &responder, 1024, || {
        let msg = match (head, msg) {
            // Nothing was sent and nothing more will be: one message.
            (Some(head), ResponseMsg::End) => ResponseMsg::Whole(head, Bytes::new()),
            (Some(head), msg) => {
                responder.send_blocking(ResponseMsg::Head(head))?;
                msg
            }
            (None, msg) => msg,
        };
        responder.send_blocking(msg)
    });
    let result = sent.map_err(|_| SendError::Disconnected);
    lock(core).disconnect_if(result.is_err());
    result
}

/// Send the head and the whole body at once (a list or tuple result).
pub fn send_whole(py: Python<'_>, core: &SharedCore, body: WholeBody<'_>) -> Result<(), SendError> {
    let (head, responder) = lock(core).take_head()?;
    let sent = off_gil(py, &responder, body.len() + 1024, || match head {
        Some(head) => responder.send_whole(head, body),
        None => {
            if !body.is_empty() {
                responder.send_blocking(ResponseMsg::Body(body.into_bytes()))?;
            }
            responder.send_blocking(ResponseMsg::End)
        }
    });
    let result = sent.map_err(|_| SendError::Disconnected);
    lock(core).disconnect_if(result.is_err());
    result
}

impl Core {
    fn disconnect_if(&mut self, yes: bool) {
        if yes {
            self.responder = None;
        }
    }
}

/// Set the app's Content-Length on the pending head when it has none.
pub fn set_length_if_missing(core: &SharedCore, len: u64) {
    if let Some(head) = lock(core).pending.as_mut() {
        head.content_length.get_or_insert(len);
    }
}

/// `start_response`, and the `write(body_data)` callable it returns, which
/// is this same object: called with one bytes argument it writes. PEP 3333
/// asks only for a callable taking one positional argument, and one object
/// per request costs less to make and free than two.
#[pyclass(module = "oxgate", name = "StartResponse", frozen)]
pub struct StartResponse {
    pub core: SharedCore,
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers=None, exc_info=None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: Option<&Bound<'py, PyAny>>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, Self>>> {
        Self::start(slf, status, headers, exc_info)
    }

    /// The same as calling the object. Apps get this method bound to it
    /// (`StartResponse::bound`): a builtin method is called through
    /// vectorcall, with no argument tuple to make and parse as `__call__`
    /// (tp_call) needs.
    #[pyo3(signature = (status, headers=None, exc_info=None))]
    #[allow(clippy::self_named_constructors)] // a method, named as PEP 3333 names it
    fn start_response<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: Option<&Bound<'py, PyAny>>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, Self>>> {
        Self::start(slf, status, headers, exc_info)
    }
}

impl StartResponse {
    /// `start.start_response`, the callable passed to the app.
    pub fn bound(py: Python<'_>, start: &Py<StartResponse>) -> PyResult<Py<PyAny>> {
        Ok(start
            .bind(py)
            .getattr(pyo3::intern!(py, "start_response"))?
            .unbind())
    }

    fn start<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: Option<&Bound<'py, PyAny>>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, Self>>> {
        let core = &slf.get().core;
        let Some(headers) = headers else {
            // One argument: write(body_data) once a head was given, else a
            // start_response() call that forgot its headers.
            if status.is_instance_of::<PyString>() && !lock(core).has_head() {
                return Err(PyTypeError::new_err(
                    "start_response() missing 1 required positional argument: 'headers'",
                ));
            }
            write(slf.py(), core, status)?;
            return Ok(None);
        };
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let core = lock(core);
            match exc_info {
                // PEP 3333: too late to change the status; re-raise the error.
                Some(info) if core.head_sent => return Err(reraise(info)),
                Some(_) => {}
                None if core.has_head() => {
                    return Err(PyRuntimeError::new_err(
                        "start_response() called a second time without exc_info",
                    ))
                }
                None => {}
            }
        }
        let head = parse_head(status, headers)?;
        lock(core).pending = Some(head);
        Ok(Some(slf.clone()))
    }
}

/// `write(body_data)` (PEP 3333 "The write() Callable").
fn write(py: Python<'_>, core: &SharedCore, data: &Bound<'_, PyAny>) -> PyResult<()> {
    let bytes = data.cast::<PyBytes>().map_err(|_| {
        PyTypeError::new_err(format!("write() takes bytes, not {}", type_name(data)))
    })?;
    send_body(py, core, crate::pybytes::to_bytes(bytes))?;
    Ok(())
}

fn reraise(info: &Bound<'_, PyAny>) -> PyErr {
    let value = info.cast::<PyTuple>().ok().and_then(|t| t.get_item(1).ok());
    match value {
        Some(v) => PyErr::from_value(v),
        None => PyTypeError::new_err("exc_info must be a (type, value, traceback) tuple"),
    }
}

pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".to_owned())
}

fn parse_head(status: &Bound<'_, PyAny>, headers: &Bound<'_, PyAny>) -> PyResult<ResponseHead> {
    let status = status.cast::<PyString>().map_err(|_| {
        PyTypeError::new_err(format!(
            "status must be a str like '200 OK', not {}",
            type_name(status)
        ))
    })?;
    let status_line = crate::pystr::utf8(status)?;
    let code = validate_status(&status_line).map_err(|e| PyValueError::new_err(e.to_string()))?;
    let mut head = ResponseHead::new(code, &status_line);
    // By index, not through a Python iterator: one object fewer to make.
    if let Ok(list) = headers.cast::<pyo3::types::PyList>() {
        for item in list.iter() {
            add_header(&mut head, &item)?;
        }
    } else if let Ok(tuple) = headers.cast::<PyTuple>() {
        for item in tuple.iter_borrowed() {
            add_header(&mut head, &item)?;
        }
    } else {
        return Err(PyTypeError::new_err(format!(
            "response headers must be a list of (name, value) tuples, not {}",
            type_name(headers)
        )));
    }
    Ok(head)
}

/// One (name, value) pair of the app's headers, checked, onto `head`.
fn add_header(head: &mut ResponseHead, item: &Bound<'_, PyAny>) -> PyResult<()> {
    let pair = item
        .cast::<PyTuple>()
        .ok()
        .filter(|t| t.len() == 2)
        .ok_or_else(|| {
            PyTypeError::new_err(format!(
                "each response header must be a (name, value) tuple, got {}",
                item.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        })?;
    let (name, value) = (pair.get_borrowed_item(0)?, pair.get_borrowed_item(1)?);
    let (Ok(name), Ok(value)) = (name.cast::<PyString>(), value.cast::<PyString>()) else {
        return Err(PyTypeError::new_err(format!(
            "header names and values must be str, got ({}, {})",
            type_name(&name),
            type_name(&value)
        )));
    };
    let (name, value) = (crate::pystr::utf8(&name)?, crate::pystr::utf8(&value)?);
    let (name, value) = (name.as_ref(), value.as_ref());
    validate_header(name, value).map_err(|e| PyValueError::new_err(e.to_string()))?;
    if name.eq_ignore_ascii_case("content-length") {
        let n = parse_content_length(value).ok_or_else(|| {
            PyValueError::new_err(format!("invalid Content-Length header {value:?}"))
        })?;
        head.content_length = Some(n);
    } else if name.eq_ignore_ascii_case("connection") {
        // The server owns connection management; honour only "close".
        if value
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("close"))
        {
            head.close = true;
        }
    } else if is_hop_by_hop(name) {
        // PEP 3333: hop-by-hop headers are the server's business; the
        // framing is ours, so drop rather than send two framings.
        log::debug!("dropping hop-by-hop response header {name}");
    } else {
        head.push_header(name, value);
    }
    Ok(())
}
