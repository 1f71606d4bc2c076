//! Sans-I/O HTTP/1.1 for oxgate: bytes and heads in, decisions out. Must not
//! depend on tokio, pyo3 or sockets; every error carries its HTTP status.

pub mod chunked;
pub mod environ;
pub mod error;
pub mod forwarded;
mod framing;
pub mod head;
pub mod proxy_protocol;
mod request_line;
pub mod response;
mod syntax;
pub mod trust;
pub mod uwsgi;

pub use chunked::{ChunkedDecoder, DecodeStep};
pub use error::ProtoError;
pub use head::{
    connection_has_token, parse_head, BodyFraming, Header, Limits, Parsed, RequestHead, Version,
};
pub use response::{ResponseFraming, ResponseHeaderError};
pub use trust::TrustList;
