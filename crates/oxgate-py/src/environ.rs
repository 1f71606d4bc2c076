//! Building the WSGI environ for one request (PEP 3333 "environ
//! Variables", CGI/1.1 RFC 3875 section 4.1): constants prepared once and
//! copied, interned keys, the mapping rules from oxgate-proto.

use std::borrow::Cow;

use oxgate_proto::environ::percent_decode;
use oxgate_proto::forwarded::Scheme;
use oxgate_proto::{BodyFraming, RequestHead, TrustList, Version};
use oxgate_server::{ClientCert, ConnInfo};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::environ_cache::{ConnStrings, HeaderKeys, Key, Template, MAX_SECTION};
use crate::errors::WsgiErrors;
use crate::file_wrapper::FileWrapper;
use crate::input::WsgiInput;

/// The keys every request sets. The shared dict holds them with a
/// placeholder value, so each request's copy already has room for them and
/// sets them in place, where adding them would grow the dict once per request.
const PER_REQUEST: [&str; 9] = [
    "REQUEST_METHOD",
    "PATH_INFO",
    "QUERY_STRING",
    "RAW_URI",
    "SERVER_PROTOCOL",
    "wsgi.input",
    "SERVER_NAME",
    "SERVER_PORT",
    "REMOTE_ADDR",
];

/// What every request's environ shares.
pub struct AppContext {
    /// The constant entries (and placeholders), copied for each request.
    pub base: Py<PyDict>,
    /// SCRIPT_NAME, from `--root-path` or the SCRIPT_NAME env var.
    pub script_name: String,
    keys: HeaderKeys,
}

impl AppContext {
    pub fn new(
        py: Python<'_>,
        script_name: String,
        threads: usize,
        workers: usize,
        request_id: bool,
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
        // None, never a valid value: a key left unset would show.
        for key in PER_REQUEST {
            base.set_item(PyString::intern(py, key), py.None())?;
        }
        if request_id {
            // --request-id sets it on every request (from the header, or in
            // respond.rs): a slot in the shared dict, as PER_REQUEST's have.
            base.set_item(intern!(py, "HTTP_X_REQUEST_ID"), py.None())?;
        }
        Ok(AppContext {
            base: base.unbind(),
            script_name,
            keys: HeaderKeys::default(),
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

/// The environ for one request; `kept`: what its connection's earlier
/// requests left to reuse.
pub fn build_environ<'py>(
    py: Python<'py>,
    ctx: &AppContext,
    head: &RequestHead,
    conn: &ConnInfo,
    input: Py<WsgiInput>,
    kept: &mut ConnStrings,
) -> PyResult<Bound<'py, PyDict>> {
    let (env, preset) = connection_base(py, ctx, head, conn, kept)?;
    if !preset.method {
        env.set_item(intern!(py, "REQUEST_METHOD"), method_str(py, head.method()))?;
    }
    if !preset.version {
        env.set_item(
            intern!(py, "SERVER_PROTOCOL"),
            protocol_str(py, head.version),
        )?;
    }
    let path: Cow<'_, [u8]> = if !head.path().contains('%') {
        Cow::Borrowed(head.path().as_bytes())
    } else {
        Cow::Owned(percent_decode(head.path()))
    };
    let script = ctx.script_name.as_bytes();
    // SCRIPT_NAME is the mount point: strip it so PATH_INFO is the rest.
    let mounted = !script.is_empty()
        && path.starts_with(script)
        && matches!(path.get(script.len()), None | Some(b'/'));
    let path_info = latin1(
        py,
        if mounted {
            &path[script.len()..]
        } else {
            &path
        },
    );
    // The usual "/page" target is PATH_INFO's text too: one str for both.
    let raw_uri = if !mounted && matches!(path, Cow::Borrowed(_)) && head.target() == head.path() {
        path_info.clone()
    } else {
        PyString::new(py, head.target())
    };
    env.set_item(intern!(py, "PATH_INFO"), path_info)?;
    env.set_item(intern!(py, "QUERY_STRING"), PyString::new(py, head.query()))?;
    env.set_item(intern!(py, "RAW_URI"), raw_uri)?;
    env.set_item(intern!(py, "wsgi.input"), input)?;
    let forwarding = match preset.headers {
        Some(forwarding) => forwarding,
        None => headers(py, ctx, head, &env, kept)?,
    };
    // Without a forwarding field there is nothing to resolve: most requests,
    // even from a trusted peer (127.0.0.1 is trusted by default), skip it.
    if let Some(trust) = conn.forwarded.as_ref().filter(|_| forwarding) {
        forwarded(py, head, conn, trust, &env)?;
    }
    // A uwsgi proxy's variables win, as under uWSGI: they describe the
    // request as the client made it (SERVER_PROTOCOL, REMOTE_ADDR...).
    for (key, value) in &conn.cgi {
        env.set_item(key, latin1(py, value))?;
    }
    Ok(env)
}

fn method_str<'py>(py: Python<'py>, method: &str) -> Bound<'py, PyString> {
    match method {
        "GET" => intern!(py, "GET").clone(),
        "POST" => intern!(py, "POST").clone(),
        "HEAD" => intern!(py, "HEAD").clone(),
        "PUT" => intern!(py, "PUT").clone(),
        "DELETE" => intern!(py, "DELETE").clone(),
        "PATCH" => intern!(py, "PATCH").clone(),
        "OPTIONS" => intern!(py, "OPTIONS").clone(),
        other => PyString::new(py, other),
    }
}

fn protocol_str(py: Python<'_>, version: Version) -> &Bound<'_, PyString> {
    match version {
        Version::Http11 => intern!(py, "HTTP/1.1"),
        Version::Http10 => intern!(py, "HTTP/1.0"),
        Version::Http2 => intern!(py, "HTTP/2"),
    }
}

/// What a trusted proxy says about the client (--forwarded-allow-ips)
/// replaces what the connection says: REMOTE_*, wsgi.url_scheme, HTTP_HOST
/// and SERVER_*. The proxy's own headers stay as they came.
fn forwarded<'py>(
    py: Python<'py>,
    head: &RequestHead,
    conn: &ConnInfo,
    trust: &TrustList,
    env: &Bound<'py, PyDict>,
) -> PyResult<()> {
    let f = oxgate_proto::forwarded::resolve(head.headers(), trust);
    if f.is_empty() {
        return Ok(());
    }
    if let Some((ip, port)) = f.client {
        env.set_item(intern!(py, "REMOTE_ADDR"), ip.to_string())?;
        match port {
            Some(port) => env.set_item(intern!(py, "REMOTE_PORT"), port.to_string())?,
            // The proxy's port next to the client's address would be a lie.
            None => {
                if env.contains(intern!(py, "REMOTE_PORT"))? {
                    env.del_item(intern!(py, "REMOTE_PORT"))?;
                }
            }
        }
    }
    let scheme = f.scheme.unwrap_or(conn_scheme(conn));
    if let Some(s) = f.scheme {
        env.set_item(intern!(py, "wsgi.url_scheme"), s.as_str())?;
    }
    if let Some(host) = &f.host {
        env.set_item(intern!(py, "HTTP_HOST"), host)?;
    }
    if f.host.is_none() && f.port.is_none() && f.scheme.is_none() {
        return Ok(());
    }
    // SERVER_NAME/PORT follow the host the client asked for: the proxy's
    // word for it, else the Host header, with the scheme's default port.
    let Some(host) = f.host.as_deref().or(head.host().filter(|h| !h.is_empty())) else {
        return Ok(());
    };
    let (name, port) = split_host(host);
    let port = match (f.port, port) {
        (Some(p), _) => p.to_string(),
        (None, Some(p)) => p.to_owned(),
        (None, None) => scheme.default_port().to_owned(),
    };
    env.set_item(intern!(py, "SERVER_NAME"), name)?;
    env.set_item(intern!(py, "SERVER_PORT"), port)?;
    Ok(())
}

/// Which of REQUEST_METHOD and SERVER_PROTOCOL a fresh environ already
/// holds with this request's values.
#[derive(Default)]
struct Preset {
    method: bool,
    version: bool,
    /// The HTTP_* entries are in too; whether a forwarding field is among them.
    headers: Option<bool>,
}

/// A fresh dict with the shared entries and this connection's SERVER_* and
/// REMOTE_* ones: a copy of the connection's template when it fits the
/// request's host, else made from the shared dict (and kept as the template
/// from the connection's second request on, with that request's
/// REQUEST_METHOD and SERVER_PROTOCOL).
fn connection_base<'py>(
    py: Python<'py>,
    ctx: &AppContext,
    head: &RequestHead,
    conn: &ConnInfo,
    kept: &mut ConnStrings,
) -> PyResult<(Bound<'py, PyDict>, Preset)> {
    let host = head.host().filter(|h| !h.is_empty());
    if let Some(mut t) = kept.template.take_if(|t| t.host.as_deref() == host) {
        let made = from_template(py, ctx, head, &mut t, kept);
        let preset = Preset {
            method: *t.method == *head.method(),
            version: t.version == head.version,
            headers: made.as_ref().ok().and_then(|(_, headers)| *headers),
        };
        kept.template = Some(t);
        return Ok((made?.0, preset));
    }
    let env = ctx.base.bind(py).copy()?;
    if conn.https {
        env.set_item(intern!(py, "wsgi.url_scheme"), "https")?;
        env.set_item(intern!(py, "HTTPS"), "on")?;
        client_cert(py, conn, &env)?;
    }
    let (name, port) = server(host, conn);
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
    if !kept.seen {
        kept.seen = true;
        return Ok((env, Preset::default()));
    }
    env.set_item(intern!(py, "REQUEST_METHOD"), method_str(py, head.method()))?;
    env.set_item(
        intern!(py, "SERVER_PROTOCOL"),
        protocol_str(py, head.version),
    )?;
    // The template is never the request's own dict: the app may change that.
    kept.template = Some(Template {
        host: host.map(str::to_owned),
        dict: env.clone().unbind(),
        method: head.method().into(),
        version: head.version,
        headers: None,
    });
    let preset = Preset {
        method: true,
        version: true,
        headers: None,
    };
    Ok((env.copy()?, preset))
}

/// A copy of template `t` for a request, with the request's header entries
/// in (and whether a forwarding field is among them) when the request before
/// sent the same field section.
fn from_template<'py>(
    py: Python<'py>,
    ctx: &AppContext,
    head: &RequestHead,
    t: &mut Template,
    kept: &mut ConnStrings,
) -> PyResult<(Bound<'py, PyDict>, Option<bool>)> {
    let section = head.header_section();
    let length_framed = matches!(head.framing, BodyFraming::Length(_));
    let repeated = t
        .headers
        .as_mut()
        .filter(|h| h.section.as_slice() == section && h.length_framed == length_framed);
    let Some(preset) = repeated else {
        t.headers = (section.len() <= MAX_SECTION).then(|| {
            let mut preset = t.headers.take().unwrap_or_default();
            preset.section.clear();
            preset.section.extend_from_slice(section);
            preset.length_framed = length_framed;
            preset.dict = None;
            preset
        });
        return Ok((t.dict.bind(py).copy()?, None));
    };
    if let Some(dict) = &preset.dict {
        return Ok((dict.bind(py).copy()?, Some(preset.forwarding)));
    }
    // The second request with this section: make its entries once.
    let dict = t.dict.bind(py).copy()?;
    preset.forwarding = headers(py, ctx, head, &dict, kept)?;
    preset.dict = Some(dict.clone().unbind());
    Ok((dict.copy()?, Some(preset.forwarding)))
}

/// mod_ssl's names for a client certificate, when --cert-reqs asked for
/// one: in the connection's template, so a request pays nothing for them.
fn client_cert(py: Python<'_>, conn: &ConnInfo, env: &Bound<'_, PyDict>) -> PyResult<()> {
    match &conn.client_cert {
        ClientCert::NotAsked => {}
        ClientCert::Absent => env.set_item(intern!(py, "SSL_CLIENT_VERIFY"), "NONE")?,
        ClientCert::Verified { subject, pem } => {
            env.set_item(intern!(py, "SSL_CLIENT_VERIFY"), "SUCCESS")?;
            env.set_item(intern!(py, "SSL_CLIENT_S_DN"), subject)?;
            env.set_item(intern!(py, "SSL_CLIENT_CERT"), pem)?;
        }
    }
    Ok(())
}

/// The HTTP_* (and CONTENT_*) entries, one per header name: RFC 9110
/// section 5.3 lets repeated fields combine into one comma-separated list.
/// True when a forwarding field (Forwarded, X-Forwarded-*) was among them.
fn headers<'py>(
    py: Python<'py>,
    ctx: &AppContext,
    head: &RequestHead,
    env: &Bound<'py, PyDict>,
    kept: &mut ConnStrings,
) -> PyResult<bool> {
    let mut forwarding = false;
    for (i, h) in head.headers().enumerate() {
        let Some(Key {
            key,
            interned,
            forwarding: is_forwarding,
        }) = ctx.keys.get(py, h.name)
        else {
            continue;
        };
        forwarding |= is_forwarding;
        let is_length = h.name.eq_ignore_ascii_case("content-length");
        if is_length && !matches!(head.framing, BodyFraming::Length(_)) {
            continue;
        }
        // Names map to one key exactly when they are equal but for case.
        let repeated = head
            .headers()
            .take(i)
            .any(|e| e.name.eq_ignore_ascii_case(h.name));
        let is_http = !is_length && !h.name.eq_ignore_ascii_case("content-type");
        if repeated && is_http {
            if let Some(prev) = env.get_item(&key)? {
                let value = latin1(py, h.value);
                let joined = format!("{}, {}", prev.extract::<String>()?, value.to_cow()?);
                env.set_item(key, joined)?;
                continue;
            }
        }
        let value = if interned {
            kept.value(py, &key, h.value, || latin1(py, h.value))
        } else {
            latin1(py, h.value)
        };
        env.set_item(key, value)?;
    }
    Ok(forwarding)
}

/// The scheme the client used, as far as the connection knows (TLS here,
/// or a PROXY header's or a uwsgi packet's word for it).
fn conn_scheme(conn: &ConnInfo) -> Scheme {
    if conn.https {
        Scheme::Https
    } else {
        Scheme::Http
    }
}

/// SERVER_NAME and SERVER_PORT: from the request's host, else the listener.
fn server<'a>(host: Option<&'a str>, conn: &'a ConnInfo) -> (&'a str, &'a str) {
    match host {
        Some(host) => {
            let (name, port) = split_host(host);
            (name, port.unwrap_or(conn_scheme(conn).default_port()))
        }
        None => (conn.server_name.as_str(), conn.server_port.as_str()),
    }
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
