//! --reload: a worker thread that watches the files of the imported modules
//! (and --reload-extra-file) and asks the master for a replacement when one
//! changes. The master starts the new worker before stopping this one, so a
//! syntax error leaves the old code serving instead of a crash loop.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use oxgate_supervisor::WorkerContext;
use pyo3::prelude::*;

const EVERY: Duration = Duration::from_secs(1);

pub fn start(extra: Vec<String>, ctx: Arc<WorkerContext>) -> std::io::Result<()> {
    let watch = move |seen: &mut HashMap<PathBuf, SystemTime>| {
        let mut files = Python::attach(module_files).unwrap_or_default();
        files.extend(extra.iter().map(PathBuf::from));
        let mut changed = None;
        for file in files {
            let Ok(modified) = std::fs::metadata(&file).and_then(|m| m.modified()) else {
                continue;
            };
            if let Some(before) = seen.insert(file.clone(), modified) {
                if before != modified {
                    changed = Some(file);
                }
            }
        }
        changed
    };
    // The first look happens now, before the worker says it is ready, so an
    // edit made right after is seen as one.
    let mut seen = HashMap::new();
    watch(&mut seen);
    std::thread::Builder::new()
        .name("oxgate-reloader".to_owned())
        .spawn(move || loop {
            std::thread::sleep(EVERY);
            if let Some(file) = watch(&mut seen) {
                log::info!("Worker reloading: {} modified", file.display());
                ctx.code_changed();
            }
        })?;
    Ok(())
}

/// The source files of every imported module that has one.
fn module_files(py: Python<'_>) -> PyResult<Vec<PathBuf>> {
    let modules = py.import("sys")?.getattr("modules")?.call_method0("copy")?;
    let mut files = Vec::new();
    for module in modules.call_method0("values")?.try_iter()? {
        let Ok(file) = module?.getattr("__file__") else {
            continue;
        };
        if let Ok(path) = file.extract::<String>() {
            files.push(PathBuf::from(path));
        }
    }
    Ok(files)
}
