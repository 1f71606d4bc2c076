//! The contract between the I/O side and whatever runs the application: a
//! parsed request goes in, response messages come back over a channel. No
//! Python here; the Python side implements `Handler`.

use std::fs::File;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

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
    tx: mpsc::UnboundedSender<ResponseMsg>,
    budget: Arc<Budget>,
}

/// The client is gone: nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

/// Per-message bookkeeping counted against the buffer, so a response of
/// many tiny chunks is bounded too.
const MSG_OVERHEAD: usize = 64;

/// How many response bytes the app side has handed over that the I/O side
/// has not taken yet (--response-buffer). The app thread waits on it only
/// when a slow client lets the buffer fill.
struct Budget {
    limit: usize,
    state: Mutex<BudgetState>,
    freed: Condvar,
}

struct BudgetState {
    queued: usize,
    closed: bool,
}

impl Budget {
    fn lock(&self) -> MutexGuard<'_, BudgetState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait for room for `n` bytes; a message larger than the whole buffer
    /// goes once the buffer is empty.
    fn take(&self, n: usize) -> Result<(), Disconnected> {
        let mut st = self.lock();
        while !st.closed && st.queued > 0 && st.queued.saturating_add(n) > self.limit {
            st = self.freed.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        if st.closed {
            return Err(Disconnected);
        }
        st.queued = st.queued.saturating_add(n);
        Ok(())
    }

    fn give(&self, n: usize) {
        let mut st = self.lock();
        st.queued = st.queued.saturating_sub(n);
        self.freed.notify_all();
    }

    fn close(&self) {
        self.lock().closed = true;
        self.freed.notify_all();
    }
}

fn cost(msg: &ResponseMsg) -> usize {
    MSG_OVERHEAD
        + match msg {
            ResponseMsg::Whole(_, b) | ResponseMsg::Body(b) => b.len(),
            _ => 0,
        }
}

impl Responder {
    /// A response channel whose app side may run `buffer` bytes ahead.
    pub(crate) fn channel(buffer: usize) -> (Responder, ResponseRx) {
        let (tx, rx) = mpsc::unbounded_channel();
        let budget = Arc::new(Budget {
            limit: buffer.max(1),
            state: Mutex::new(BudgetState {
                queued: 0,
                closed: false,
            }),
            freed: Condvar::new(),
        });
        (
            Responder {
                tx,
                budget: budget.clone(),
            },
            ResponseRx { rx, budget },
        )
    }

    /// Send one message, waiting while the connection's buffer is full.
    /// Blocks: call it without holding the GIL, never from the runtime.
    pub fn send_blocking(&self, msg: ResponseMsg) -> Result<(), Disconnected> {
        let n = cost(&msg);
        self.budget.take(n)?;
        self.tx.send(msg).map_err(|_| {
            self.budget.give(n);
            Disconnected
        })
    }

    /// The connection has been closed.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The I/O side's half: taking a message frees its room in the buffer.
pub(crate) struct ResponseRx {
    rx: mpsc::UnboundedReceiver<ResponseMsg>,
    budget: Arc<Budget>,
}

impl ResponseRx {
    pub(crate) async fn recv(&mut self) -> Option<ResponseMsg> {
        let msg = self.rx.recv().await?;
        self.budget.give(cost(&msg));
        Some(msg)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl Drop for ResponseRx {
    fn drop(&mut self) {
        // Wake an app thread waiting for room: nobody will read its bytes.
        self.budget.close();
    }
}
