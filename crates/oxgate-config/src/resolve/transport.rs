//! The transport settings resolved: --http (which HTTP versions) and the
//! TLS group (--certfile, --keyfile, --ca-certs, --cert-reqs,
//! --tls-min-version), with the combinations that cannot work refused here.

use std::path::PathBuf;

use super::Merged;
use crate::error::ConfigError;
use crate::value::Problem;

/// --certfile and friends, checked to go together (the files themselves
/// are read by each worker as it starts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub certfile: PathBuf,
    /// None: the key is in `certfile` (gunicorn's `load_cert_chain`).
    pub keyfile: Option<PathBuf>,
    pub ca_certs: Option<PathBuf>,
    pub client_certs: ClientCerts,
    /// TLS 1.3 only (--tls-min-version 1.3); else 1.2 and 1.3.
    pub tls13_only: bool,
}

/// --http: the HTTP versions served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpVersions {
    /// HTTP/1.x, and HTTP/2 by ALPN or prior knowledge.
    Auto,
    /// HTTP/1.x only.
    One,
    /// HTTP/2 only.
    Two,
}

impl HttpVersions {
    pub fn as_str(self) -> &'static str {
        match self {
            HttpVersions::Auto => "auto",
            HttpVersions::One => "1",
            HttpVersions::Two => "2",
        }
    }
}

/// --cert-reqs: Python's ssl.CERT_NONE, CERT_OPTIONAL and CERT_REQUIRED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCerts {
    None,
    Optional,
    Required,
}

impl Merged<'_> {
    pub(super) fn http(&self) -> Result<HttpVersions, ConfigError> {
        let Some(found) = self.get("http") else {
            return Ok(HttpVersions::Auto);
        };
        match found.last().trim() {
            "auto" => Ok(HttpVersions::Auto),
            "1" | "1.1" => Ok(HttpVersions::One),
            "2" => Ok(HttpVersions::Two),
            raw => Err(found.err(Problem::Expected("auto, 1 or 2".to_string()), raw)),
        }
    }

    /// --certfile, --keyfile, --ca-certs, --cert-reqs, --tls-min-version:
    /// the combinations that cannot work are refused here, with the flag to fix.
    pub(super) fn tls(&self) -> Result<Option<TlsConfig>, ConfigError> {
        let tls13_only = match self.get("tls_min_version") {
            None => false,
            Some(found) => match found.last().trim() {
                "1.2" => false,
                "1.3" => true,
                raw => {
                    let why = Problem::Expected("1.2 or 1.3".to_string());
                    return Err(found.err(why, raw));
                }
            },
        };
        let client_certs = match self.int("cert_reqs", 0)? {
            0 => ClientCerts::None,
            1 => ClientCerts::Optional,
            _ => ClientCerts::Required,
        };
        let certfile = self.text("certfile")?.map(PathBuf::from);
        let keyfile = self.text("keyfile")?.map(PathBuf::from);
        let ca_certs = self.text("ca_certs")?.map(PathBuf::from);
        let Some(certfile) = certfile else {
            if keyfile.is_some() {
                return Err(ConfigError::new(
                    "--keyfile needs --certfile (the server certificate it belongs to)",
                ));
            }
            return Ok(None);
        };
        if client_certs != ClientCerts::None && ca_certs.is_none() {
            return Err(ConfigError::new(
                "--cert-reqs 1 or 2 needs --ca-certs (the CA that client certificates \
                 must chain to)",
            ));
        }
        Ok(Some(TlsConfig {
            certfile,
            keyfile,
            ca_certs,
            client_certs,
            tls13_only,
        }))
    }
}
