//! Response bytes without a copy: a large `bytes` object from the app is
//! written from its own buffer, kept alive by a reference, instead of being
//! copied into a Rust buffer first.

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// Below this a copy is cheaper than holding the object (small pieces are
/// copied next to their framing anyway).
const SHARE_FROM: usize = 16 * 1024;

/// A `bytes` object's buffer. CPython bytes are immutable and never move,
/// so the buffer stays valid and unchanged while the reference is held,
/// and may be read without the GIL.
struct Shared {
    _owner: Py<PyBytes>,
    ptr: *const u8,
    len: usize,
}

// SAFETY: the pointed-to buffer is immutable for the object's lifetime,
// which `_owner` extends; `Py<T>` itself is Send and Sync (dropping it
// without the GIL defers the decref to pyo3's pool).
unsafe impl Send for Shared {}
// SAFETY: as above; only shared reads of an immutable buffer happen.
unsafe impl Sync for Shared {}

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr`/`len` describe the live, immutable buffer of
        // `_owner` (see the type's comment).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// The contents of `b` as `Bytes`: shared when large, copied when small.
pub fn to_bytes(b: &Bound<'_, PyBytes>) -> Bytes {
    let data = b.as_bytes();
    if data.len() < SHARE_FROM {
        return Bytes::copy_from_slice(data);
    }
    Bytes::from_owner(Shared {
        _owner: b.clone().unbind(),
        ptr: data.as_ptr(),
        len: data.len(),
    })
}
