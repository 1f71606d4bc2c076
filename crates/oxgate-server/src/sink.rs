//! A response encoded by the thread that runs the app and written on the
//! socket by that thread: an inline call's on the I/O thread, or a handed
//! call's on an app thread (or, when it was held for the calls queued
//! behind it and they took long, by the I/O thread: see `hold`). The
//! connection keeps its socket open until it takes the encoder back, after
//! which sends fail. The I/O thread must never wait for a handed call's
//! sink lock: an app thread holds it while it waits for a slow client.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::task::{Poll, Waker};
use std::time::Duration;

use crate::encode::Encoder;
use crate::ending::Ending;
use crate::handler::Disconnected;
use crate::hold;
use crate::response_queue::must_wait;

/// A response being encoded, written by the calling thread itself only
/// when more than `limit` bytes are waiting.
pub(crate) struct Sink {
    /// Taken back by the connection when the call ends; a responder the
    /// app kept past its call finds it gone.
    enc: Option<Box<Encoder>>,
    fd: RawFd,
    stall: Duration,
    limit: usize,
    /// A write failed: the client is gone.
    failed: bool,
    /// The call had to wait for the client to read.
    waited: bool,
}

pub(crate) fn lock(sink: &Mutex<Sink>) -> MutexGuard<'_, Sink> {
    sink.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Sink {
    /// `fd` must stay open until the connection takes `enc` back.
    pub(crate) fn new(enc: Box<Encoder>, fd: RawFd, stall: Duration, limit: usize) -> Sink {
        Sink {
            enc: Some(enc),
            fd,
            stall,
            limit: limit.max(1),
            failed: false,
            waited: false,
        }
    }

    /// Encode with `push`; past the limit, write from this thread.
    pub(crate) fn send(&mut self, push: impl FnOnce(&mut Encoder)) -> Result<(), Disconnected> {
        let Sink {
            enc,
            fd,
            stall,
            limit,
            failed,
            waited,
        } = self;
        let Some(enc) = enc.as_mut().filter(|_| !*failed) else {
            return Err(Disconnected);
        };
        let before = enc.queued();
        push(enc);
        let after = enc.queued();
        if after <= *limit {
            return Ok(());
        }
        // What the socket takes now costs no wait. Past that, as the budget
        // of a queued response has it, one message is held as it came (it
        // is in memory already, and is written after the call), and only
        // data added to a full buffer waits for the client, which holds
        // this thread.
        let mut written = enc.write_ready(*fd, *limit / 2);
        if written.is_ok() && before > 0 && after > before && enc.queued() > *limit {
            *waited = true;
            written = enc.write_sync(*fd, *stall, *limit / 2);
        }
        if let Err(e) = written {
            log::debug!("writing a response from the app call failed: {e}");
            *failed = true;
            return Err(Disconnected);
        }
        Ok(())
    }

    /// Whether sending about `n` more bytes now waits for no client.
    pub(crate) fn sends_at_once(&self, n: usize) -> bool {
        let queued = self.enc.as_ref().map_or(0, |enc| enc.queued());
        !must_wait(queued, n, self.limit)
    }

    pub(crate) fn waited(&self) -> bool {
        self.waited
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.enc.is_none() || self.failed
    }

    /// The response ended: write what the socket takes now. Whether the
    /// connection has work left (bytes or a file the socket did not take,
    /// a close, a failed write).
    fn write_end(&mut self) -> bool {
        let Some(enc) = self.enc.as_mut().filter(|_| !self.failed) else {
            return true;
        };
        if let Err(e) = enc.write_now(self.fd) {
            log::debug!("writing a response from the app thread failed: {e}");
            self.failed = true;
            return true;
        }
        enc.queued() > 0 || enc.has_file() || !enc.keep_alive
    }
}

/// The connection's hold on an inline call's sink.
pub(crate) struct InlineCall(pub(crate) Arc<Mutex<Sink>>);

impl InlineCall {
    /// End the call: the encoder back, and whether a write already failed.
    pub(crate) fn finish(&self) -> (Option<Box<Encoder>>, bool) {
        let mut sink = lock(&self.0);
        (sink.enc.take(), sink.failed)
    }
}

/// A request an app thread answers by writing on the socket itself.
pub(crate) struct Handed {
    sink: Mutex<Sink>,
    end: Mutex<End>,
    /// Live app-side holders (`HandedTx`): at none, the app side is done
    /// with the response, ended or not.
    senders: AtomicUsize,
}

struct End {
    done: bool,
    /// The connection wants waking at the end, whatever is left to do.
    eager: bool,
    waker: Option<Waker>,
    /// When the response ended unseen (`coarse_us`), for the idle timer.
    done_at: u64,
    /// The log line and metrics due at the end: recorded by the app thread
    /// if it wrote the whole response, else left for the connection.
    ending: Option<Ending>,
}

impl Handed {
    fn end(&self) -> MutexGuard<'_, End> {
        self.end.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The app side is through: wake the connection if it asked to be, or
    /// has work left. Otherwise it learns of the end when the client next
    /// sends (or its idle timer fires): a cross-thread wake costs an
    /// eventfd write and a context switch per request.
    fn signal(&self, needs_io: bool) {
        let mut end = self.end();
        if end.done {
            return;
        }
        end.done = true;
        if !end.eager && !needs_io {
            end.done_at = coarse_us();
            return;
        }
        let waker = end.waker.take();
        drop(end);
        if let Some(w) = waker {
            w.wake();
        }
    }
}

/// A cheap clock (the kernel's last tick) for the idle timer, which needs
/// no better than a few milliseconds.
fn coarse_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1000
}

/// The app side's hold on a handed call.
pub(crate) struct HandedTx(Arc<Handed>);

impl Clone for HandedTx {
    fn clone(&self) -> Self {
        self.0.senders.fetch_add(1, Ordering::Relaxed);
        HandedTx(self.0.clone())
    }
}

impl Drop for HandedTx {
    fn drop(&mut self) {
        if self.0.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Gone without the response's end (or after it: then a no-op).
            self.0.signal(true);
        }
    }
}

impl HandedTx {
    pub(crate) fn sink(&self) -> MutexGuard<'_, Sink> {
        lock(&self.0.sink)
    }

    /// Encode with `push`; at the response's end, write it out and let the
    /// connection know.
    pub(crate) fn send(&self, push: impl FnOnce(&mut Encoder)) -> Result<(), Disconnected> {
        let mut sink = self.sink();
        sink.send(push)?;
        if !sink.enc.as_ref().is_some_and(|enc| enc.ended) {
            return Ok(());
        }
        if hold::holding() {
            // More requests wait for this thread: written with theirs.
            drop(sink);
            hold::hold(self.clone());
            return Ok(());
        }
        self.write_with(sink);
        Ok(())
    }

    /// The response ended: write it out and let the connection know.
    pub(crate) fn write_out(self) {
        let sink = self.sink();
        self.write_with(sink);
    }

    /// `write_out`, unless another thread holds the sink.
    pub(crate) fn try_write_out(self) -> Result<(), HandedTx> {
        let sink = match self.0.sink.try_lock() {
            Ok(sink) => sink,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return Err(self.clone()),
        };
        self.write_with(sink);
        Ok(())
    }

    fn write_with(&self, mut sink: MutexGuard<'_, Sink>) {
        let needs_io = sink.write_end();
        if !needs_io {
            // The client has it all: log it now, rather than wake the
            // connection only for that.
            let ending = self.0.end().ending.take();
            if let (Some(ending), Some(enc)) = (ending, sink.enc.as_deref()) {
                ending.record(enc, false);
            }
        }
        drop(sink);
        self.0.signal(needs_io);
    }
}

/// The connection's hold on a handed call. Dropped, it takes the encoder
/// back, so the app thread never writes on a socket closed (and its number
/// reused) after the connection let go of it.
pub(crate) struct HandedCall {
    shared: Arc<Handed>,
    taken: bool,
}

/// What became of a handed call the connection stopped waiting for.
pub(crate) enum Expired {
    /// Nothing was sent yet: the encoder, for the connection's own answer.
    Unanswered(Box<Encoder>),
    /// The app side is sending, or has sent, its response.
    Answering,
    /// The app side holds the sink this moment: look again shortly.
    Busy,
}

impl HandedCall {
    /// A handed call encoding into `sink`, written by the app thread, with
    /// `ending` due at its end. `last`: the connection's previous call,
    /// used again if nobody else holds it.
    pub(crate) fn new(
        last: Option<HandedCall>,
        sink: Sink,
        ending: Option<Ending>,
    ) -> (HandedTx, HandedCall) {
        let end = End {
            done: false,
            eager: false,
            waker: None,
            done_at: 0,
            ending,
        };
        let reused = last.and_then(|last| {
            let shared = last.shared.clone();
            // Dropped, it has taken the encoder back from any app thread.
            drop(last);
            // No Weak is ever made of one: a count of one is ours alone.
            (Arc::strong_count(&shared) == 1).then_some(shared)
        });
        let shared = match reused {
            Some(shared) => {
                *lock(&shared.sink) = sink;
                *shared.end() = end;
                shared.senders.store(1, Ordering::Relaxed);
                shared
            }
            None => Arc::new(Handed {
                sink: Mutex::new(sink),
                end: Mutex::new(end),
                senders: AtomicUsize::new(1),
            }),
        };
        (
            HandedTx(shared.clone()),
            HandedCall {
                shared,
                taken: false,
            },
        )
    }

    /// Ready once the app side is through with the response.
    pub(crate) fn done(&self) -> impl std::future::Future<Output = ()> + '_ {
        std::future::poll_fn(|cx| {
            let mut end = self.shared.end();
            if end.done {
                return Poll::Ready(());
            }
            match &mut end.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
    }

    /// From now on, wake the connection at the end in any case.
    pub(crate) fn want(&self) {
        self.shared.end().eager = true;
    }

    /// When the response ended unseen; None if it has not, or the
    /// connection was woken for it.
    pub(crate) fn ended_at(&self) -> Option<tokio::time::Instant> {
        let end = self.shared.end();
        let ago = (end.done && end.done_at > 0)
            .then(|| Duration::from_micros(coarse_us().saturating_sub(end.done_at)))?;
        tokio::time::Instant::now().checked_sub(ago)
    }

    /// What is due at the end, unless the app thread recorded it.
    pub(crate) fn take_ending(&self) -> Option<Ending> {
        self.shared.end().ending.take()
    }

    /// --timeout passed: take the encoder for a 504 if nothing of the
    /// response is encoded yet, without waiting for an app thread that is
    /// writing to its client (which holds the lock meanwhile).
    pub(crate) fn expire(&mut self) -> Expired {
        let mut sink = match self.shared.sink.try_lock() {
            Ok(sink) => sink,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return Expired::Busy,
        };
        match sink.enc.take_if(|enc| !enc.head_written && !enc.ended) {
            Some(enc) => {
                self.taken = true;
                Expired::Unanswered(enc)
            }
            None => Expired::Answering,
        }
    }

    /// The app side is through: the encoder back, and whether a write
    /// already failed.
    pub(crate) fn finish(&mut self) -> (Option<Box<Encoder>>, bool) {
        self.taken = true;
        let mut sink = lock(&self.shared.sink);
        (sink.enc.take(), sink.failed)
    }

    fn detach(&mut self) {
        if !self.taken {
            self.taken = true;
            lock(&self.shared.sink).enc = None;
        }
    }
}

impl Drop for HandedCall {
    fn drop(&mut self) {
        // Only when the connection's task is dropped mid-call (the runtime
        // shutting down): this may wait for an app thread's write.
        self.detach();
    }
}
