//! `wsgi.errors` (PEP 3333): a text stream whose writes go to the error log.

use pyo3::prelude::*;

#[pyclass(module = "oxgate", name = "ErrorStream", frozen)]
pub struct WsgiErrors;

#[pymethods]
impl WsgiErrors {
    fn write(&self, text: &str) -> usize {
        oxgate_server::logging::write_raw(text);
        text.chars().count()
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            oxgate_server::logging::write_raw(&line?.extract::<String>()?);
        }
        Ok(())
    }

    fn flush(&self) {
        oxgate_server::logging::flush();
    }
}
