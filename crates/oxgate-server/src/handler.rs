//! The contract between the I/O side and whatever runs the application: a
//! parsed request goes in, response messages come back over a channel. No
//! Python here; the Python side implements `Handler`.

use std::any::Any;
use std::fs::File;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use oxgate_proto::{RequestHead, TrustList};
use tokio::sync::{mpsc, oneshot};

use crate::encode::Encoder;
use crate::ending::Ending;
use crate::outbox::Outbox;
use crate::request_id::RequestId;
pub use crate::response_head::ResponseHead;
pub(crate) use crate::response_queue::ResponseRx;
use crate::response_queue::{self, cost, QueueTx, MSG_OVERHEAD};
use crate::sink::{self, HandedCall, HandedTx, InlineCall, Sink};

/// Where a connection came from and which listener took it.
#[derive(Debug)]
pub struct ConnInfo {
    /// The client's address; None on a unix socket.
    pub peer: Option<SocketAddr>,
    /// Host and port of the listener, used when the request has no Host.
    pub server_name: String,
    pub server_port: String,
    /// The peer's address and port as text, made once per connection.
    pub peer_text: (String, String),
    /// Set when the peer is a trusted proxy (--forwarded-allow-ips, or a
    /// unix socket): its Forwarded/X-Forwarded-* headers are believed, and
    /// this list tells which hops of a chain are proxies too.
    pub forwarded: Option<Arc<TrustList>>,
    /// The client reached the proxy over TLS (a PROXY v2 header, or a
    /// uwsgi packet's HTTPS variable, said so).
    pub https: bool,
    /// The client certificate of a TLS connection, when --cert-reqs asks.
    pub client_cert: ClientCert,
    /// CGI variables a uwsgi proxy sent, for the environ as they came.
    pub cgi: Vec<(String, Vec<u8>)>,
    /// What the app side keeps from one request of this connection to the
    /// next (the Python side: environ strings it can reuse).
    pub app_state: AppState,
}

/// What a TLS handshake learnt of the client's certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ClientCert {
    /// Plain HTTP, or TLS without --cert-reqs.
    #[default]
    NotAsked,
    /// Asked for (--cert-reqs 1) and not given.
    Absent,
    /// Given, and verified against --ca-certs.
    Verified {
        /// The subject as an RFC 4514 string ("CN=client,O=Example").
        subject: String,
        /// The certificate in PEM.
        pem: String,
    },
}

/// A slot the app side fills with a type of its own. A connection's
/// requests run one at a time, so its lock is never contended.
#[derive(Default)]
pub struct AppState(Mutex<Option<Box<dyn Any + Send>>>);

impl AppState {
    /// Take what the last request left, if it is a `T`.
    pub fn take<T: Any + Send>(&self) -> Option<Box<T>> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        slot.take().and_then(|b| b.downcast::<T>().ok())
    }

    /// Leave `state` for the next request.
    pub fn put<T: Any + Send>(&self, state: Box<T>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(state);
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppState")
    }
}

impl ConnInfo {
    /// `trust`: --forwarded-allow-ips; a unix peer (None) is always trusted.
    pub fn new(
        peer: Option<SocketAddr>,
        server_name: String,
        server_port: String,
        trust: &Arc<TrustList>,
    ) -> Self {
        let peer_text = peer.map_or_else(Default::default, |p| {
            (p.ip().to_string(), p.port().to_string())
        });
        let trusted = peer.is_none_or(|p| trust.contains(p.ip()));
        ConnInfo {
            peer,
            server_name,
            server_port,
            peer_text,
            forwarded: trusted.then(|| trust.clone()),
            https: false,
            client_cert: ClientCert::NotAsked,
            cgi: Vec::new(),
            app_state: AppState::default(),
        }
    }

    /// This connection as a PROXY protocol header describes it: `source`
    /// (when it gave one) is the client, judged by `trust` in turn.
    pub fn relayed(&self, source: Option<SocketAddr>, https: bool, trust: &Arc<TrustList>) -> Self {
        let peer = source.or(self.peer);
        let mut info = ConnInfo::new(
            peer,
            self.server_name.clone(),
            self.server_port.clone(),
            trust,
        );
        info.https = https;
        info
    }

    /// REMOTE_ADDR and REMOTE_PORT; empty on a unix socket.
    pub fn peer_strings(&self) -> (&str, &str) {
        (&self.peer_text.0, &self.peer_text.1)
    }
}

/// A request handed to the application side.
pub struct Request {
    pub head: Arc<RequestHead>,
    pub body: RequestBody,
    pub conn: Arc<ConnInfo>,
    pub responder: Responder,
    /// Set when --request-id is on.
    pub request_id: Option<Arc<RequestId>>,
    /// When the request was ready for the app (head read, buffered body
    /// in), in `observe::now_us` microseconds: set only with an observer,
    /// which wants the queue wait.
    pub ready_at: Option<u64>,
}

/// The application side of the server. `call` must not block: it queues.
pub trait Handler: Send + Sync + 'static {
    /// Queue a request; `tend` wakes whoever runs it. Gives it back when
    /// the queue is full (the server then answers 503).
    fn call(&self, req: Request) -> Result<(), Box<Request>>;

    /// Whether `call_inline` may run requests on the I/O thread.
    fn inline(&self) -> bool {
        false
    }

    /// Run a request whose body is all in memory to its end on this (the
    /// I/O) thread, responding through its `Responder` without blocking
    /// except on the client. Gives it back when it cannot run now; the
    /// server then queues it with `call`.
    fn call_inline(&self, req: Request) -> Result<(), Box<Request>> {
        Err(Box::new(req))
    }

    /// Whether inline calls are short enough to run as a burst: each call
    /// waits until the other connections with a request ready have read
    /// theirs, and its response waits for their calls, to go out with
    /// theirs. While calls are short, the calls run with warm caches and
    /// the client is woken once for the burst; once they take longer, the
    /// waits only hold the responses back.
    fn batch_inline(&self) -> bool {
        true
    }

    /// Look after the queue: wake the app side for what `call` queued, and
    /// call in another app thread when the busy ones stall; a handler that
    /// runs requests inline may run queued ones here. Called on the I/O
    /// thread whenever it is about to sleep (`call` need not wake anyone: a
    /// burst of requests wakes the app side once), and on a timer as long
    /// as it asks; None: at the next queued request.
    fn tend(&self) -> Option<Duration> {
        None
    }

    /// Memory of the app's side to read a body of `n` bytes into, read
    /// whole before the call (it fits the body buffer): the app then gets
    /// the body as it came off the socket, not a copy of it. Called on the
    /// I/O thread, so it must not block; None: into the connection's
    /// buffer, as usual.
    fn body_buffer(&self, _n: usize) -> Option<Box<dyn BodyBuffer>> {
        None
    }
}

/// A body's worth of memory lent by `Handler::body_buffer`; it comes back,
/// filled, as `RequestBody::Lent`.
pub trait BodyBuffer: Send {
    /// All of it, to fill: as long as the body. Not yet initialised.
    fn space(&mut self) -> &mut [MaybeUninit<u8>];
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// For the lender to take its own type back.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
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
    /// Read in full into what `Handler::body_buffer` lent.
    Lent(Box<dyn BodyBuffer>),
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

/// A whole response body handed over at once: shared, or borrowed from the
/// app's own object (an inline call encodes a small one straight from it).
pub enum WholeBody<'a> {
    Shared(Bytes),
    Borrowed(&'a [u8]),
}

impl WholeBody<'_> {
    pub fn len(&self) -> usize {
        match self {
            WholeBody::Shared(b) => b.len(),
            WholeBody::Borrowed(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn into_bytes(self) -> Bytes {
        match self {
            WholeBody::Shared(b) => b,
            WholeBody::Borrowed(b) => Bytes::copy_from_slice(b),
        }
    }
}

/// The sending half of a response, held by the app side.
#[derive(Clone)]
pub struct Responder {
    to: To,
}

#[derive(Clone)]
enum To {
    /// To the I/O thread, for an app thread.
    Queue {
        tx: QueueTx,
        /// Where messages wait for their batch, in order.
        outbox: Arc<Outbox>,
    },
    /// Straight into the encoder, for an app call on the I/O thread.
    Inline(Arc<Mutex<Sink>>),
    /// Into the encoder and onto the socket, for an app thread.
    Handed(HandedTx),
    Unset,
}

/// The client is gone: nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnected;

impl Responder {
    /// A response channel whose app side may run `buffer` bytes ahead.
    pub(crate) fn channel(buffer: usize, outbox: Arc<Outbox>) -> (Responder, ResponseRx) {
        let (tx, rx) = response_queue::queue(buffer);
        (
            Responder {
                to: To::Queue { tx, outbox },
            },
            rx,
        )
    }

    /// A placeholder, replaced before the request reaches the app side;
    /// sends to it fail.
    pub(crate) fn unset() -> Responder {
        Responder { to: To::Unset }
    }

    /// A responder for an inline call that encodes into `enc` and, past
    /// `limit` waiting bytes, writes on `fd` itself. `fd` must stay open
    /// until `InlineCall::finish`, after which sends fail. `last`: the
    /// connection's previous call, whose sink is used again if nobody
    /// else holds it (one allocation per request less).
    pub(crate) fn inline(
        last: Option<InlineCall>,
        enc: Box<Encoder>,
        fd: RawFd,
        stall: Duration,
        limit: usize,
    ) -> (Responder, InlineCall) {
        let fresh = Sink::new(enc, fd, stall, limit);
        let sink = match last {
            // No Weak is ever made of a sink: one strong count is ours alone.
            Some(InlineCall(sink)) if Arc::strong_count(&sink) == 1 => {
                *sink::lock(&sink) = fresh;
                sink
            }
            _ => Arc::new(Mutex::new(fresh)),
        };
        (
            Responder {
                to: To::Inline(sink.clone()),
            },
            InlineCall(sink),
        )
    }

    /// A responder for an app thread that encodes into `enc` and writes
    /// on `fd` itself, as an inline call's does, and at the end of the
    /// response too, then records `ending` if it wrote it all. `fd` must
    /// stay open while the `HandedCall` lives.
    pub(crate) fn handed(
        last: Option<HandedCall>,
        enc: Box<Encoder>,
        fd: RawFd,
        stall: Duration,
        limit: usize,
        ending: Option<Ending>,
    ) -> (Responder, HandedCall) {
        let sink = Sink::new(enc, fd, stall, limit);
        let (tx, call) = HandedCall::new(last, sink, ending);
        (Responder { to: To::Handed(tx) }, call)
    }

    /// Send a whole response (head and body); blocks as `send_blocking`.
    pub fn send_whole(&self, head: ResponseHead, body: WholeBody<'_>) -> Result<(), Disconnected> {
        match &self.to {
            To::Inline(sink) => sink::lock(sink).send(|enc| enc.push_whole(head, body)),
            To::Handed(tx) => tx.send(|enc| enc.push_whole(head, body)),
            _ => self.send_blocking(ResponseMsg::Whole(head, body.into_bytes())),
        }
    }

    /// Send one message, waiting while the connection's buffer is full.
    /// Blocks: call it without holding the GIL, never from the runtime
    /// (except on an inline responder, which waits only on the client).
    pub fn send_blocking(&self, msg: ResponseMsg) -> Result<(), Disconnected> {
        match &self.to {
            To::Queue { tx, outbox } => {
                let n = cost(&msg);
                // What waits in the outbox must reach the I/O side to free room.
                tx.reserve(n, || outbox.flush())?;
                outbox.send(tx, msg, n - MSG_OVERHEAD);
                Ok(())
            }
            To::Unset => Err(Disconnected),
            To::Inline(sink) => sink::lock(sink).send(|enc| enc.push(msg)),
            To::Handed(tx) => tx.send(|enc| enc.push(msg)),
        }
    }

    /// Whether sending about `n` more bytes now waits for nobody: an inline
    /// responder's would not write to a slow client, a queued one's fit
    /// the connection's buffer. The caller may keep the GIL around such a
    /// send.
    pub fn sends_at_once(&self, n: usize) -> bool {
        match &self.to {
            To::Queue { tx, .. } => tx.has_room(n),
            To::Inline(sink) => sink::lock(sink).sends_at_once(n),
            To::Handed(tx) => tx.sink().sends_at_once(n),
            To::Unset => true,
        }
    }

    /// A responder that writes on the socket itself (an inline call's, or
    /// an app thread's for a body in memory): its request may run on the
    /// I/O thread as an inline call, waiting on nobody but its client.
    pub fn writes_itself(&self) -> bool {
        matches!(self.to, To::Inline(_) | To::Handed(_))
    }

    /// The call had to wait for the client to read: on the I/O thread,
    /// that thread was held meanwhile.
    pub fn waited_for_client(&self) -> bool {
        match &self.to {
            To::Inline(sink) => sink::lock(sink).waited(),
            To::Handed(tx) => tx.sink().waited(),
            _ => false,
        }
    }

    /// The connection has been closed.
    pub fn is_closed(&self) -> bool {
        match &self.to {
            To::Queue { tx, .. } => tx.is_closed(),
            To::Inline(sink) => sink::lock(sink).is_closed(),
            To::Handed(tx) => tx.sink().is_closed(),
            To::Unset => true,
        }
    }
}
