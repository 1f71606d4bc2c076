//! Reading a gunicorn-style Python config file: run it, then take every
//! module-level variable whose name is a setting. Other names (helpers,
//! imports, settings oxgate lacks) are ignored, as gunicorn does.

use oxgate_config::Layer;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyList, PyString, PyTuple};

use crate::fail::Fail;
use crate::hooks::Hooks;
use crate::traceback::format_exception;

pub fn load(py: Python<'_>, path: &str, hooks: &mut Hooks) -> Result<Layer, Fail> {
    let source = std::fs::read_to_string(path).map_err(|e| {
        Fail::usage(format!(
            "cannot read config file '{path}': {e} (check the -c/--config path)"
        ))
    })?;
    let ns = PyDict::new(py);
    let run = (|| -> PyResult<()> {
        ns.set_item("__file__", path)?;
        ns.set_item("__name__", "__config__")?;
        let builtins = py.import("builtins")?;
        let code = builtins
            .getattr("compile")?
            .call1((source.as_str(), path, "exec"))?;
        builtins.getattr("exec")?.call1((code, &ns))?;
        Ok(())
    })();
    if let Err(e) = run {
        eprintln!("{}", format_exception(py, &e));
        return Err(Fail::usage(format!(
            "config file '{path}' failed to run: {}",
            e
        )));
    }
    let mut layer = Layer::for_config_file(path);
    for (key, value) in ns.iter() {
        let Ok(name) = key.extract::<String>() else {
            continue;
        };
        if hooks.offer(&name, &value) {
            continue;
        }
        if name.starts_with('_')
            || value.is_none()
            || value.is_callable()
            || value.hasattr("__file__").unwrap_or(false)
        {
            continue;
        }
        let Some(values) = to_strings(&value) else {
            if oxgate_config::setting(&name).is_some() {
                return Err(Fail::usage(format!(
                    "config file '{path}': '{name}' has a value of unsupported type {}",
                    value
                        .get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                )));
            }
            continue;
        };
        layer
            .set_from_file(&name, values)
            .map_err(|e| Fail::usage(format!("config file '{path}': {}", e.message())))?;
    }
    Ok(layer)
}

/// A config value as the strings the settings table parses.
fn to_strings(value: &Bound<'_, PyAny>) -> Option<Vec<String>> {
    if value.is_instance_of::<PyBool>() {
        let b: bool = value.extract().ok()?;
        return Some(vec![b.to_string()]);
    }
    if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        return value
            .try_iter()
            .ok()?
            .map(|v| v.ok().and_then(|v| scalar(&v)))
            .collect::<Option<Vec<_>>>();
    }
    scalar(value).map(|s| vec![s])
}

fn scalar(value: &Bound<'_, PyAny>) -> Option<String> {
    if value.is_instance_of::<PyString>() {
        return value.extract().ok();
    }
    if let Ok(i) = value.extract::<i64>() {
        return Some(i.to_string());
    }
    if let Ok(f) = value.extract::<f64>() {
        return Some(f.to_string());
    }
    None
}
