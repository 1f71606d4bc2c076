//! The `oxgate._oxgate` extension: the only crate that touches Python. App
//! loading, the PEP 3333 objects, and the threads that call the app.

use pyo3::prelude::*;

mod app;
mod cli;
mod config_file;
mod conn_cache;
mod django_static;
mod environ;
mod environ_cache;
mod errors;
mod fail;
mod file_wrapper;
mod gil_hold;
mod hooks;
mod input;
mod io_policy;
mod lent_body;
mod metrics;
mod pool;
mod pybytes;
mod pystr;
mod queue;
mod reloader;
mod respond;
mod spare_bodies;
mod start_response;
mod traceback;
mod worker;

/// Requests hand their buffers between the I/O thread and app threads (a
/// head parsed on one is freed on the other). glibc's per-thread caches
/// then empty on one side and overflow on the other, and most of those
/// allocations fall through to its slow paths; mimalloc frees to the
/// owning thread's page in a few instructions. Rust allocations only:
/// Python keeps its own allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[pymodule]
fn _oxgate(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(cli::run, m)?)?;
    m.add_class::<file_wrapper::FileWrapper>()?;
    m.add_class::<input::WsgiInput>()?;
    m.add_class::<errors::WsgiErrors>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
