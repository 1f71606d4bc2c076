//! Sans-I/O HTTP/1.1 for oxgate: bytes and heads in, decisions out. Must not
//! depend on tokio, pyo3 or sockets; every error carries its HTTP status.

pub mod byte_range;
pub mod chunked;
pub mod environ;
pub mod error;
pub mod forwarded;
mod framing;
pub mod h2_head;
pub mod head;
pub mod media_type;
pub mod proxy_protocol;
mod request_line;
pub mod response;
pub mod static_path;
mod syntax;
pub mod trust;
pub mod uwsgi;
pub mod validators;
pub mod x509;

pub use chunked::{ChunkedDecoder, DecodeStep};
pub use error::ProtoError;
pub use head::{
    connection_has_token, parse_head, BodyFraming, Header, Limits, Parsed, RequestHead, Version,
};
pub use response::{ResponseFraming, ResponseHeaderError};
pub use trust::TrustList;
