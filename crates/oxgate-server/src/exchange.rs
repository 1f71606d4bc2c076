//! The response half of one HTTP/1 request: waiting for the app side's
//! messages (or for an app thread that writes its own response), writing
//! them, and the server's own answer when the app side fails or times out.

use std::pin::Pin;
use std::time::Duration;

use bytes::BytesMut;
use oxgate_proto::{ProtoError, RequestHead};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use crate::body::{Pump, Step};
use crate::encode::Encoder;
use crate::handler::ResponseRx;
use crate::server::{Settings, Shared};
use crate::sink::{Expired, HandedCall};
use crate::stream::Stream;

/// Unread body bytes we are willing to discard to keep a connection alive.
const DRAIN_LIMIT: u64 = 1024 * 1024;

/// The response half of one request.
pub(crate) struct Exchange {
    pub(crate) enc: Box<Encoder>,
    /// The app did not start its response within --timeout.
    pub(crate) timed_out: bool,
    /// A streamed body stalled past --body-timeout.
    pub(crate) slow_body: bool,
}

impl Exchange {
    pub(crate) fn new(enc: Box<Encoder>) -> Self {
        Exchange {
            enc,
            timed_out: false,
            slow_body: false,
        }
    }

    /// Answer `status` ourselves if nothing of the response went out yet,
    /// then give up the connection.
    pub(crate) async fn fail(&mut self, stream: &mut Stream, status: u16, reason: &str) -> bool {
        // Mid-response there is nothing to replace: what is encoded goes out,
        // then the connection is cut.
        self.enc.replace(status, reason);
        let _ = self.enc.write(stream).await;
        false
    }

    /// After an inline call: write what it left queued; `failed`: a write
    /// during the call already failed.
    pub(crate) async fn finish_inline(
        &mut self,
        failed: bool,
        stream: &mut Stream,
        shared: &Shared,
    ) -> bool {
        // Let the other connections with a request ready run theirs first,
        // so their responses leave together: a client woken once for a
        // burst costs the machine less than one woken per response. Alone,
        // there is nobody to wait for, and a yield costs a poll of the
        // driver (an epoll_wait) per request; after long calls, the others'
        // calls would hold this response for as long as they run.
        if shared.others_open() && shared.handler.batch_inline() {
            tokio::task::yield_now().await;
        }
        if failed {
            // The client is gone; log what the app answered.
            return false;
        }
        if !self.enc.ended {
            // The app side gave up without finishing the response.
            return self.fail(stream, 500, "Internal Server Error").await;
        }
        self.enc.write(stream).await.is_ok()
    }

    /// Drive the response to its end. Returns false when the connection
    /// is already unusable (write error, cut response).
    pub(crate) async fn run(
        &mut self,
        stream: &mut Stream,
        buf: &mut BytesMut,
        mut rx: ResponseRx,
        mut pump: Option<Pump>,
        shared: &Shared,
        mut timer: Pin<&mut Sleep>,
    ) -> bool {
        let wait = shared.settings.body_timeout;
        // --timeout: past it with nothing sent, the client gets a 504 and
        // the app thread is left to the master (stack dump, recycling).
        let deadline = shared
            .settings
            .request_timeout
            .map(|t| tokio::time::Instant::now() + t);
        while !self.enc.ended {
            let by = deadline
                .filter(|_| !self.enc.head_written)
                .map(|at| (at, timer.as_mut()));
            let next = rx.recv_by(by);
            let msg = match pump.as_mut().filter(|p| p.active()) {
                Some(p) => {
                    tokio::select! {
                        biased;
                        m = next => m,
                        step = p.step(stream, buf, wait) => {
                            match step {
                                Step::Continue => {
                                    if !self.enc.head_written
                                        && send_continue(stream).await.is_err()
                                    {
                                        return false;
                                    }
                                }
                                Step::Refused(e) => {
                                    self.slow_body |= e == ProtoError::RequestTimeout;
                                    if !self.enc.head_written {
                                        log::debug!("refusing request body: {e}");
                                        return self.fail(stream, e.status(), e.reason()).await;
                                    }
                                    return false;
                                }
                                Step::Progress | Step::Abandoned => {}
                            }
                            continue;
                        }
                    }
                }
                None => next.await,
            };
            let Some(msg) = msg else {
                self.timed_out = true;
                return self.fail(stream, 504, "Gateway Timeout").await;
            };
            let Some(msg) = msg else {
                // The app side gave up without finishing the response.
                return self.fail(stream, 500, "Internal Server Error").await;
            };
            if pump.as_ref().is_some_and(Pump::awaiting_continue) {
                // Answered without asking for the body: whether the client
                // sends it anyway is unknown (RFC 9110 10.1.1), so the
                // connection cannot carry another request.
                self.enc.keep_alive = false;
            }
            self.enc.push(msg);
            // Coalesce what is already queued into one write.
            if (self.enc.ended || rx.is_empty()) && self.enc.write(stream).await.is_err() {
                return false;
            }
        }
        if let Some(p) = pump.as_mut() {
            if !p.drain(stream, buf, DRAIN_LIMIT, wait).await {
                self.enc.keep_alive = false;
            }
        }
        true
    }
}

/// A 504 for --timeout: the app thread is left to the master (stack dump,
/// recycling), and the log says which request it was.
pub(crate) fn warn_timed_out(head: &RequestHead, settings: &Settings) {
    log::warn!(
        "{} {} got no response within {}s: answered 504 (the app thread is still busy)",
        head.method(),
        head.path(),
        settings.request_timeout.map_or(0, |t| t.as_secs())
    );
}

/// RFC 9110 section 10.1.1: the client may send the body now.
async fn send_continue(stream: &mut Stream) -> std::io::Result<()> {
    stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await?;
    stream.flush_tls().await
}

/// Wait for an app thread that writes its own response (`call`), then
/// write what it left. Lazily at first: the app thread wakes this task at
/// the end only if the connection has work left, so a kept-alive client's
/// next request, the idle timer or a stop is what brings it back, and
/// anything of those before the end makes the wait eager. `blank`: an
/// encoder for a call that lost its own. Returns the exchange, whether the
/// connection is still usable, and when the response ended unseen
/// (the idle timer counts from then).
pub(crate) async fn await_handed(
    call: &mut HandedCall,
    stream: &mut Stream,
    buf: &mut BytesMut,
    shared: &Shared,
    mut timer: Pin<&mut Sleep>,
    blank: impl FnOnce() -> Box<Encoder>,
) -> (Exchange, bool, Option<Instant>) {
    let settings = &shared.settings;
    let start = Instant::now();
    // --timeout, until the head is encoded (as for a queued response).
    let mut deadline = settings.request_timeout.map(|t| start + t);
    // Past a keep-alive period the response may have ended unseen and the
    // connection idled out: look.
    let lazy_until = start + settings.keepalive;
    let close = shared.pressure.notified();
    tokio::pin!(close);
    close.as_mut().enable();
    // A request pipelined behind this one, or a stop under way: the end is
    // wanted at once.
    let mut eager = !buf.is_empty() || shared.shutting_down();
    if eager {
        call.want();
    }
    loop {
        let wake_at = match deadline {
            Some(at) if eager => Some(at),
            Some(at) => Some(at.min(lazy_until)),
            None => (!eager).then_some(lazy_until),
        };
        if let Some(at) = wake_at {
            if timer.deadline() != at {
                timer.as_mut().reset(at);
            }
        }
        tokio::select! {
            biased;
            () = call.done() => break,
            // Bytes, the end or an error alike: the next read sees it.
            _ = stream.read_buf(buf), if !eager => {}
            () = close.as_mut(), if !eager => {}
            () = timer.as_mut(), if wake_at.is_some() => {
                let now = Instant::now();
                if deadline.is_some_and(|at| now >= at) {
                    match call.expire() {
                        Expired::Unanswered(enc) => {
                            let mut exchange = Exchange::new(enc);
                            exchange.timed_out = true;
                            exchange.fail(stream, 504, "Gateway Timeout").await;
                            return (exchange, false, None);
                        }
                        Expired::Answering => deadline = None,
                        Expired::Busy => deadline = Some(now + Duration::from_millis(10)),
                    }
                }
                if now < lazy_until {
                    continue;
                }
            }
        }
        if !eager {
            eager = true;
            call.want();
        }
    }
    let ended_at = call.ended_at();
    let (enc, failed) = call.finish();
    // None only if a call lost it, which none does: the connection closes.
    let lost = enc.is_none();
    let mut exchange = Exchange::new(enc.unwrap_or_else(blank));
    if failed || lost {
        return (exchange, false, ended_at);
    }
    if !exchange.enc.ended {
        // The app side gave up without finishing the response.
        let ok = exchange.fail(stream, 500, "Internal Server Error").await;
        return (exchange, ok, ended_at);
    }
    let ok = exchange.enc.write(stream).await.is_ok();
    (exchange, ok, ended_at)
}
