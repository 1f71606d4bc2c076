//! oxgate's I/O side: listeners, connections, HTTP/1.1 framing on the wire
//! and HTTP/2 through the h2 crate,
//! logs. Generic over `Handler`; must not depend on pyo3.

pub mod access_log;
mod body;
mod conn;
mod date;
mod encode;
mod ending;
mod exchange;
mod h2;
mod h2_body;
mod h2_send;
mod h2_stream;
pub mod handler;
mod hold;
pub mod listener;
pub mod logging;
pub mod observe;
mod outbox;
mod preamble;
pub mod request_id;
mod response_head;
mod response_queue;
pub mod server;
mod sink;
mod static_files;
mod stream;
mod sync_io;
mod tls;
mod write;

pub use access_log::AccessLog;
pub use handler::{
    BodyBuffer, BodyError, BodyStream, ClientCert, ConnInfo, Disconnected, Handler, Request,
    RequestBody, Responder, ResponseHead, ResponseMsg, WholeBody,
};
pub use hold::hold_responses;
pub use observe::{Observer, SlowClient};
pub use outbox::flush_responses;
pub use request_id::{RequestId, RequestIds};
pub use server::{run, BindError, Listener, Settings, Shared, Stopped, Wire};
pub use static_files::StaticFiles;
pub use tls::{Tls, TlsError};
