//! Building the WSGI environ for one request (PEP 3333 "environ
//! Variables", CGI/1.1 RFC 3875 section 4.1): constants prepared once and
//! copied, interned keys, the mapping rules from oxgate-proto.

use std::sync::Arc;

use oxgate_proto::environ::{header_key, percent_decode};
use oxgate_proto::{BodyFraming, RequestHead};
use oxgate_server::ConnInfo;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::errors::WsgiErrors;
use crate::file_wrapper::FileWrapper;
use crate::input::WsgiInput;

/// What every request's environ shares.
pub struct AppContext {
    /// The constant entries, copied for each request.
    pub base: Py<PyDict>,
    /// SCRIPT_NAME, from `--root-path` or the SCRIPT_NAME env var.
    pub script_name: String,
}

impl AppContext {
    pub fn new(
        py: Python<'_>,
        script_name: String,
        threads: usize,
        workers: usize,
    ) -> PyResult<Self> {
        let base = PyDict::new(py);
        base.set_item("wsgi.version", (1, 0))?;
        base.set_item("wsgi.url_scheme", "http")?;
        base.set_item("wsgi.errors", Py::new(py, WsgiErrors)?)?;
        base.set_item("wsgi.multithread", threads > 1)?;
        base.set_item("wsgi.multiprocess", workers > 1)?;
        base.set_item("wsgi.run_once", false)?;
        base.set_item("wsgi.file_wrapper", py.get_type::<FileWrapper>())?;
        base.set_item("wsgi.input_terminated", true)?;
        base.set_item(
            "SERVER_SOFTWARE",
            concat!("oxgate/", env!("CARGO_PKG_VERSION")),
        )?;
        base.set_item("SCRIPT_NAME", latin1(py, script_name.as_bytes()))?;
        Ok(AppContext {
            base: base.unbind(),
            script_name,
        })
    }
}

/// Bytes as a str of the same code points (PEP 3333 "Unicode Issues":
/// native strings carry bytes as latin-1).
fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    match std::str::from_utf8(bytes) {
        Ok(s) if s.is_ascii() => PyString::new(py, s),
        _ => PyString::new(
            py,
            &bytes.iter().map(|&b| char::from(b)).collect::<String>(),
        ),
    }
}

/// Split "host:port" / "[v6]:port" / "host" into name and port.
fn split_host(host: &str) -> (&str, Option<&str>) {
    if let Some(rest) = host.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let port = rest[end + 1..].strip_prefix(':');
            return (&host[..end + 2], port);
        }
        return (host, None);
    }
    match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    }
}

pub fn build_environ<'py>(
    py: Python<'py>,
    ctx: &AppContext,
    head: &RequestHead,
    conn: &Arc<ConnInfo>,
    input: Py<WsgiInput>,
) -> PyResult<Bound<'py, PyDict>> {
    let env = ctx.base.bind(py).copy()?;
    let method = match head.method.as_str() {
        "GET" => intern!(py, "GET").clone(),
        "POST" => intern!(py, "POST").clone(),
        "HEAD" => intern!(py, "HEAD").clone(),
        other => PyString::new(py, other),
    };
    env.set_item(intern!(py, "REQUEST_METHOD"), method)?;
    let path = if head.path == "*" {
        b"*".to_vec()
    } else {
        percent_decode(&head.path)
    };
    let script = ctx.script_name.as_bytes();
    // SCRIPT_NAME is the mount point: strip it so PATH_INFO is the rest.
    let path_info = if !script.is_empty()
        && path.starts_with(script)
        && matches!(path.get(script.len()), None | Some(b'/'))
    {
        &path[script.len()..]
    } else {
        &path[..]
    };
    env.set_item(intern!(py, "PATH_INFO"), latin1(py, path_info))?;
    env.set_item(intern!(py, "QUERY_STRING"), PyString::new(py, &head.query))?;
    env.set_item(intern!(py, "RAW_URI"), PyString::new(py, &head.target))?;
    let protocol = match head.version {
        oxgate_proto::Version::Http11 => intern!(py, "HTTP/1.1"),
        oxgate_proto::Version::Http10 => intern!(py, "HTTP/1.0"),
    };
    env.set_item(intern!(py, "SERVER_PROTOCOL"), protocol)?;
    env.set_item(intern!(py, "wsgi.input"), input)?;
    for h in &head.headers {
        let Some(key) = header_key(&h.name) else {
            continue;
        };
        if key == "CONTENT_LENGTH" && !matches!(head.framing, BodyFraming::Length(_)) {
            continue;
        }
        let value = latin1(py, &h.value);
        match env.get_item(&key)? {
            // RFC 9110 5.3: repeated fields combine into one comma list.
            Some(prev) if key.starts_with("HTTP_") => {
                let joined = format!("{}, {}", prev.extract::<String>()?, value.to_cow()?);
                env.set_item(key, joined)?;
            }
            _ => env.set_item(key, value)?,
        }
    }
    let (name, port) = match head.host.as_deref().filter(|h| !h.is_empty()) {
        Some(host) => {
            let (name, port) = split_host(host);
            (name, port.unwrap_or("80"))
        }
        None => (conn.server_name.as_str(), conn.server_port.as_str()),
    };
    env.set_item(intern!(py, "SERVER_NAME"), name)?;
    env.set_item(intern!(py, "SERVER_PORT"), port)?;
    match conn.peer {
        Some(_) => {
            let (ip, port) = conn.peer_strings();
            env.set_item(intern!(py, "REMOTE_ADDR"), ip)?;
            env.set_item(intern!(py, "REMOTE_PORT"), port)?;
        }
        None => {
            env.set_item(intern!(py, "REMOTE_ADDR"), "")?;
        }
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::split_host;

    #[test]
    fn host_forms_split_into_name_and_port() {
        assert_eq!(
            split_host("example.com:8080"),
            ("example.com", Some("8080"))
        );
        assert_eq!(split_host("example.com"), ("example.com", None));
        assert_eq!(split_host("[::1]:9000"), ("[::1]", Some("9000")));
        assert_eq!(split_host("[::1]"), ("[::1]", None));
    }
}
