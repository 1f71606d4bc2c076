//! One HTTP/2 stream's exchange: its head checked by oxgate-proto, static
//! files answered here, anything else handed to the app side with its body
//! (h2_body.rs), and the app's messages sent back (h2_send.rs). The same
//! bookkeeping as an HTTP/1 request: access log, metrics, request id,
//! --timeout, overload.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use oxgate_proto::h2_head::{head_from_h2, H2Request};
use oxgate_proto::{BodyFraming, ProtoError, RequestHead};

use crate::body::Step;
use crate::ending::Ending;
use crate::h2_body::{prepare, Pump, Refusal};
use crate::h2_send::Reply;
use crate::handler::{ConnInfo, Request, Responder, ResponseRx};
use crate::observe::{now_us, SlowClient};
use crate::request_id::RequestId;
use crate::server::Shared;

pub(crate) async fn serve(
    req: http::Request<RecvStream>,
    respond: SendResponse<Bytes>,
    info: Arc<ConnInfo>,
    shared: Arc<Shared>,
) {
    let (parts, recv) = req.into_parts();
    let observer = shared.observer.as_deref();
    let fields: Vec<(&str, &[u8])> = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    let head = H2Request {
        method: parts.method.as_str(),
        authority: parts.uri.authority().map(|a| a.as_str()),
        path: parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        fields: &fields,
        end_stream: recv.is_end_stream(),
    };
    let head = match head_from_h2(head, &shared.settings.limits) {
        Ok(head) => Arc::new(head),
        Err(e) => {
            log::debug!("refusing an HTTP/2 request: {e}");
            if let Some(o) = observer {
                o.invalid(e.status());
            }
            let stall = shared.settings.write_timeout;
            let mut reply = Reply::new(respond, false, None, stall);
            return reply.fail(e.status(), e.reason(), &[]).await;
        }
    };
    let request_id = shared.ids.as_ref().map(|ids| ids.for_request(&head));
    let ending = Ending::start(&shared, &head, &info, request_id.as_ref());
    let since = ending.as_ref().and_then(Ending::since);
    let stall = shared.settings.write_timeout;
    let is_head = head.method_is("HEAD");
    let mut reply = Reply::new(respond, is_head, request_id.clone(), stall);
    let routed = shared
        .settings
        .statics
        .as_deref()
        .and_then(|files| Some((files, files.route(head.path())?)));
    match routed {
        Some((files, route)) => {
            let mut msgs = Vec::with_capacity(3);
            files.respond(route, &head, &mut |m| msgs.push(m));
            for msg in msgs {
                if reply.push(msg).await.is_err() {
                    break;
                }
            }
        }
        None => {
            let call = Call {
                head: &head,
                info: info.clone(),
                request_id: request_id.clone(),
                since,
            };
            call.run(recv, &mut reply, &shared).await;
        }
    }
    if let Some(ending) = ending {
        // A stalled body was counted where it was refused.
        ending.record_as(
            reply.status,
            reply.resp_head.as_ref(),
            reply.body_sent,
            false,
        );
    }
}

/// The request's way through the app side.
struct Call<'a> {
    head: &'a Arc<RequestHead>,
    info: Arc<ConnInfo>,
    request_id: Option<Arc<RequestId>>,
    since: Option<u64>,
}

impl Call<'_> {
    async fn run(self, recv: RecvStream, reply: &mut Reply, shared: &Shared) {
        let settings = &shared.settings;
        let observer = shared.observer.as_deref();
        let (body, pump) = match prepare(recv, self.head, settings).await {
            Ok(prepared) => prepared,
            Err(Refusal::Answer(e)) => {
                if let Some(o) = observer {
                    if e == ProtoError::RequestTimeout {
                        o.slow_client(SlowClient::Body);
                    }
                }
                return reply.fail(e.status(), e.reason(), &[]).await;
            }
            Err(Refusal::Gone) => return,
        };
        let (responder, rx) = Responder::channel(settings.response_buffer, shared.outbox.clone());
        let since = self.since;
        let req = Request {
            head: self.head.clone(),
            body,
            conn: self.info,
            responder,
            request_id: self.request_id,
            ready_at: since.map(|t| match self.head.framing {
                BodyFraming::None => t,
                _ => now_us(),
            }),
        };
        if shared.handler.call(req).is_err() {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            if let Some(o) = observer {
                o.refused();
            }
            let retry = [("Retry-After", "1")];
            return reply.fail(503, "Service Unavailable", &retry).await;
        }
        shared.queued.notify_one();
        shared.outbox.sent();
        let timed_out = respond(reply, rx, pump, shared).await;
        shared.outbox.answered();
        if timed_out {
            crate::exchange::warn_timed_out(self.head, settings);
        }
    }
}

/// Send the app's response as it comes, feeding the body to the app as it
/// asks. Returns whether --timeout ran out before the response started.
async fn respond(
    reply: &mut Reply,
    mut rx: ResponseRx,
    mut pump: Option<Pump>,
    shared: &Shared,
) -> bool {
    let wait = shared.settings.body_timeout;
    let deadline = shared
        .settings
        .request_timeout
        .map(|t| tokio::time::Instant::now() + t);
    // One timer for the stream's waits, not one per message.
    let mut timer = deadline.map(|at| Box::pin(tokio::time::sleep_until(at)));
    while !reply.complete {
        let by = deadline
            .zip(timer.as_mut())
            .filter(|_| !reply.head_sent)
            .map(|(at, t)| (at, t.as_mut()));
        let next = rx.recv_by(by);
        let mut pumping = pump.as_mut().filter(|p| p.active());
        let active = pumping.is_some();
        let msg = tokio::select! {
            biased;
            msg = next => msg,
            reason = reply.reset_by_client(), if !reply.ended => {
                log::debug!("HTTP/2 stream reset by the client: {reason}");
                // Dropping `rx` tells the app side: its next write fails.
                return false;
            }
            step = async {
                match pumping.as_mut() {
                    Some(p) => p.step(wait).await,
                    None => Step::Abandoned,
                }
            }, if active => {
                match step {
                    Step::Continue => reply.send_continue(),
                    Step::Refused(e) => {
                        if e == ProtoError::RequestTimeout {
                            if let Some(o) = shared.observer.as_deref() {
                                o.slow_client(SlowClient::Body);
                            }
                        }
                        reply.fail(e.status(), e.reason(), &[]).await;
                        return false;
                    }
                    _ => {}
                }
                continue;
            }
        };
        let Some(msg) = msg else {
            reply.fail(504, "Gateway Timeout", &[]).await;
            return true;
        };
        let Some(msg) = msg else {
            // The app side gave up without finishing the response.
            reply.fail(500, "Internal Server Error", &[]).await;
            return false;
        };
        if reply.push(msg).await.is_err() {
            return false;
        }
    }
    false
}
