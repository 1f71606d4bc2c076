//! TLS for the TCP listeners: the PEM files read into a rustls server
//! config (by each worker as it starts, so a HUP picks up renewed
//! certificates), and one connection's handshake under --header-timeout.
//! Offers the ALPN protocols --http allows; knows nothing else of HTTP.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use oxgate_config::{ClientCerts, HttpVersions, TlsConfig};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpStream;
use tokio_rustls::rustls::crypto::{ring, CryptoProvider};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::handler::{ClientCert, ConnInfo};
use crate::stream::Stream;

/// The server side of TLS, ready for handshakes.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    client_certs: ClientCerts,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("client_certs", &self.client_certs)
            .finish_non_exhaustive()
    }
}

/// A TLS file that cannot be used: which one, and what is wrong with it.
#[derive(Debug)]
pub struct TlsError {
    pub flag: &'static str,
    pub path: PathBuf,
    pub problem: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.flag, self.path.display(), self.problem)
    }
}

impl std::error::Error for TlsError {}

fn fail(flag: &'static str, path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError {
        flag,
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// The whole file, or why it cannot be read.
fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| {
        let why = match e.kind() {
            io::ErrorKind::NotFound => "no such file".to_owned(),
            io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            _ => format!("cannot read it: {e}"),
        };
        fail(flag, path, why)
    })
}

/// Every certificate of a PEM file, in order; at least one.
fn certificates(flag: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(flag, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(flag, path, format!("not valid PEM: {}", pem_problem(&e))))?;
    if certs.is_empty() {
        return Err(fail(
            flag,
            path,
            "no certificate in it (expected a PEM 'BEGIN CERTIFICATE' block)",
        ));
    }
    Ok(certs)
}

fn private_key(flag: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(flag, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound if contains(&pem, b"ENCRYPTED PRIVATE KEY") => fail(
            flag,
            path,
            "the private key is encrypted (decrypt it: openssl pkey -in KEY -out PLAIN)",
        ),
        pem::Error::NoItemsFound => fail(
            flag,
            path,
            "no private key in it (expected a PEM 'BEGIN PRIVATE KEY', 'BEGIN RSA PRIVATE \
             KEY' or 'BEGIN EC PRIVATE KEY' block)",
        ),
        e => fail(flag, path, format!("not valid PEM: {}", pem_problem(&e))),
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn pem_problem(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => "a block has no END line".to_owned(),
        pem::Error::IllegalSectionStart { .. } => "a malformed BEGIN line".to_owned(),
        pem::Error::Base64Decode(_) => "bad base64 in a block".to_owned(),
        pem::Error::SectionTooLarge => "a block is too large".to_owned(),
        other => other.to_string(),
    }
}

impl Tls {
    /// Read and check the files of `cfg`.
    /// `http`: which protocols ALPN offers (RFC 7301; h2 first, the
    /// server's preference).
    pub fn load(cfg: &TlsConfig, http: HttpVersions) -> Result<Tls, TlsError> {
        // ring, not aws-lc-rs: no cmake or NASM to build. rustls deprecates
        // it only for lacking post-quantum key exchange (X25519MLKEM768).
        #[allow(deprecated)]
        let provider = Arc::new(ring::default_provider());
        let certs = certificates("--certfile", &cfg.certfile)?;
        let (key_flag, key_path) = match &cfg.keyfile {
            Some(path) => ("--keyfile", path.as_path()),
            None => ("--certfile", cfg.certfile.as_path()),
        };
        let key = private_key(key_flag, key_path)?;
        let versions: &[&rustls::SupportedProtocolVersion] = if cfg.tls13_only {
            &[&rustls::version::TLS13]
        } else {
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| fail("--certfile", &cfg.certfile, e.to_string()))?;
        let builder = match (&cfg.ca_certs, cfg.client_certs) {
            (Some(ca), ClientCerts::Optional | ClientCerts::Required) => {
                let verifier = client_verifier(ca, cfg.client_certs, provider)?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(certs, key).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => fail(
                key_flag,
                key_path,
                format!(
                    "the private key does not match the certificate in {}",
                    cfg.certfile.display()
                ),
            ),
            e => fail(key_flag, key_path, format!("unusable private key: {e}")),
        })?;
        config.alpn_protocols = match http {
            HttpVersions::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            HttpVersions::One => vec![b"http/1.1".to_vec()],
            HttpVersions::Two => vec![b"h2".to_vec()],
        };
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            client_certs: cfg.client_certs,
        })
    }

    /// Complete the handshake within `deadline`, then fill in what `info`
    /// learns from it. `None`: the handshake failed or ran out of time
    /// (logged at debug: port scanners and plain-HTTP clients are common).
    pub(crate) async fn accept(
        &self,
        sock: TcpStream,
        info: &mut ConnInfo,
        deadline: Duration,
        write_stall: Duration,
    ) -> Option<Stream> {
        let peer = info.peer_text.0.as_str();
        let tls = match tokio::time::timeout(deadline, self.acceptor.accept(sock)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                log::debug!("TLS handshake with {peer} failed: {e}");
                return None;
            }
            Err(_) => {
                log::debug!("TLS handshake with {peer} did not finish within --header-timeout");
                return None;
            }
        };
        info.https = true;
        if self.client_certs != ClientCerts::None {
            let leaf = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
            // The verifier has checked the chain: a certificate here is trusted.
            info.client_cert = match leaf {
                Some(der) => ClientCert::Verified {
                    subject: oxgate_proto::x509::subject_dn(der).unwrap_or_default(),
                    pem: oxgate_proto::x509::pem("CERTIFICATE", der),
                },
                None => ClientCert::Absent,
            };
        }
        Some(Stream::tls(tls, write_stall))
    }
}

fn client_verifier(
    ca: &Path,
    reqs: ClientCerts,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates("--ca-certs", ca)? {
        roots
            .add(cert)
            .map_err(|e| fail("--ca-certs", ca, format!("unusable CA certificate: {e}")))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match reqs {
        ClientCerts::Required => builder,
        _ => builder.allow_unauthenticated(),
    };
    builder
        .build()
        .map_err(|e| fail("--ca-certs", ca, format!("unusable: {e}")))
}
