//! Formatting Python exceptions for the error log, as Python prints them.

use pyo3::prelude::*;
use pyo3::types::PyAnyMethods;

/// The full traceback text of `err`, without the trailing newline.
pub fn format_exception(py: Python<'_>, err: &PyErr) -> String {
    let formatted = (|| -> PyResult<String> {
        let tb = py.import("traceback")?;
        let value = err.value(py);
        let lines = tb.call_method1(
            "format_exception",
            (value.get_type(), value, err.traceback(py)),
        )?;
        let text: String = pyo3::types::PyString::new(py, "")
            .call_method1("join", (lines,))?
            .extract()?;
        Ok(text)
    })();
    formatted
        .map(|t| t.trim_end().to_owned())
        .unwrap_or_else(|_| err.to_string())
}
