//! What one connection keeps from one request to the next (in its
//! `ConnInfo::app_state`): the environ strings it can reuse, and its
//! `wsgi.input` and `start_response` objects, taken again by the next
//! request when nothing else holds them (making and freeing the two cost
//! more than the rest of a small request's Python objects together).
//! Must not outlive a request's data: what it keeps is emptied at its end.
//! It is dropped with its connection on the I/O thread, without the GIL:
//! pyo3 defers those reference drops to the next time a thread attaches
//! (so the `pyo3_disable_reference_pool` cfg must stay off).

use std::sync::Arc;

use oxgate_server::{RequestBody, Responder};
use pyo3::prelude::*;

use crate::environ_cache::ConnStrings;
use crate::input::WsgiInput;
use crate::start_response::{lock, Core, SharedCore, StartResponse};

/// How many references `obj` has, the one this cache holds included.
fn refs<T>(_attached: Python<'_>, obj: &Py<T>) -> isize {
    // SAFETY: `obj` is alive (we own a reference to it) and the thread is
    // attached to the interpreter (`_attached`), so nothing changes its
    // count while we read it.
    unsafe { pyo3::ffi::Py_REFCNT(obj.as_ptr()) }
}

/// Whether the reference this cache holds is `obj`'s only one.
fn sole<T>(py: Python<'_>, obj: &Py<T>) -> bool {
    refs(py, obj) == 1
}

#[derive(Default)]
pub struct ConnCache {
    pub strings: ConnStrings,
    input: Option<Py<WsgiInput>>,
    start: Option<Start>,
}

/// A `StartResponse` and its method the app is given.
struct Start {
    object: Py<StartResponse>,
    /// Bound to `object`, so it holds one of its references.
    method: Py<PyAny>,
}

impl Start {
    /// Nobody but this cache holds the method, the object (the `write` an
    /// app may keep) or their core.
    fn free(&self, py: Python<'_>) -> bool {
        sole(py, &self.method)
            && refs(py, &self.object) == 2
            && Arc::strong_count(&self.object.get().core) == 1
    }
}

impl ConnCache {
    /// `wsgi.input` for `body`: the last request's object if only this
    /// cache holds it, else a new one.
    pub fn input(&mut self, py: Python<'_>, body: RequestBody) -> PyResult<Py<WsgiInput>> {
        if let Some(input) = self.input.as_ref().filter(|i| sole(py, i)) {
            input.get().reset(py, body);
            return Ok(input.clone_ref(py));
        }
        let input = Py::new(py, WsgiInput::new(py, body))?;
        self.input = Some(input.clone_ref(py));
        Ok(input)
    }

    /// `start_response` (and its shared core) for a response sent through
    /// `responder`: the last request's if nothing else holds either.
    pub fn start_response(
        &mut self,
        py: Python<'_>,
        responder: Responder,
        keep_status: bool,
    ) -> PyResult<(Py<PyAny>, SharedCore)> {
        if let Some(start) = self.start.as_ref().filter(|s| s.free(py)) {
            let core = start.object.get().core.clone();
            lock(&core).reset(responder, keep_status);
            return Ok((start.method.clone_ref(py), core));
        }
        let core = Core::new(responder, keep_status);
        let object = Py::new(py, StartResponse { core: core.clone() })?;
        let method = StartResponse::bound(py, &object)?;
        let start = Start { object, method };
        let handed = start.method.clone_ref(py);
        self.start = Some(start);
        Ok((handed, core))
    }

    /// The request is over: drop its body and its response sender, so an
    /// idle connection holds neither (and the I/O side sees the sender
    /// gone). An app that kept the objects finds an empty body and a
    /// closed response.
    pub fn end_request(&self, core: &SharedCore) {
        if let Some(input) = &self.input {
            input.get().clear();
        }
        lock(core).disconnect();
    }
}
