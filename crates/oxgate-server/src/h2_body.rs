//! An HTTP/2 request body on its way to the app: read whole before the app
//! is called when small, else pumped into wsgi.input as the app reads. The
//! client's flow-control window (RFC 9113 section 5.2) is given back only
//! for bytes handed on, so an app that stops reading stops the client, and
//! what waits in memory is bounded by the window and the pump's depth.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use h2::RecvStream;
use oxgate_proto::{BodyFraming, ProtoError, RequestHead};
use tokio::time::timeout;

use crate::body::{Feed, Step};
use crate::handler::{BodyError, RequestBody};
use crate::server::Settings;

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
        feed: Feed::closed(),
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
    feed: Feed,
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
        let (body, feed) = Feed::open(first, expect_continue);
        self.feed = feed;
        (body, Some(self))
    }

    /// Is there anything left for `step` to do?
    pub(crate) fn active(&self) -> bool {
        self.feed.active()
    }

    /// Deliver the next piece to the app. Cancel-safe: a piece is taken
    /// from the stream only once the channel has room for it.
    pub(crate) async fn step(&mut self, wait: Duration) -> Step {
        let permit = match self.feed.room().await {
            Ok(room) => room,
            Err(step) => return step,
        };
        loop {
            match timeout(wait, self.recv.data()).await {
                Ok(Some(Ok(data))) if data.is_empty() => continue,
                Ok(Some(Ok(data))) => {
                    if let Err(Refusal::Answer(e)) = self.take(data.len()) {
                        permit.send(Err(BodyError::Invalid(e.to_string())));
                        self.feed.close();
                        return Step::Refused(e);
                    }
                    permit.send(Ok(data));
                    return Step::Progress;
                }
                Ok(Some(Err(e))) => {
                    log::debug!("HTTP/2 request body ended by the client: {e}");
                    permit.send(Err(BodyError::Disconnected));
                    self.feed.close();
                    return Step::Progress;
                }
                Ok(None) => {
                    permit.send(Ok(Bytes::new()));
                    self.feed.close();
                    return Step::Progress;
                }
                Err(_) => {
                    permit.send(Err(BodyError::TimedOut));
                    self.feed.close();
                    return Step::Refused(ProtoError::RequestTimeout);
                }
            }
        }
    }
}
