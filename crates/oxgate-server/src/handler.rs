//! The contract between the I/O side and whatever runs the application: a
//! parsed request goes in, response messages come back over a channel. No
//! Python here; the Python side implements `Handler`.

use std::fs::File;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use oxgate_proto::RequestHead;
use tokio::sync::{mpsc, oneshot};

/// Where a connection came from and which listener took it.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address; None on a unix socket.
    pub peer: Option<SocketAddr>,
    /// Host and port of the listener, used when the request has no Host.
    pub server_name: String,
    pub server_port: String,
}

/// A request handed to the application side.
pub struct Request {
    pub head: Arc<RequestHead>,
    pub body: RequestBody,
    pub conn: Arc<ConnInfo>,
    pub responder: Responder,
}

/// The application side of the server. `call` must not block: it queues.
pub trait Handler: Send + Sync + 'static {
    /// Queue a request. Gives it back when the queue is full (the server
    /// then answers 503).
    fn call(&self, req: Request) -> Result<(), Box<Request>>;
}

/// Why the body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// The client closed the connection before the body ended.
    Disconnected,
    /// The body did not arrive in time.
    TimedOut,
    /// The body broke the framing rules (bad chunk syntax).
    Invalid(String),
}

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BodyError::Disconnected => f.write_str("client disconnected before the body ended"),
            BodyError::TimedOut => f.write_str("timed out reading the request body"),
            BodyError::Invalid(why) => write!(f, "invalid request body: {why}"),
        }
    }
}

/// The request body: already read in full, or streamed from the connection.
pub enum RequestBody {
    Full(Bytes),
    Stream(BodyStream),
}

/// A body still arriving. Reads block, so call them without holding the GIL.
pub struct BodyStream {
    pub(crate) rx: mpsc::Receiver<Result<Bytes, BodyError>>,
    /// Fired on the first read: the I/O side then sends `100 Continue`
    /// (RFC 9110 10.1.1: only once the app shows it wants the body).
    pub(crate) want: Option<oneshot::Sender<()>>,
    pub(crate) done: bool,
}

impl BodyStream {
    /// The next piece of the body; `Ok(None)` at its end.
    pub fn next_blocking(&mut self) -> Result<Option<Bytes>, BodyError> {
        if self.done {
            return Ok(None);
        }
        if let Some(want) = self.want.take() {
            let _ = want.send(());
        }
        match self.rx.blocking_recv() {
            Some(Ok(chunk)) if chunk.is_empty() => {
                self.done = true;
                Ok(None)
            }
            Some(Ok(chunk)) => Ok(Some(chunk)),
            Some(Err(e)) => {
                self.done = true;
                Err(e)
            }
            None => {
                self.done = true;
                Err(BodyError::Disconnected)
            }
        }
    }
}

/// Status line and headers as the app gave them, minus the framing headers
/// the server owns (Content-Length, Transfer-Encoding, Connection).
#[derive(Debug, Clone)]
pub struct ResponseHead {
    pub status: u16,
    /// The whole WSGI status, e.g. "200 OK".
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    /// The app's own Content-Length, honoured as the body's length.
    pub content_length: Option<u64>,
    /// The app asked for `Connection: close`.
    pub close: bool,
}

/// What the app side sends back, in order: `Whole`, or `Head` then any
/// number of `Body`/`File` then `End`. A channel closed before `End` means
/// the app failed: a 500 if nothing was sent yet, else the connection is cut.
pub enum ResponseMsg {
    /// Head and complete body in one message (a one-item iterable).
    Whole(ResponseHead, Bytes),
    Head(ResponseHead),
    Body(Bytes),
    /// `len` bytes of `file` from `offset`, sent with sendfile(2).
    File {
        file: File,
        offset: u64,
        len: u64,
    },
    End,
}

/// The sending half of a response, held by the app side.
#[derive(Clone)]
pub struct Responder {
    tx: mpsc::Sender<ResponseMsg>,
}

/// The client is gone: nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

impl Responder {
    pub(crate) fn channel(depth: usize) -> (Responder, mpsc::Receiver<ResponseMsg>) {
        let (tx, rx) = mpsc::channel(depth);
        (Responder { tx }, rx)
    }

    /// Send one message, waiting while the connection's buffer is full.
    /// Blocks: call it without holding the GIL, never from the runtime.
    pub fn send_blocking(&self, msg: ResponseMsg) -> Result<(), Disconnected> {
        self.tx.blocking_send(msg).map_err(|_| Disconnected)
    }

    /// The connection has been closed.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}
