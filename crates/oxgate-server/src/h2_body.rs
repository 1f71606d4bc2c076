//! An HTTP/2 request body on its way to the app: read whole before the app
//! is called when small, else pumped into wsgi.input as the app reads. The
//! client's flow-control window (RFC 9113 section 5.2) is given back only
//! for bytes handed on, so an app that stops reading stops the client, and
//! what waits in memory is bounded by the window and the pump's depth.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::RecvStream;
use oxgate_proto::{BodyFraming, ProtoError, RequestHead};
use tokio::sync::{mpsc, oneshot};
use tokio::time::timeout;

use crate::body::Step;
use crate::handler::{BodyError, BodyStream, RequestBody};
use crate::server::Settings;

/// Pieces in flight between the stream and the app.
const DEPTH: usize = 4;

/// Why a body cannot reach the app.
pub(crate) enum Refusal {
    /// Answer with this error's status.
    Answer(ProtoError),
    /// The client reset the stream: nobody to answer.
    Gone,
}

/// Read a small body whole; stream a larger one, or one whose client waits
/// for `100 Continue`. Nothing is ever drained: what the app leaves unread
/// is reset by h2 once the stream is dropped (RFC 9113 section 8.1).
pub(crate) async fn prepare(
    recv: RecvStream,
    head: &RequestHead,
    settings: &Settings,
) -> Result<(RequestBody, Option<Pump>), Refusal> {
    let max = settings.max_body.unwrap_or(u64::MAX);
    let declared = match head.framing {
        BodyFraming::None | BodyFraming::Length(0) => {
            return Ok((RequestBody::Full(Bytes::new()), None))
        }
        // Refused before the app runs and before any `100 Continue`.
        BodyFraming::Length(n) if n > max => {
            return Err(Refusal::Answer(ProtoError::PayloadTooLarge))
        }
        BodyFraming::Length(n) => Some(n),
        BodyFraming::Chunked => None,
    };
    let limit = settings.body_buffer;
    let mut pump = Pump {
        recv,
        tx: None,
        waiting: None,
        seen: 0,
        max,
    };
    if head.expect_continue {
        return Ok(pump.into_stream(Bytes::new(), true));
    }
    if declared.is_some_and(|n| n > limit as u64) {
        return Ok(pump.into_stream(Bytes::new(), false));
    }
    let mut collected = BytesMut::new();
    loop {
        match timeout(settings.body_timeout, pump.recv.data()).await {
            Ok(Some(Ok(data))) => {
                pump.take(data.len())?;
                collected.extend_from_slice(&data);
                if collected.len() > limit {
                    return Ok(pump.into_stream(collected.freeze(), false));
                }
            }
            Ok(Some(Err(e))) => {
                log::debug!("HTTP/2 request body ended by the client: {e}");
                return Err(Refusal::Gone);
            }
            Ok(None) => return Ok((RequestBody::Full(collected.freeze()), None)),
            // --body-timeout: the body stalled.
            Err(_) => return Err(Refusal::Answer(ProtoError::RequestTimeout)),
        }
    }
}

/// Moves a body from the stream to the app, one piece per `step`.
pub(crate) struct Pump {
    recv: RecvStream,
    tx: Option<mpsc::Sender<Result<Bytes, BodyError>>>,
    /// Set while the app has not asked for the body of an
    /// `Expect: 100-continue` request.
    waiting: Option<oneshot::Receiver<()>>,
    /// Body bytes received so far, and the most allowed.
    seen: u64,
    max: u64,
}

impl Pump {
    /// Count `n` received bytes against --limit-request-body, and give
    /// the client its window back for them.
    fn take(&mut self, n: usize) -> Result<(), Refusal> {
        self.seen += n as u64;
        if self.seen > self.max {
            return Err(Refusal::Answer(ProtoError::PayloadTooLarge));
        }
        // Fails only on a stream already reset, which the next read says.
        let _ = self.recv.flow_control().release_capacity(n);
        Ok(())
    }

    fn into_stream(mut self, first: Bytes, expect_continue: bool) -> (RequestBody, Option<Pump>) {
        let (tx, rx) = mpsc::channel(DEPTH + 1);
        if !first.is_empty() {
            // A fresh channel has room for it.
            let _ = tx.try_send(Ok(first));
        }
        let (want_tx, want_rx) = oneshot::channel();
        let want = if expect_continue {
            self.waiting = Some(want_rx);
            Some(want_tx)
        } else {
            None
        };
        self.tx = Some(tx);
        let body = RequestBody::Stream(BodyStream {
            rx,
            want,
            done: false,
        });
        (body, Some(self))
    }

    /// Is there anything left for `step` to do?
    pub(crate) fn active(&self) -> bool {
        self.tx.is_some() || self.waiting.is_some()
    }

    /// Deliver the next piece to the app. Cancel-safe: a piece is taken
    /// from the stream only once the channel has room for it.
    pub(crate) async fn step(&mut self, wait: Duration) -> Step {
        if let Some(waiting) = &mut self.waiting {
            let asked = waiting.await.is_ok();
            self.waiting = None;
            if !asked {
                self.tx = None;
                return Step::Abandoned;
            }
            return Step::Continue;
        }
        let Some(tx) = self.tx.clone() else {
            return Step::Abandoned;
        };
        let Ok(permit) = tx.reserve().await else {
            self.tx = None;
            return Step::Abandoned;
        };
        loop {
            match timeout(wait, self.recv.data()).await {
                Ok(Some(Ok(data))) if data.is_empty() => continue,
                Ok(Some(Ok(data))) => {
                    if let Err(Refusal::Answer(e)) = self.take(data.len()) {
                        permit.send(Err(BodyError::Invalid(e.to_string())));
                        self.tx = None;
                        return Step::Refused(e);
                    }
                    permit.send(Ok(data));
                    return Step::Progress;
                }
                Ok(Some(Err(e))) => {
                    log::debug!("HTTP/2 request body ended by the client: {e}");
                    permit.send(Err(BodyError::Disconnected));
                    self.tx = None;
                    return Step::Progress;
                }
                Ok(None) => {
                    permit.send(Ok(Bytes::new()));
                    self.tx = None;
                    return Step::Progress;
                }
                Err(_) => {
                    permit.send(Err(BodyError::TimedOut));
                    self.tx = None;
                    return Step::Refused(ProtoError::RequestTimeout);
                }
            }
        }
    }
}
