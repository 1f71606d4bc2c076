//! --django-static: the mount Django's own settings describe (STATIC_URL
//! served from STATIC_ROOT), read once the application is loaded.

use std::path::PathBuf;

use pyo3::prelude::*;

use crate::fail::Fail;

/// (URL prefix without trailing slash, directory), or None when STATIC_URL
/// points at another host. `root_path`: --root-path, which Django puts in
/// front of a relative STATIC_URL.
pub fn mount(py: Python<'_>, root_path: &str) -> Result<Option<(String, PathBuf)>, Fail> {
    let fail = |why: String| Fail::app(format!("--django-static: {why}"));
    let settings = py
        .import("django.conf")
        .and_then(|m| m.getattr("settings"))
        .map_err(|e| fail(format!("cannot import django.conf: {e}")))?;
    if !settings
        .getattr("configured")
        .and_then(|c| c.is_truthy())
        .unwrap_or(false)
    {
        return Err(fail(
            "the application did not configure Django (is DJANGO_SETTINGS_MODULE set?)".into(),
        ));
    }
    // The raw values: `settings.STATIC_URL` adds the script prefix of the
    // moment and caches it, which outside a request is not the one
    // requests will see.
    let raw = settings.getattr("_wrapped").unwrap_or(settings);
    let text = |name: &str| -> Result<Option<String>, Fail> {
        let v = raw
            .getattr(name)
            .map_err(|e| fail(format!("cannot read {name}: {e}")))?;
        if v.is_none() {
            return Ok(None);
        }
        let v = py
            .import("os")
            .and_then(|os| os.call_method1("fspath", (v,)))
            .and_then(|v| v.extract::<String>())
            .map_err(|e| fail(format!("{name} is not a string or path: {e}")))?;
        Ok(Some(v))
    };
    let Some(url) = text("STATIC_URL")?.filter(|u| !u.is_empty()) else {
        return Err(fail("STATIC_URL is not set in the Django settings".into()));
    };
    let Some(root) = text("STATIC_ROOT")? else {
        return Err(fail(
            "STATIC_ROOT is not set in the Django settings: set it, then run \
             `python manage.py collectstatic`"
                .into(),
        ));
    };
    let root = PathBuf::from(root);
    if !root.is_dir() {
        return Err(fail(format!(
            "STATIC_ROOT '{}' is not a directory: run `python manage.py collectstatic`",
            root.display()
        )));
    }
    if url.starts_with("http://") || url.starts_with("https://") || url.starts_with("//") {
        log::warn!("--django-static: STATIC_URL {url} is on another host; not serving it");
        return Ok(None);
    }
    let prefix = if url.starts_with('/') {
        url
    } else {
        format!("{}/{url}", root_path.trim_end_matches('/'))
    };
    Ok(Some((prefix.trim_end_matches('/').to_owned(), root)))
}
