//! One connection's life: read a head, read or stream its body, hand the
//! request to the app side, write what comes back, then keep-alive or close
//! (RFC 9112 section 9). Protocol decisions come from oxgate-proto.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use oxgate_config::HttpVersions;
use oxgate_proto::{parse_head, BodyFraming, Parsed, ProtoError, RequestHead};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{timeout, Sleep};

use crate::body::{prepare, Prepared};
use crate::encode::Encoder;
use crate::ending::Ending;
use crate::exchange::{await_handed, warn_timed_out, Exchange};
use crate::h2;
use crate::handler::{ConnInfo, Request, RequestBody, Responder};
use crate::observe::{now_us, SlowClient};
use crate::preamble::{proxy_header, uwsgi_packet};
use crate::request_id::RequestId;
use crate::server::{Shared, Wire};
use crate::stream::Stream;
use crate::write::simple_response;

/// The largest body whose call waits for the rest of the loop's turn to be
/// read (see `serve`): a turn of 61 such bodies takes a quarter of a core's
/// L2 cache (1 MiB on the bench machine). Bigger bodies would leave the
/// cache before their calls copy them; whether that costs more than the
/// wait saves was within the noise of the echo bench (64 KiB), so they
/// keep the order that touches a body while it is warm.
const BURST_BODY_MAX: usize = 4 * 1024;

/// The most a read for a head takes off the socket: a body behind it stays
/// there for the body's own read, which may go straight into memory the
/// app's side lent (`Handler::body_buffer`) rather than through this
/// buffer, which grows to the largest body read whole.
const HEAD_READ: usize = 8 * 1024;

pub async fn serve(mut stream: Stream, info: Arc<ConnInfo>, shared: Arc<Shared>, wire: Wire) {
    let mut buf = BytesMut::with_capacity(HEAD_READ);
    let before = match (wire, &shared.settings.proxy_allow) {
        (Wire::Uwsgi, _) => uwsgi_packet(&mut stream, &mut buf, info, &shared).await,
        // On a TLS port the header came before the handshake (server.rs).
        (Wire::Http, Some(allow)) if !stream.is_tls() => {
            proxy_header(&mut stream, &mut buf, info, allow, &shared).await
        }
        (Wire::Http, _) => Ok(Some(info)),
    };
    let info = match before {
        Ok(Some(info)) => info,
        Ok(None) => return,
        Err(e) => return refuse_invalid(stream, &e, &shared).await,
    };
    // Plain HTTP/2 (h2c) is known in advance or not at all (RFC 9113
    // section 3.3): with --http 2, every plain connection is HTTP/2.
    let h2c = wire == Wire::Http && !stream.is_tls();
    if h2c && shared.settings.http == HttpVersions::Two {
        return Box::pin(h2::serve(stream, buf, info, shared)).await;
    }
    // The last response's encoder (and its write buffer), made over for
    // the next one: one allocation per connection, not per response.
    let mut spare = None;
    // One timer for every wait on a head, moved on rather than made anew:
    // a later deadline only updates the armed entry, where a fresh timeout
    // per read costs an insert into and a removal from the timer wheel.
    let mut timer = Box::pin(tokio::time::sleep(shared.settings.head_timeout));
    // The last inline call's hold on its responder, to be used again.
    let mut last_call = None;
    // The same for the last request an app thread answered itself.
    let mut last_handed = None;
    // When the connection went idle, if before this task saw it.
    let mut idle_from = None;
    let mut first = true;
    loop {
        let idle = idle_from.take();
        let head =
            match read_head(&mut stream, &mut buf, &shared, first, idle, timer.as_mut()).await {
                Ok(Some(head)) => Arc::new(head),
                Ok(None) => return,
                // The HTTP/2 preface reads as a request line of version 2.0:
                // a refusal for HTTP/1, so the check costs HTTP/1 nothing.
                Err(ProtoError::VersionNotSupported)
                    if first
                        && h2c
                        && shared.settings.http == HttpVersions::Auto
                        && h2::is_preface(&buf) =>
                {
                    return Box::pin(h2::serve(stream, buf, info, shared)).await;
                }
                Err(e) => return refuse_invalid(stream, &e, &shared).await,
            };
        first = false;
        let observer = shared.observer.as_deref();
        let request_id = shared.ids.as_ref().map(|ids| ids.for_request(&head));
        // Only the access log (not for a path it skips) and the metrics
        // want anything at the end, the time included.
        let mut ending = Ending::start(&shared, &head, &info, request_id.as_ref());
        let since = ending.as_ref().and_then(Ending::since);
        let mut enc = Encoder::renew(spare.take(), &head, request_id.clone());
        let routed = shared
            .settings
            .statics
            .as_deref()
            .and_then(|files| Some((files, files.route(head.path())?)));
        let (exchange, ok) = match routed {
            Some((files, route)) => {
                // Answered here, never reaching the app.
                files.respond(route, &head, &mut |m| enc.push(m));
                if head.framing != BodyFraming::None {
                    // A body nobody reads: close rather than drain it.
                    enc.keep_alive = false;
                }
                let ok = enc.write(&mut stream).await.is_ok();
                (Exchange::new(enc), ok)
            }
            None => {
                let settings = &shared.settings;
                let prepared =
                    prepare(&mut stream, &mut buf, &head, settings, &*shared.handler).await;
                let (body, pump) = match prepared {
                    Ok(Prepared::Ready(body)) => (body, None),
                    Ok(Prepared::Streaming(body, pump)) => (body, Some(pump)),
                    Err(e) => {
                        if let Some(o) = observer {
                            if e == ProtoError::RequestTimeout {
                                o.slow_client(SlowClient::Body);
                            }
                            o.answered(&head, e.status(), since);
                        }
                        return refuse(stream, &e).await;
                    }
                };
                // Inline calls write from the app's thread straight to the
                // socket (`raw_fd`), which TLS cannot allow: those take the
                // channel path.
                let direct = pump.is_none() && !stream.is_tls();
                let inline = direct && shared.handler.inline();
                // Short calls of a burst run back to back, once the loop's
                // turn has read every ready request: a call that follows a
                // call finds Python's code and data in the caches, one that
                // follows socket reads and parsing finds them partly evicted.
                // Not for a big body: read long before its call, it would be
                // evicted in turn.
                let small = match &body {
                    RequestBody::Full(b) => b.len() <= BURST_BODY_MAX,
                    RequestBody::Lent(b) => b.len() <= BURST_BODY_MAX,
                    RequestBody::Stream(_) => false,
                };
                if inline && small && shared.others_open() && shared.handler.batch_inline() {
                    tokio::task::yield_now().await;
                }
                let (responder, call, enc) = if inline {
                    // The app runs here and now, on this thread: no hand-off. The
                    // encoder comes back when the call ends.
                    let (responder, call) = Responder::inline(
                        last_call.take(),
                        enc,
                        stream.raw_fd(),
                        settings.write_timeout,
                        settings.response_buffer,
                    );
                    (responder, Some(call), None)
                } else {
                    (Responder::unset(), None, Some(enc))
                };
                let req = Request {
                    head: head.clone(),
                    body,
                    conn: info.clone(),
                    responder,
                    request_id: request_id.clone(),
                    // Without a body, ready as soon as the head was read.
                    ready_at: since.map(|t| match head.framing {
                        BodyFraming::None => t,
                        _ => now_us(),
                    }),
                };
                let (enc, queued, failed) = match call {
                    Some(call) => {
                        let ran = shared.handler.call_inline(req);
                        // The encoder back: written by the call, or untouched
                        // if the call could not run and the request is queued.
                        let (enc, failed) = call.finish();
                        last_call = Some(call);
                        (enc, ran.err().map(|req| *req), failed)
                    }
                    None => (enc, Some(req), false),
                };
                // No encoder came back only if a call lost it, which none
                // does: a blank one, and the connection closes.
                let lost = enc.is_none();
                let blank = || Encoder::renew(None, &head, request_id.clone());
                let enc = enc.unwrap_or_else(blank);
                let busy =
                    |stream| refuse_busy(stream, &head, request_id.as_deref(), &shared, since);
                match queued {
                    None => {
                        let mut exchange = Exchange::new(enc);
                        let ok =
                            !lost && exchange.finish_inline(failed, &mut stream, &shared).await;
                        (exchange, ok)
                    }
                    // An app thread writes the response itself, as an inline
                    // call does, and its log line and metrics if it wrote it
                    // all: no hop back to this thread, which learns of the
                    // end only when it has something to do.
                    Some(mut req) if direct => {
                        let (responder, mut call) = Responder::handed(
                            last_handed.take(),
                            enc,
                            stream.raw_fd(),
                            settings.write_timeout,
                            settings.response_buffer,
                            ending.take(),
                        );
                        req.responder = responder;
                        if let Err(req) = shared.handler.call(req) {
                            drop(req);
                            drop(call.finish());
                            return busy(stream).await;
                        }
                        shared.queued.notify_one();
                        let (exchange, ok, ended_at) = await_handed(
                            &mut call,
                            &mut stream,
                            &mut buf,
                            &shared,
                            timer.as_mut(),
                            blank,
                        )
                        .await;
                        ending = call.take_ending();
                        last_handed = Some(call);
                        idle_from = ended_at;
                        (exchange, ok)
                    }
                    Some(mut req) => {
                        let mut exchange = Exchange::new(enc);
                        let (responder, rx) =
                            Responder::channel(settings.response_buffer, shared.outbox.clone());
                        req.responder = responder;
                        if shared.handler.call(req).is_err() {
                            return busy(stream).await;
                        }
                        shared.queued.notify_one();
                        shared.outbox.sent();
                        let ok = exchange
                            .run(&mut stream, &mut buf, rx, pump, &shared, timer.as_mut())
                            .await;
                        shared.outbox.answered();
                        (exchange, ok)
                    }
                }
            }
        };
        if exchange.timed_out {
            warn_timed_out(&head, &shared.settings);
        }
        let enc = &exchange.enc;
        if let Some(ending) = ending {
            ending.record(enc, exchange.slow_body);
        }
        if !ok {
            return;
        }
        if !enc.keep_alive || shared.shutting_down() {
            let _ = stream.flush().await;
            linger_close(stream).await;
            return;
        }
        spare = Some(exchange.enc);
    }
}

/// Read the next head, waiting on `timer`: --keep-alive between requests,
/// --header-timeout from the head's first byte (or from accept). `Ok(None)`:
/// the connection ended cleanly, idled out, or the server is stopping
/// between requests.
async fn read_head(
    stream: &mut Stream,
    buf: &mut BytesMut,
    shared: &Shared,
    first: bool,
    mut idle_from: Option<tokio::time::Instant>,
    mut timer: Pin<&mut Sleep>,
) -> Result<Option<RequestHead>, ProtoError> {
    let settings = &shared.settings;
    let mut head_deadline = None;
    loop {
        if !buf.is_empty() {
            if let Parsed::Complete(head, used) = parse_head(buf, &settings.limits)? {
                let _ = buf.split_to(used);
                return Ok(Some(head));
            }
        }
        let idle = buf.is_empty() && !first;
        let now = tokio::time::Instant::now();
        let deadline = if idle {
            idle_from.take().unwrap_or(now) + settings.keepalive
        } else {
            *head_deadline.get_or_insert(now + settings.head_timeout)
        };
        timer.as_mut().reset(deadline);
        let mut room = (&mut *buf).limit(HEAD_READ);
        let read = stream.read_buf(&mut room);
        let res = if idle {
            // Between requests a stopping server closes idle connections; a
            // connection accepted just before the stop still gets its answer.
            // Listening before looking at the flag: a stop between the two
            // is seen either way.
            let close = shared.pressure.notified();
            tokio::pin!(close);
            close.as_mut().enable();
            if shared.shutting_down() {
                return Ok(None);
            }
            tokio::select! {
                biased;
                res = read => Some(res),
                () = timer.as_mut() => None,
                () = close => return Ok(None),
            }
        } else {
            tokio::select! {
                biased;
                res = read => Some(res),
                () = timer.as_mut() => None,
            }
        };
        match res {
            Some(Ok(n)) if n > 0 => {}
            Some(_) => return Ok(None),
            // --header-timeout with part of a head: say why (RFC 9110
            // section 15.5.9); a connection that sent nothing just closes.
            None if !buf.is_empty() => return Err(ProtoError::RequestTimeout),
            None => return Ok(None),
        }
    }
}

/// The app side's queue is full: a fast 503, counted, and logged once a
/// second by the worker (a line per refusal would be a log storm exactly
/// when the worker is busiest).
async fn refuse_busy(
    mut stream: Stream,
    head: &RequestHead,
    request_id: Option<&RequestId>,
    shared: &Shared,
    since: Option<u64>,
) {
    shared.refused.fetch_add(1, Ordering::Relaxed);
    if let Some(o) = shared.observer.as_deref() {
        o.refused();
        o.answered(head, 503, since);
    }
    let mut out = Vec::new();
    let mut extra = vec![("Retry-After", "1")];
    extra.extend(request_id.map(|id| (crate::request_id::HEADER, id.as_str())));
    simple_response(&mut out, 503, "Service Unavailable", &extra, false);
    let _ = stream.write_all(&out).await;
    linger_close(stream).await;
}

/// Refuse what came before a whole head, and count it.
async fn refuse_invalid(stream: Stream, e: &ProtoError, shared: &Shared) {
    if let Some(o) = shared.observer.as_deref() {
        if *e == ProtoError::RequestTimeout {
            o.slow_client(SlowClient::Header);
        }
        o.invalid(e.status());
    }
    refuse(stream, e).await;
}

/// Answer a request we will not serve, then close.
async fn refuse(mut stream: Stream, e: &ProtoError) {
    log::debug!("refusing request: {e}");
    let mut out = Vec::new();
    simple_response(&mut out, e.status(), e.reason(), &[], false);
    let _ = stream.write_all(&out).await;
    linger_close(stream).await;
}

/// Close so the client can read our last response: half-close, then
/// discard what it still sends for a moment, since closing a socket with
/// unread input makes the kernel send RST, which can destroy the response
/// before the client reads it.
async fn linger_close(mut stream: Stream) {
    let _ = stream.shutdown().await;
    let mut sink = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut budget = 256 * 1024usize;
    while budget > 0 {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, stream.read(&mut sink)).await {
            Ok(Ok(n)) if n > 0 => budget = budget.saturating_sub(n),
            _ => break,
        }
    }
}
