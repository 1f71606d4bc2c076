//! Finding the WSGI callable from "MODULE[:VARIABLE]" or
//! "MODULE:factory(args)", as gunicorn does, with one-line errors that
//! name the fix.

use pyo3::exceptions::PyModuleNotFoundError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use crate::fail::Fail;
use crate::traceback::format_exception;

pub fn load(py: Python<'_>, uri: &str) -> Result<Py<PyAny>, Fail> {
    let (module, target) = uri.split_once(':').unwrap_or((uri, "application"));
    let valid_module = !module.is_empty()
        && module
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_alphanumeric() || c == '_'));
    if !valid_module || target.trim().is_empty() {
        return Err(Fail::usage(format!(
            "invalid application '{uri}': write it as MODULE[:VARIABLE], e.g. mysite.wsgi:application"
        )));
    }
    let imported = match py.import(module) {
        Ok(m) => m,
        Err(e) => return Err(import_failure(py, module, &e)),
    };
    let (name, call) = parse_target(py, target).map_err(|e| {
        if e.is_instance_of::<pyo3::exceptions::PySyntaxError>(py)
            || e.is_instance_of::<pyo3::exceptions::PyValueError>(py)
        {
            Fail::app(format!(
                "cannot parse '{target}' in '{uri}': use a variable name or a call with literal arguments, e.g. create_app('prod')"
            ))
        } else {
            Fail::app(format!("cannot read '{uri}': {}", first_line(&e.to_string())))
        }
    })?;
    let obj = imported.getattr(name.as_str()).map_err(|_| {
        Fail::app(format!(
            "module '{module}' has no attribute '{name}': name the WSGI callable, e.g. {module}:app"
        ))
    })?;
    let app = match call {
        None => obj,
        Some((args, kwargs)) => obj.call(args.to_tuple(), Some(&kwargs)).map_err(|e| {
            eprintln!("{}", format_exception(py, &e));
            Fail::app(format!(
                "application factory '{uri}' raised {}",
                first_line(&e.to_string())
            ))
        })?,
    };
    if !app.is_callable() {
        let kind = app
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        return Err(Fail::app(format!(
            "'{uri}' is not callable (got an object of type {kind}): point to a WSGI callable(environ, start_response)"
        )));
    }
    Ok(app.unbind())
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

fn import_failure(py: Python<'_>, module: &str, e: &PyErr) -> Fail {
    if e.is_instance_of::<PyModuleNotFoundError>(py) {
        let missing: Option<String> = e
            .value(py)
            .getattr("name")
            .ok()
            .and_then(|n| n.extract().ok());
        if let Some(missing) = missing {
            // The app's module itself (or a parent package) is not there: the
            // user's spelling or path, not a broken app.
            if module == missing || module.starts_with(&format!("{missing}.")) {
                return Fail::app(format!(
                    "no module named '{missing}' (looked in the current directory and sys.path; use --chdir or --pythonpath to point at your project)"
                ));
            }
        }
    }
    eprintln!("{}", format_exception(py, e));
    Fail::app(format!(
        "failed to import '{module}': {}",
        first_line(&e.to_string())
    ))
}

type Call<'py> = (Bound<'py, PyList>, Bound<'py, PyDict>);

/// "app" → (app, None); "create_app(1, debug=True)" → (create_app, args).
/// Arguments must be literals (ast.literal_eval), never arbitrary code.
fn parse_target<'py>(py: Python<'py>, target: &str) -> PyResult<(String, Option<Call<'py>>)> {
    let ast = py.import("ast")?;
    let node = ast
        .call_method1("parse", (target.trim(), "<app>", "eval"))?
        .getattr("body")?;
    if node.is_instance(&ast.getattr("Name")?)? {
        return Ok((node.getattr("id")?.extract()?, None));
    }
    if !node.is_instance(&ast.getattr("Call")?)?
        || !node.getattr("func")?.is_instance(&ast.getattr("Name")?)?
    {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "not a name or a call",
        ));
    }
    let name: String = node.getattr("func")?.getattr("id")?.extract()?;
    let literal_eval = ast.getattr("literal_eval")?;
    let args = PyList::empty(py);
    for arg in node.getattr("args")?.try_iter()? {
        args.append(literal_eval.call1((arg?,))?)?;
    }
    let kwargs = PyDict::new(py);
    for kw in node.getattr("keywords")?.try_iter()? {
        let kw = kw?;
        let key = kw.getattr("arg")?;
        if key.is_none() {
            return Err(pyo3::exceptions::PyValueError::new_err(
                "**kwargs not allowed",
            ));
        }
        kwargs.set_item(key, literal_eval.call1((kw.getattr("value")?,))?)?;
    }
    Ok((name, Some((args, kwargs))))
}

/// Collect what loading left as garbage, then freeze the rest
/// (--no-gc-freeze turns it off): the loaded app's objects leave the
/// collector's generations for good, so full collections skip them and,
/// after a fork, stop writing to the pages that hold them.
pub fn freeze_gc(py: Python<'_>) {
    let frozen = py
        .import("gc")
        .and_then(|gc| gc.call_method0("collect").and(gc.call_method0("freeze")));
    if let Err(e) = frozen {
        log::warn!("gc.freeze() failed, the app's objects stay collectable: {e}");
    }
}
