//! Server hooks from the config file, with gunicorn's names and arguments:
//! `server` and `worker` are small objects with the attributes hooks use
//! most (pid, log, num_workers, age, cfg). A hook that raises is logged,
//! never fatal.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use crate::traceback::format_exception;

pub const NAMES: [&str; 14] = [
    "pre_exec",
    "on_starting",
    "on_reload",
    "when_ready",
    "pre_fork",
    "post_fork",
    "post_worker_init",
    "worker_int",
    "pre_request",
    "post_request",
    "child_exit",
    "worker_exit",
    "nworkers_changed",
    "on_exit",
];

#[derive(Default)]
pub struct Hooks {
    found: HashMap<&'static str, Py<PyAny>>,
}

impl Hooks {
    /// Keep `value` if `name` is a hook; says whether it was one.
    pub fn offer(&mut self, name: &str, value: &Bound<'_, PyAny>) -> bool {
        match NAMES.iter().find(|n| **n == name) {
            Some(n) if value.is_callable() => {
                self.found.insert(n, value.clone().unbind());
                true
            }
            _ => false,
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.found.contains_key(name)
    }

    pub fn call<'py>(&self, py: Python<'py>, name: &str, args: &[Bound<'py, PyAny>]) {
        let Some(hook) = self.found.get(name) else {
            return;
        };
        let called = PyTuple::new(py, args).and_then(|a| hook.bind(py).call1(a));
        if let Err(e) = called {
            log::error!("Exception in {name} hook\n{}", format_exception(py, &e));
        }
    }
}

/// `log` for hooks: info(), warning(), ... like gunicorn's logger, with
/// %-style arguments, into oxgate's error log.
#[pyclass(module = "oxgate", name = "HookLog", frozen)]
pub struct HookLog;

fn render(msg: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) -> String {
    let text = if args.is_empty() {
        msg.str()
    } else {
        msg.rem(args).and_then(|m| m.str())
    };
    text.map(|t| t.to_string())
        .unwrap_or_else(|_| msg.to_string())
}

#[pymethods]
impl HookLog {
    #[pyo3(signature = (msg, *args))]
    fn debug(&self, msg: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) {
        log::debug!("{}", render(msg, args));
    }
    #[pyo3(signature = (msg, *args))]
    fn info(&self, msg: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) {
        log::info!("{}", render(msg, args));
    }
    #[pyo3(signature = (msg, *args))]
    fn warning(&self, msg: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) {
        log::warn!("{}", render(msg, args));
    }
    #[pyo3(signature = (msg, *args))]
    fn error(&self, msg: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) {
        log::error!("{}", render(msg, args));
    }
    #[pyo3(signature = (msg, *args))]
    fn critical(&self, msg: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) {
        log::error!("{}", render(msg, args));
    }
    #[pyo3(signature = (msg, *args))]
    fn exception(&self, py: Python<'_>, msg: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) {
        let tb = PyErr::take(py)
            .map(|e| format!("\n{}", format_exception(py, &e)))
            .unwrap_or_default();
        log::error!("{}{tb}", render(msg, args));
    }
}

/// A `types.SimpleNamespace` with `log` and the given attributes.
pub fn namespace<'py>(
    py: Python<'py>,
    attrs: &[(&str, Bound<'py, PyAny>)],
) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("log", Py::new(py, HookLog)?)?;
    for (k, v) in attrs {
        kwargs.set_item(k, v)?;
    }
    py.import("types")?
        .getattr("SimpleNamespace")?
        .call((), Some(&kwargs))
}

/// gunicorn's `server` argument: the master's pid and worker count.
pub fn server_obj(
    py: Python<'_>,
    master_pid: u32,
    num_workers: usize,
) -> PyResult<Bound<'_, PyAny>> {
    namespace(
        py,
        &[
            ("pid", master_pid.into_pyobject(py)?.into_any()),
            ("num_workers", num_workers.into_pyobject(py)?.into_any()),
        ],
    )
}

/// gunicorn's `worker` argument, for the current worker process.
pub fn worker_obj(py: Python<'_>, age: u64) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: getppid cannot fail.
    let ppid = unsafe { libc::getppid() };
    namespace(
        py,
        &[
            ("pid", std::process::id().into_pyobject(py)?.into_any()),
            ("ppid", ppid.into_pyobject(py)?.into_any()),
            ("age", age.into_pyobject(py)?.into_any()),
        ],
    )
}
