//! A request body received straight into a Python `bytes` object, so that
//! `wsgi.input.read()` of the whole body hands the app that object instead
//! of a copy (`Handler::body_buffer`). Only on the I/O thread while it holds
//! the GIL for its inline calls: allocating a Python object needs the GIL,
//! and waiting for it there would stall every connection.

use std::any::Any;
use std::mem::MaybeUninit;

use oxgate_server::BodyBuffer;
use pyo3::exceptions::PySystemError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::{ffi, Py};

use crate::gil_hold;

/// Below this, a body read whole comes with its head or in one more read,
/// and copying it costs less than the `bytes` object's own allocation.
pub const LEND_MIN: usize = 16 * 1024;

/// A `bytes` object of the body's length (or a spare one at least as long,
/// `SpareBodies`), filled by the I/O thread before anything else can see it.
pub struct LentBody {
    object: Py<PyBytes>,
    data: *mut u8,
    /// The body's length: what `space` lends.
    len: usize,
    /// The object's.
    capacity: usize,
}

// SAFETY: `data` points into `object`'s own buffer, which lives as long as
// `object` does (kept here). Only the I/O thread writes it, through
// `space(&mut self)`, before the body is handed on as the object itself.
// Moving the owner between threads is what a `Py` allows.
unsafe impl Send for LentBody {}

impl LentBody {
    /// Memory for a body of `n` bytes, if this thread holds the GIL already
    /// and the body is worth it.
    pub fn lend(n: usize) -> Option<Box<dyn BodyBuffer>> {
        if n < LEND_MIN || !gil_hold::holding() {
            return None;
        }
        Python::attach(|py| Some(Box::new(Self::make(py, n)?) as Box<dyn BodyBuffer>))
    }

    /// An unfilled `bytes` object of `n` bytes.
    pub fn make(py: Python<'_>, n: usize) -> Option<LentBody> {
        let len = isize::try_from(n).ok()?;
        // SAFETY: the GIL is held (`py`). A null source asks for an
        // uninitialised buffer of `len` bytes, which the I/O thread fills
        // (`space`) before any code can read the object: nothing else has
        // it until `RequestBody::Lent` reaches wsgi.input. PyBytes_AsString
        // of a bytes object is its buffer, valid as long as the object is.
        unsafe {
            let raw = ffi::PyBytes_FromStringAndSize(std::ptr::null(), len);
            // Out of memory: the error is taken (`ok()` drops it), so it is
            // not left set for the next call to find.
            let object: Py<PyBytes> = Bound::from_owned_ptr_or_err(py, raw)
                .ok()?
                .cast_into::<PyBytes>()
                .ok()?
                .unbind();
            let data = ffi::PyBytes_AsString(object.as_ptr()).cast::<u8>();
            if data.is_null() {
                return None;
            }
            Some(LentBody {
                object,
                data,
                len: n,
                capacity: n,
            })
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Lend only the first `n` bytes: `filled` cuts the object to them.
    pub fn cut_to(&mut self, n: usize) {
        self.len = n.min(self.capacity);
    }

    /// Whether `filled` can cut an object to its body: not with the stable
    /// ABI, which has no way to shorten a `bytes` object.
    pub fn can_cut() -> bool {
        cfg!(not(feature = "abi3"))
    }

    /// The filled object of a `RequestBody::Lent`. An error if the body is
    /// not one of ours, or was lost cutting it (out of memory).
    pub fn filled(py: Python<'_>, lent: Box<dyn BodyBuffer>) -> PyResult<Py<PyBytes>> {
        let body = lent
            .into_any()
            .downcast::<LentBody>()
            .map_err(|_| PySystemError::new_err("a request body lent by another handler"))?;
        if body.len == body.capacity {
            return Ok(body.object);
        }
        cut(py, body.object, body.len)
    }
}

/// `object`, held only here, shortened to its first `n` bytes in place.
#[cfg(not(feature = "abi3"))]
fn cut(py: Python<'_>, object: Py<PyBytes>, n: usize) -> PyResult<Py<PyBytes>> {
    extern "C" {
        // CPython's own (cpython/bytesobject.h, every version oxgate
        // supports); pyo3-ffi keeps its binding private.
        fn _PyBytes_Resize(
            bytes: *mut *mut ffi::PyObject,
            size: ffi::Py_ssize_t,
        ) -> std::ffi::c_int;
    }
    let size = isize::try_from(n)?;
    let mut raw = object.into_ptr();
    // SAFETY: the GIL is held (`py`), and `raw` is the only reference to a
    // bytes object (made by `LentBody::make`, never handed out), which is
    // what resizing needs. A shrink keeps its first `n` bytes, filled; on
    // failure the object is freed and `raw` set to null with an error set.
    unsafe {
        if _PyBytes_Resize(&mut raw, size) != 0 {
            return Err(PyErr::fetch(py));
        }
        Ok(Bound::from_owned_ptr(py, raw)
            .cast_into_unchecked::<PyBytes>()
            .unbind())
    }
}

/// Never called: `SpareBodies` lends nothing to cut under the stable ABI.
#[cfg(feature = "abi3")]
fn cut(_py: Python<'_>, _object: Py<PyBytes>, _n: usize) -> PyResult<Py<PyBytes>> {
    Err(PySystemError::new_err(
        "a request body cut without the means",
    ))
}

impl BodyBuffer for LentBody {
    fn space(&mut self) -> &mut [MaybeUninit<u8>] {
        // SAFETY: `data` is valid for `len` bytes while `object` lives (it
        // does: self), read here as uninitialised bytes; `&mut self` makes
        // this the only access.
        unsafe { std::slice::from_raw_parts_mut(self.data.cast(), self.len) }
    }

    fn len(&self) -> usize {
        self.len
    }

    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}
