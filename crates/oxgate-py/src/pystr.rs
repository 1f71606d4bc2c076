//! A `str`'s UTF-8 without a copy. The wheel targets the stable ABI of
//! Python 3.9, whose limited API has no borrowing accessor, so pyo3's
//! `to_cow` there encodes to a temporary `bytes` and copies that into a
//! `String`: two allocations for every status and header string of every
//! response. `PyUnicode_AsUTF8AndSize` has been in every CPython 3 (and is
//! in the limited API from 3.10 on), with the same signature: found at run
//! time, it hands out the UTF-8 the string keeps (for ASCII, its own data).

use std::borrow::Cow;
use std::ffi::{c_char, c_void};
use std::sync::OnceLock;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

type AsUtf8AndSize =
    unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::Py_ssize_t) -> *const c_char;

fn as_utf8_and_size() -> Option<AsUtf8AndSize> {
    static FOUND: OnceLock<Option<AsUtf8AndSize>> = OnceLock::new();
    *FOUND.get_or_init(|| {
        // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only
        // looks the symbol up in what the process has loaded.
        let sym: *mut c_void =
            unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"PyUnicode_AsUTF8AndSize".as_ptr()) };
        // SAFETY: the symbol is CPython's PyUnicode_AsUTF8AndSize, whose C
        // signature is `const char *(PyObject *, Py_ssize_t *)` in every
        // CPython 3, which is what the function pointer type says.
        (!sym.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, AsUtf8AndSize>(sym) })
    })
}

/// `s` as UTF-8, borrowed from the string object where the interpreter
/// allows it.
pub fn utf8<'a>(s: &'a Bound<'_, PyString>) -> PyResult<Cow<'a, str>> {
    let Some(f) = as_utf8_and_size() else {
        return s.to_cow();
    };
    let mut len: ffi::Py_ssize_t = 0;
    // SAFETY: `s` is a live str (the GIL is held: we have a Bound), and
    // `len` is a valid out-pointer for the call.
    let ptr = unsafe { f(s.as_ptr(), &mut len) };
    if ptr.is_null() {
        // Not encodable (a lone surrogate): the exception is set.
        return Err(PyErr::fetch(s.py()));
    }
    let len = usize::try_from(len).unwrap_or(0);
    // SAFETY: CPython returns `len` bytes of valid UTF-8 that the string
    // object owns and keeps unchanged (str is immutable) for its lifetime,
    // which the borrow of `s` outlives.
    let bytes = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), len) };
    // SAFETY: the UTF-8 encoding CPython made (or the ASCII data itself)
    // is valid UTF-8 by construction.
    Ok(Cow::Borrowed(unsafe {
        std::str::from_utf8_unchecked(bytes)
    }))
}
