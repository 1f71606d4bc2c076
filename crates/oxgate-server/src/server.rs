//! Binding listeners, the accept loops, signals and graceful shutdown of
//! one worker process. Runs a current-thread tokio runtime; the app side
//! lives behind `Handler`.

use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, ToSocketAddrs};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use oxgate_config::Bind;
use oxgate_proto::{Limits, TrustList};
use socket2::{Domain, Socket, Type};
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

use crate::access_log::AccessLog;
use crate::conn;
use crate::handler::{ConnInfo, Handler};
use crate::outbox::Outbox;
use crate::request_id::RequestIds;
use crate::static_files::StaticFiles;
use crate::stream::Stream;

/// Connection-level settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub limits: Limits,
    /// Idle time allowed between requests on a kept-alive connection.
    pub keepalive: Duration,
    /// Time allowed for a whole request head to arrive.
    pub head_timeout: Duration,
    /// Time allowed between two reads of a request body.
    pub body_timeout: Duration,
    /// Time a response write may make no progress.
    pub write_timeout: Duration,
    /// Connections held at once; past it, accepting pauses.
    pub max_connections: usize,
    /// Response bytes the app side may queue ahead of the client.
    pub response_buffer: usize,
    /// Requests that may wait for an app thread (for messages only; the
    /// handler enforces it).
    pub queue_size: usize,
    /// Bodies up to this size are read before the app is called.
    pub body_buffer: usize,
    /// Larger request bodies are refused with 413; None = no limit.
    pub max_body: Option<u64>,
    pub graceful_timeout: Duration,
    /// A response not started by then gets a 504 (--timeout); None = off.
    pub request_timeout: Option<Duration>,
    /// --forwarded-allow-ips.
    pub forwarded_allow: Arc<TrustList>,
    /// --proxy-allow-from when --proxy-protocol is on.
    pub proxy_allow: Option<Arc<TrustList>>,
    /// --static-map and --django-static mounts, if any.
    pub statics: Option<Arc<StaticFiles>>,
    /// --request-id: give each request an id.
    pub request_id: bool,
}

pub struct Shared {
    pub settings: Settings,
    pub handler: Arc<dyn Handler>,
    pub access_log: Option<AccessLog>,
    /// Makes request ids, when --request-id is on.
    pub(crate) ids: Option<RequestIds>,
    /// Called five times a second from the I/O loop: the worker's heartbeat.
    pub tick: Option<Box<dyn Fn() + Send + Sync>>,
    /// Request events for --metrics-bind; None = off.
    pub observer: Option<Arc<dyn crate::observe::Observer>>,
    shutdown: watch::Sender<bool>,
    active: AtomicUsize,
    /// Accept loops still running (see `Listening`).
    listening: AtomicUsize,
    idle: Notify,
    /// One permit per connection slot (--worker-connections).
    slots: Arc<Semaphore>,
    /// Wakes idle keep-alive connections to close: slots ran out, or the
    /// server is stopping.
    pub(crate) pressure: Notify,
    /// Set once stopping, before `pressure` wakes the idle connections.
    stopping: AtomicBool,
    /// Requests refused with 503 since the last report.
    pub(crate) refused: AtomicU64,
    /// A request was queued: the handler's `tend` is due.
    pub(crate) queued: Notify,
    /// Finished responses from the app side, delivered in batches.
    pub(crate) outbox: Arc<Outbox>,
}

impl Shared {
    pub fn new(
        settings: Settings,
        handler: Arc<dyn Handler>,
        access_log: Option<AccessLog>,
    ) -> Self {
        let slots = Arc::new(Semaphore::new(settings.max_connections.max(1)));
        Shared {
            ids: settings.request_id.then(RequestIds::new),
            slots,
            pressure: Notify::new(),
            stopping: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            queued: Notify::new(),
            outbox: Arc::default(),
            settings,
            handler,
            access_log,
            tick: None,
            observer: None,
            shutdown: watch::channel(false).0,
            active: AtomicUsize::new(0),
            listening: AtomicUsize::new(0),
            idle: Notify::new(),
        }
    }

    pub fn shutting_down(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Other connections than the caller's are open in this worker.
    pub(crate) fn others_open(&self) -> bool {
        self.active.load(Ordering::Relaxed) > 1
    }

    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    fn report_refused(&self) {
        let n = self.refused.swap(0, Ordering::Relaxed);
        if n > 0 {
            log::warn!(
                "request queue full (--request-queue {}): {n} request(s) refused with 503 \
                 in the last second",
                self.settings.queue_size
            );
        }
    }

    /// Wait for a free connection slot; `None` once stopping.
    /// Connections open, or accept loops still draining their queue.
    fn busy(&self) -> bool {
        self.active.load(Ordering::SeqCst) > 0 || self.listening.load(Ordering::SeqCst) > 0
    }

    async fn slot(&self, stop: &mut watch::Receiver<bool>) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Some(p);
        }
        log::debug!(
            "{} connections open (--worker-connections): closing idle ones",
            self.settings.max_connections
        );
        loop {
            // An idle keep-alive connection is the cheapest to give up: its
            // client reconnects (RFC 9112 section 9.3.1 lets us close it).
            // Asked again while full, for connections that went idle since.
            self.pressure.notify_waiters();
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s) => return None,
                p = self.slots.clone().acquire_owned() => return p.ok(),
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }
}

/// A bound, listening socket, made by the master before any fork. The
/// master removes a unix socket's file when it exits; workers never do.
pub enum Listener {
    Tcp(StdTcpListener),
    /// The path, and whether the master removes the file at exit.
    Unix(StdUnixListener, PathBuf, bool),
    /// A listener whose connections speak the uwsgi protocol.
    Uwsgi(Box<Listener>),
}

/// What a listener's connections speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Http,
    /// nginx's `uwsgi_pass`: one request per connection, as a uwsgi packet.
    Uwsgi,
}

/// Why a bind failed, with the address as the user wrote it.
#[derive(Debug)]
pub struct BindError {
    pub address: String,
    pub error: io::Error,
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hint = match self.error.kind() {
            io::ErrorKind::AddrInUse => " (is another server running? pick another --bind)",
            io::ErrorKind::PermissionDenied => {
                " (ports below 1024 need privileges; pick another --bind)"
            }
            io::ErrorKind::AddrNotAvailable => " (that address is not on this machine)",
            _ => "",
        };
        write!(f, "cannot listen on {}: {}{hint}", self.address, self.error)
    }
}

impl Listener {
    /// The socket file of a unix listener.
    pub fn unix_path(&self) -> Option<&PathBuf> {
        match self {
            Listener::Unix(_, path, true) => Some(path),
            Listener::Uwsgi(inner) => inner.unix_path(),
            _ => None,
        }
    }

    /// A socket handed over by descriptor (systemd, or the master we
    /// replace) keeps no record of its protocol: it speaks uwsgi when one of
    /// `binds` is a `uwsgi:` bind of the same address.
    pub fn tag(self, binds: &[Bind]) -> Listener {
        let uwsgi = binds.iter().any(|b| match b {
            Bind::Uwsgi(inner) => self.is_at(inner),
            _ => false,
        });
        if uwsgi {
            Listener::Uwsgi(Box::new(self))
        } else {
            self
        }
    }

    fn is_at(&self, bind: &Bind) -> bool {
        match (self, bind) {
            (Listener::Unix(_, path, _), Bind::Unix(want)) => path == want,
            (Listener::Tcp(l), Bind::Tcp { host, port }) => {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                match (l.local_addr(), (host, *port).to_socket_addrs()) {
                    (Ok(local), Ok(mut addrs)) => addrs.any(|a| a == local),
                    _ => false,
                }
            }
            _ => false,
        }
    }

    /// A socket handed over already bound and listening (systemd socket
    /// activation, or the master we replace); TCP or unix, as getsockname
    /// says. `owned`: whether our master removes a unix socket file at exit.
    pub fn from_fd(fd: std::os::fd::RawFd, owned: bool) -> Result<Listener, BindError> {
        use std::os::fd::FromRawFd;
        let fail = |error| BindError {
            address: format!("fd://{fd}"),
            error,
        };
        // SAFETY: systemd passed this descriptor to us alone (LISTEN_PID),
        // open, for our use; we take ownership exactly once.
        let socket = unsafe { Socket::from_raw_fd(fd) };
        socket.set_nonblocking(true).map_err(fail)?;
        let local = socket.local_addr().map_err(fail)?;
        if local.is_unix() {
            let path = local.as_pathname().map(PathBuf::from).unwrap_or_default();
            return Ok(Listener::Unix(socket.into(), path, owned));
        }
        Ok(Listener::Tcp(socket.into()))
    }

    pub fn bind(bind: &Bind, backlog: i32, reuse_port: bool) -> Result<Listener, BindError> {
        let address = describe(bind);
        let fail = |error| BindError {
            address: address.clone(),
            error,
        };
        match bind {
            Bind::Tcp { host, port } => {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let addr = (host, *port)
                    .to_socket_addrs()
                    .map_err(fail)?
                    .next()
                    .ok_or_else(|| fail(io::Error::new(io::ErrorKind::NotFound, "no address")))?;
                bind_tcp(addr, backlog, reuse_port)
                    .map(Listener::Tcp)
                    .map_err(fail)
            }
            Bind::Uwsgi(inner) => {
                Listener::bind(inner, backlog, reuse_port).map(|l| Listener::Uwsgi(Box::new(l)))
            }
            Bind::Unix(path) => {
                // A socket file left by a previous run would make bind fail.
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    use std::os::unix::fs::FileTypeExt;
                    if meta.file_type().is_socket() {
                        let _ = std::fs::remove_file(path);
                    }
                }
                let l = StdUnixListener::bind(path).map_err(fail)?;
                l.set_nonblocking(true).map_err(fail)?;
                Ok(Listener::Unix(l, path.clone(), true))
            }
        }
    }

    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l, _, _) => l.as_raw_fd(),
            Listener::Uwsgi(inner) => inner.raw_fd(),
        }
    }

    /// "http://127.0.0.1:8000" or "unix:/path", for the Listening line.
    pub fn url(&self) -> String {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("http://{a}"),
                Err(_) => "http://?".to_owned(),
            },
            Listener::Unix(_, path, _) => format!("unix:{}", path.display()),
            Listener::Uwsgi(inner) => match inner.url().strip_prefix("http://") {
                Some(addr) => format!("uwsgi://{addr}"),
                None => format!("uwsgi:{}", inner.url()),
            },
        }
    }
}

fn describe(bind: &Bind) -> String {
    match bind {
        Bind::Tcp { host, port } if host.contains(':') && !host.starts_with('[') => {
            format!("[{host}]:{port}")
        }
        Bind::Tcp { host, port } => format!("{host}:{port}"),
        Bind::Unix(path) => format!("unix:{}", path.display()),
        Bind::Uwsgi(inner) => format!("uwsgi:{}", describe(inner)),
    }
}

fn bind_tcp(addr: SocketAddr, backlog: i32, reuse_port: bool) -> io::Result<StdTcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // Restarts must not wait for TIME_WAIT sockets of the previous run.
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// How the worker stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM, and every in-flight request finished.
    Graceful,
    /// SIGTERM, but the graceful timeout passed with requests still running.
    Expired,
    /// SIGINT / SIGQUIT: stop now.
    Fast,
}

/// Serve on `listeners` until a signal says stop. `ready` runs once the
/// signal handlers are in place, so a signal sent the moment the caller
/// announces readiness is handled, never fatal.
pub fn run(
    listeners: Vec<Listener>,
    shared: Arc<Shared>,
    ready: impl FnOnce(),
) -> io::Result<Stopped> {
    let parking = shared.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // Requests queued in this turn of the loop go to the app side now.
        .on_thread_park(move || {
            parking.handler.tend();
        })
        .build()?;
    let stopped = rt.block_on(async move {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut quit = signal(SignalKind::quit())?;
        for l in listeners {
            let (l, wire) = match l {
                Listener::Uwsgi(inner) => (*inner, Wire::Uwsgi),
                l => (l, Wire::Http),
            };
            match l {
                Listener::Tcp(l) => {
                    let l = TcpListener::from_std(l)?;
                    tokio::spawn(accept_tcp(l, wire, shared.clone()));
                }
                Listener::Unix(l, _, _) => {
                    let l = UnixListener::from_std(l)?;
                    tokio::spawn(accept_unix(l, wire, shared.clone()));
                }
                Listener::Uwsgi(_) => {
                    return Err(io::Error::other("uwsgi: given twice on one listener"));
                }
            }
        }
        let mut usr1 = signal(SignalKind::user_defined1())?;
        let logs = shared.clone();
        tokio::spawn(async move {
            while usr1.recv().await.is_some() {
                let reopened = crate::logging::reopen()
                    .and_then(|()| logs.access_log.as_ref().map_or(Ok(()), AccessLog::reopen));
                match reopened {
                    Ok(()) => log::info!("Reopened log files"),
                    Err(e) => log::error!("cannot reopen log files: {e}"),
                }
            }
        });
        tokio::spawn(shared.outbox.clone().run());
        let tender = shared.clone();
        tokio::spawn(async move {
            loop {
                match tender.handler.tend() {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => tender.queued.notified().await,
                }
            }
        });
        let beat = shared.clone();
        tokio::spawn(async move {
            // Well under any --timeout a user can set (1 s at least).
            let mut every = tokio::time::interval(Duration::from_millis(200));
            for n in 0u64.. {
                every.tick().await;
                if let Some(tick) = &beat.tick {
                    tick();
                }
                if n % 5 == 0 {
                    beat.report_refused();
                }
            }
        });
        ready();
        let how = tokio::select! {
            _ = term.recv() => Stopped::Graceful,
            _ = int.recv() => Stopped::Fast,
            _ = quit.recv() => Stopped::Fast,
        };
        shared.stopping.store(true, Ordering::Release);
        let _ = shared.shutdown.send(true);
        shared.pressure.notify_waiters();
        if how == Stopped::Graceful {
            log::info!("Shutting down: waiting for in-flight requests");
            let drained = tokio::time::timeout(shared.settings.graceful_timeout, async {
                while shared.busy() {
                    let wait = shared.idle.notified();
                    if !shared.busy() {
                        break;
                    }
                    wait.await;
                }
            });
            let finished = tokio::select! {
                res = drained => res.is_ok(),
                _ = int.recv() => false,
                _ = quit.recv() => false,
            };
            if !finished {
                log::warn!(
                    "Stopping with requests still running (graceful timeout or a second signal)"
                );
                return io::Result::Ok(Stopped::Expired);
            }
        }
        io::Result::Ok(how)
    })?;
    // Connection tasks still running are dropped here, closing their sockets.
    rt.shutdown_timeout(Duration::from_millis(100));
    Ok(stopped)
}

/// One count of `active` (a connection) or of `listening` (an accept
/// loop until it has served its socket's queue), held for a whole life: a
/// graceful stop waits until both are zero.
struct Counted {
    shared: Arc<Shared>,
    which: fn(&Shared) -> &AtomicUsize,
}

impl Counted {
    fn new(shared: Arc<Shared>, which: fn(&Shared) -> &AtomicUsize) -> Self {
        which(&shared).fetch_add(1, Ordering::SeqCst);
        Counted { shared, which }
    }

    fn connection(shared: Arc<Shared>) -> Self {
        Counted::new(shared, |s| &s.active)
    }

    fn accept_loop(shared: Arc<Shared>) -> Self {
        Counted::new(shared, |s| &s.listening)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if (self.which)(&self.shared).fetch_sub(1, Ordering::SeqCst) == 1 {
            self.shared.idle.notify_waiters();
        }
    }
}

/// Serve one accepted connection on a task of its own; `slot`: its
/// --worker-connections permit (none for the queue served while stopping).
fn spawn_conn(
    stream: Stream,
    info: Arc<ConnInfo>,
    wire: Wire,
    shared: &Arc<Shared>,
    slot: Option<OwnedSemaphorePermit>,
) {
    let guard = Counted::connection(shared.clone());
    tokio::spawn(async move {
        conn::serve(stream, info, guard.shared.clone(), wire).await;
        drop((guard, slot));
    });
}

async fn accept_tcp(listener: TcpListener, wire: Wire, shared: Arc<Shared>) {
    let local = listener.local_addr().ok();
    let (name, port) = match local {
        Some(a) => (a.ip().to_string(), a.port().to_string()),
        None => (String::new(), String::new()),
    };
    let mut stop = shared.shutdown_signal();
    let write_stall = shared.settings.write_timeout;
    let _listening = Counted::accept_loop(shared.clone());
    let serve = |sock: tokio::net::TcpStream, peer, slot| {
        let _ = sock.set_nodelay(true);
        let trust = &shared.settings.forwarded_allow;
        let info = Arc::new(ConnInfo::new(Some(peer), name.clone(), port.clone(), trust));
        spawn_conn(Stream::tcp(sock, write_stall), info, wire, &shared, slot);
    };
    loop {
        let Some(slot) = shared.slot(&mut stop).await else {
            break;
        };
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((sock, peer)) => serve(sock, peer, Some(slot)),
            Err(e) => accept_failed(e).await,
        }
    }
    // Stopping: the master has closed its copy of the socket, so nothing
    // new arrives once every worker has let go of it; what is queued
    // already would be reset at our exit, so it is served first.
    while let Some(Ok((sock, peer))) = accept_now(|cx| listener.poll_accept(cx)).await {
        serve(sock, peer, None);
    }
}

async fn accept_unix(listener: UnixListener, wire: Wire, shared: Arc<Shared>) {
    let info = Arc::new(ConnInfo::new(
        None,
        "localhost".to_owned(),
        String::new(),
        &shared.settings.forwarded_allow,
    ));
    let mut stop = shared.shutdown_signal();
    let write_stall = shared.settings.write_timeout;
    let _listening = Counted::accept_loop(shared.clone());
    loop {
        let Some(slot) = shared.slot(&mut stop).await else {
            break;
        };
        let accepted = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((sock, _)) => {
                let stream = Stream::unix(sock, write_stall);
                spawn_conn(stream, info.clone(), wire, &shared, Some(slot));
            }
            Err(e) => accept_failed(e).await,
        }
    }
    // As for TCP: serve what is queued before letting go of the socket.
    while let Some(Ok((sock, _))) = accept_now(|cx| listener.poll_accept(cx)).await {
        let stream = Stream::unix(sock, write_stall);
        spawn_conn(stream, info.clone(), wire, &shared, None);
    }
}

/// One accept that does not wait: `None` when nothing is queued.
async fn accept_now<T>(
    mut poll: impl FnMut(&mut std::task::Context<'_>) -> std::task::Poll<io::Result<T>>,
) -> Option<io::Result<T>> {
    std::future::poll_fn(|cx| match poll(cx) {
        std::task::Poll::Ready(r) => std::task::Poll::Ready(Some(r)),
        std::task::Poll::Pending => std::task::Poll::Ready(None),
    })
    .await
}

/// Out of descriptors or memory: say so and back off instead of spinning.
async fn accept_failed(e: io::Error) {
    log::error!("accept failed: {e}");
    tokio::time::sleep(Duration::from_millis(100)).await;
}
