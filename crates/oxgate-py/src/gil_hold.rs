//! The I/O thread keeps the GIL from one inline call to the next within a
//! turn of its loop, and gives it up when the loop is about to sleep.
//!
//! Taking and dropping the GIL per inline call (a mutex and a condition
//! variable each way, under `PyGILState_Ensure`/`Release`) cost about 560
//! instructions of a 15,300-instruction hello request. Under load a turn
//! runs the calls of every connection that became ready, so held across
//! the turn that cost is paid once for all of them. Nobody is kept waiting
//! for it: inline calls run only while the one app thread has nothing to do
//! (pool.rs), and a thread that does want the GIL meanwhile gets it at the
//! end of the turn, or earlier at the next call's bytecode, where Python's
//! own switch interval applies.

use std::cell::Cell;

use pyo3::ffi;

#[cfg(not(feature = "abi3"))]
use ffi::PyGILState_Check;

// Not in the limited API, so pyo3 leaves it out of an abi3 build; libpython
// has exported it since 3.4, so an abi3 wheel finds it on every version it
// loads into (>= 3.9).
#[cfg(feature = "abi3")]
extern "C" {
    fn PyGILState_Check() -> std::ffi::c_int;
}

thread_local! {
    /// This thread took the GIL here and still holds it.
    static HELD: Cell<bool> = const { Cell::new(false) };
}

/// Take the GIL for the calling thread, if it does not hold it already, and
/// keep it until [`release`]. Only for the I/O thread, outside any
/// `Python::attach` (its GIL given up by the `detach` around the runtime).
pub fn take() {
    if HELD.get() {
        return;
    }
    // SAFETY: PyGILState_Check and PyGILState_GetThisThreadState may be
    // called without the GIL. PyEval_RestoreThread's conditions hold: the
    // thread state is this thread's own (the one `detach` saved), and this
    // thread does not hold the GIL (checked just before).
    unsafe {
        if PyGILState_Check() != 0 {
            return;
        }
        let ts = ffi::PyGILState_GetThisThreadState();
        if ts.is_null() {
            // No thread state yet: nothing to hold, `attach` makes one.
            return;
        }
        ffi::PyEval_RestoreThread(ts);
    }
    HELD.set(true);
}

/// Whether this thread holds the GIL from a [`take`]: the I/O thread
/// within a turn that ran an inline call.
pub fn holding() -> bool {
    HELD.get()
}

/// Give up what [`take`] took on this thread; nothing otherwise. Must not be
/// called inside `Python::attach`: the loop's park and the end of the
/// runtime are the places.
pub fn release() {
    if HELD.replace(false) {
        // SAFETY: HELD says this thread took the GIL in `take` and still
        // holds it, with its own thread state current: the state
        // PyEval_SaveThread needs. No `attach` is running on this thread
        // (see the contract above), so none loses the GIL under it.
        unsafe {
            ffi::PyEval_SaveThread();
        }
    }
}

/// Releases on drop: around the runtime, so the GIL is given back before
/// `detach` takes it again (which would wait for itself), even on a panic.
pub struct ReleaseOnDrop;

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        release();
    }
}
