//! The accept loops, signals and graceful shutdown of one worker process
//! (the listeners themselves are listener.rs). Runs a current-thread tokio runtime; the app side
//! lives behind `Handler`.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use oxgate_config::HttpVersions;
use oxgate_proto::{Limits, TrustList};
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

use crate::access_log::AccessLog;
use crate::conn;
use crate::handler::{ConnInfo, Handler};
use crate::hold;
pub use crate::listener::{BindError, Listener, Wire};
use crate::outbox::Outbox;
use crate::preamble::proxy_header_before_tls;
use crate::request_id::RequestIds;
use crate::static_files::StaticFiles;
use crate::stream::Stream;
use crate::tls::Tls;

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
    /// --certfile: the TCP listeners' HTTP connections speak TLS.
    pub tls: Option<Arc<Tls>>,
    /// --http: which HTTP versions the listeners speak.
    pub http: HttpVersions,
    /// --http2-max-concurrent-streams.
    pub h2_max_streams: u32,
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
        // Requests queued in this turn of the loop go to the app side now,
        // and the log lines it wrote to the log.
        .on_thread_park(move || {
            parking.handler.tend();
            crate::access_log::flush_lines();
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
                // A response held while the clock is off starts it
                // (`hold::held`); while it runs, the handler looks every
                // millisecond or so (requests are queued).
                let wait = match (tender.handler.tend(), hold::tend()) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                match wait {
                    Some(wait) => tokio::time::sleep(wait).await,
                    None => tokio::select! {
                        () = tender.queued.notified() => {}
                        () = hold::held() => {}
                    },
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
                // A loop that never runs out of work still logs every 200 ms.
                if let Some(log) = &beat.access_log {
                    log.flush();
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
    // Not through `spawn_counted`: the extra layer of future costs the
    // plain path measurable instructions per request (bench/instructions.py).
    let guard = Counted::connection(shared.clone());
    tokio::spawn(async move {
        conn::serve(stream, info, guard.shared.clone(), wire).await;
        drop((guard, slot));
    });
}

/// As `spawn_conn`, for a TLS connection: the handshake runs on the
/// connection's own task, under --header-timeout, so a client that never
/// finishes it holds nothing but its slot, and not past that timeout.
fn spawn_tls(
    tls: Arc<Tls>,
    sock: tokio::net::TcpStream,
    mut info: ConnInfo,
    shared: &Arc<Shared>,
    slot: Option<OwnedSemaphorePermit>,
) {
    let guard = Counted::connection(shared.clone());
    tokio::spawn(async move {
        let mut sock = sock;
        let s = &guard.shared.settings;
        if let Some(allow) = &s.proxy_allow {
            let peer = info.peer_text.0.clone();
            match proxy_header_before_tls(&mut sock, info, allow, &guard.shared).await {
                Ok(Some(relayed)) => info = relayed,
                Ok(None) => return drop((guard, slot)),
                Err(e) => {
                    log::debug!("closing a TLS connection from {peer}: {e}");
                    return drop((guard, slot));
                }
            }
        }
        let (deadline, stall) = (s.head_timeout, s.write_timeout);
        if let Some(stream) = tls.accept(sock, &mut info, deadline, stall).await {
            let (info, shared) = (Arc::new(info), guard.shared.clone());
            // ALPN chose h2; with --http 2 a client that named no protocol
            // is taken to know it (RFC 9113 section 3.3).
            if stream.alpn_h2() || (s.http == HttpVersions::Two && stream.alpn_none()) {
                Box::pin(crate::h2::serve(stream, BytesMut::new(), info, shared)).await;
            } else {
                conn::serve(stream, info, shared, Wire::Http).await;
            }
        }
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
        let info = ConnInfo::new(Some(peer), name.clone(), port.clone(), trust);
        match (&shared.settings.tls, wire) {
            (Some(tls), Wire::Http) => spawn_tls(tls.clone(), sock, info, &shared, slot),
            _ => {
                let stream = Stream::tcp(sock, write_stall);
                spawn_conn(stream, Arc::new(info), wire, &shared, slot);
            }
        }
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
