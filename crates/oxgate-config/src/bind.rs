//! Bind addresses as gunicorn writes them (HOST, HOST:PORT, :PORT, [IPv6]:PORT,
//! unix:PATH) parsed into `Bind`. Only syntax: resolving and binding belong to
//! the supervisor.

use std::fmt;
use std::net::Ipv6Addr;
use std::path::PathBuf;

use crate::error::{shown, ConfigError};

/// gunicorn's port when an address has none.
const DEFAULT_PORT: u16 = 8000;

/// One address to listen on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Bind {
    /// `host` is an IPv4/IPv6 literal (without brackets) or a host name,
    /// lowercased as gunicorn does.
    Tcp {
        host: String,
        port: u16,
    },
    Unix(PathBuf),
    /// `uwsgi:ADDRESS`: the uwsgi protocol (nginx's `uwsgi_pass`) instead
    /// of HTTP, on a TCP or unix address (never another `Uwsgi`).
    Uwsgi(Box<Bind>),
}

impl Bind {
    /// Parse one address; the error names the address and how to fix it.
    pub fn parse(raw: &str) -> Result<Bind, ConfigError> {
        Bind::parse_detail(raw).map_err(|why| {
            ConfigError::new(format!("invalid bind address '{}': {why}", shown(raw)))
        })
    }

    /// Parse, with an error that says only what is wrong (the caller adds
    /// which address and where it came from).
    pub(crate) fn parse_detail(raw: &str) -> Result<Bind, String> {
        let addr = raw.trim();
        if let Some(rest) = addr.strip_prefix("uwsgi:") {
            let inner = rest.strip_prefix("//").unwrap_or(rest);
            if inner.starts_with("uwsgi:") {
                return Err("'uwsgi:' is given twice, e.g. uwsgi:127.0.0.1:9000".into());
            }
            return Ok(Bind::Uwsgi(Box::new(Bind::parse_detail(inner)?)));
        }
        // gunicorn accepts both unix:PATH and unix://PATH.
        if let Some(rest) = addr.strip_prefix("unix:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(
                    "the socket path after 'unix:' is empty, e.g. unix:/run/oxgate.sock".into(),
                );
            }
            return Ok(Bind::Unix(PathBuf::from(path)));
        }
        if addr.starts_with("fd://") {
            return Err("fd:// addresses are not supported; use HOST:PORT or unix:PATH".into());
        }
        let addr = addr.strip_prefix("tcp://").unwrap_or(addr);
        let (host, port) = if let Some(rest) = addr.strip_prefix('[') {
            split_bracketed(rest)?
        } else {
            split_plain(addr)?
        };
        Ok(Bind::Tcp {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

/// `[IPv6]` or `[IPv6]:PORT`, with the opening bracket already removed.
fn split_bracketed(rest: &str) -> Result<(&str, u16), String> {
    let Some((host, after)) = rest.split_once(']') else {
        return Err("missing ']' after the IPv6 address, e.g. [::1]:8000".into());
    };
    if !is_ipv6(host) {
        return Err(format!("'{}' is not an IPv6 address", shown(host)));
    }
    let port = match after {
        "" => DEFAULT_PORT,
        _ => match after.strip_prefix(':') {
            Some(port) => parse_port(port)?,
            None => return Err("expected ':PORT' after ']', e.g. [::1]:8000".into()),
        },
    };
    Ok((host, port))
}

/// `HOST`, `HOST:PORT`, `:PORT` or empty.
fn split_plain(addr: &str) -> Result<(&str, u16), String> {
    if addr.matches(':').count() > 1 {
        return Err(format!(
            "put IPv6 addresses in brackets, e.g. {}",
            bracket_hint(addr)
        ));
    }
    let (host, port) = match addr.split_once(':') {
        Some((host, port)) => (host, parse_port(port)?),
        None => (addr, DEFAULT_PORT),
    };
    // gunicorn binds an empty host to every interface; say so explicitly.
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    if host
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || "/[]@".contains(c))
    {
        return Err(format!(
            "'{}' is not a host name or IP address",
            shown(host)
        ));
    }
    Ok((host, port))
}

fn parse_port(raw: &str) -> Result<u16, String> {
    if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(port) = raw.parse::<u16>() {
            return Ok(port);
        }
    }
    Err(format!("'{}' is not a port number (0-65535)", shown(raw)))
}

/// An IPv6 literal, optionally with a zone (`fe80::1%eth0`).
fn is_ipv6(host: &str) -> bool {
    let addr = host.split_once('%').map_or(host, |(addr, _zone)| addr);
    addr.parse::<Ipv6Addr>().is_ok()
}

/// The bracketed form of an unbracketed IPv6 address, for the error message:
/// `::1:80` most likely meant `[::1]:80`. A remainder ending in "::" (from
/// `::1`) means the last group was part of the address, not a port.
fn bracket_hint(addr: &str) -> String {
    if let Some((host, port)) = addr.rsplit_once(':') {
        if !host.ends_with("::") && is_ipv6(host) && parse_port(port).is_ok() {
            return format!("[{host}]:{port}");
        }
    }
    if is_ipv6(addr) {
        return format!("[{addr}]:{DEFAULT_PORT}");
    }
    format!("[::1]:{DEFAULT_PORT}")
}

impl fmt::Display for Bind {
    /// The form gunicorn prints and `parse` reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bind::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            Bind::Tcp { host, port } => write!(f, "{host}:{port}"),
            Bind::Unix(path) => write!(f, "unix:{}", path.display()),
            Bind::Uwsgi(inner) => write!(f, "uwsgi:{inner}"),
        }
    }
}
