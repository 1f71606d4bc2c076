//! A request body received straight into a Python `bytes` object, so that
//! `wsgi.input.read()` of the whole body hands the app that object instead
//! of a copy (`Handler::body_buffer`). Only on the I/O thread while it holds
//! the GIL for its inline calls: allocating a Python object needs the GIL,
//! and waiting for it there would stall every connection.

use std::any::Any;
use std::mem::MaybeUninit;

use oxgate_server::BodyBuffer;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::{ffi, Py};

use crate::gil_hold;

/// Below this, a body read whole comes with its head or in one more read,
/// and copying it costs less than the `bytes` object's own allocation.
const LEND_MIN: usize = 16 * 1024;

/// A `bytes` object of the body's length, filled by the I/O thread before
/// anything else can see it.
pub struct LentBody {
    object: Py<PyBytes>,
    data: *mut u8,
    len: usize,
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
        Python::attach(|py| {
            let len = isize::try_from(n).ok()?;
            // SAFETY: the GIL is held (attach). A null source asks for an
            // uninitialised buffer of `len` bytes, which the I/O thread fills
            // (`space`) before any code can read the object: nothing else
            // has it until `RequestBody::Lent` reaches wsgi.input.
            // PyBytes_AsString of a bytes object is its buffer, valid as long
            // as the object is.
            unsafe {
                let raw = ffi::PyBytes_FromStringAndSize(std::ptr::null(), len);
                let object: Py<PyBytes> = Bound::from_owned_ptr_or_opt(py, raw)?
                    .cast_into::<PyBytes>()
                    .ok()?
                    .unbind();
                let data = ffi::PyBytes_AsString(object.as_ptr()).cast::<u8>();
                if data.is_null() {
                    return None;
                }
                Some(Box::new(LentBody {
                    object,
                    data,
                    len: n,
                }) as Box<dyn BodyBuffer>)
            }
        })
    }

    /// The filled object of a `RequestBody::Lent`, if the body is one of ours.
    pub fn filled(lent: Box<dyn BodyBuffer>) -> Option<Py<PyBytes>> {
        lent.into_any()
            .downcast::<LentBody>()
            .ok()
            .map(|body| body.object)
    }
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
