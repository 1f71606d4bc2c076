//! What is due when a response ends: its access-log line and its metrics.
//! For HTTP/1, owned by whichever side sees the end first: the connection,
//! or an app thread that wrote the whole response itself (which then need
//! not wake the connection for it). An HTTP/2 stream keeps its own.

use std::sync::Arc;
use std::time::Instant;

use oxgate_proto::RequestHead;

use crate::access_log::AccessEntry;
use crate::encode::Encoder;
use crate::handler::{ConnInfo, ResponseHead};
use crate::observe::{now_us, SlowClient};
use crate::request_id::RequestId;
use crate::server::Shared;

/// One request in flight with an access log or metrics to feed. Dropped,
/// the request is over for the metrics (on every path, a dropped task's
/// included): recorded or not, exactly once.
pub(crate) struct Ending {
    shared: Arc<Shared>,
    head: Arc<RequestHead>,
    conn: Arc<ConnInfo>,
    request_id: Option<Arc<RequestId>>,
    /// For the access log (None: no log, or a path it skips).
    started: Option<Instant>,
    /// For the metrics: plain microseconds, cheap to subtract.
    since: Option<u64>,
}

impl Ending {
    /// Start counting a request whose head was just read; None when
    /// nothing is due at its end (no log for this path, no metrics).
    pub(crate) fn start(
        shared: &Arc<Shared>,
        head: &Arc<RequestHead>,
        conn: &Arc<ConnInfo>,
        request_id: Option<&Arc<RequestId>>,
    ) -> Option<Ending> {
        let logged = shared
            .access_log
            .as_ref()
            .is_some_and(|log| log.wants(head.path()));
        let observer = shared.observer.as_deref();
        if !logged && observer.is_none() {
            return None;
        }
        if let Some(o) = observer {
            o.started();
        }
        Some(Ending {
            shared: shared.clone(),
            head: head.clone(),
            conn: conn.clone(),
            request_id: request_id.cloned(),
            started: logged.then(Instant::now),
            since: observer.map(|_| now_us()),
        })
    }

    /// When the head was read, in `now_us` microseconds (metrics only).
    pub(crate) fn since(&self) -> Option<u64> {
        self.since
    }

    /// The response in `enc` is over: count it and log it.
    pub(crate) fn record(self, enc: &Encoder, slow_body: bool) {
        self.record_as(enc.status, enc.resp_head.as_ref(), enc.body_sent, slow_body);
    }

    /// The response is over with `status` (0: none went out), `resp_head`
    /// and `body_sent` bytes of body: count it and log it.
    pub(crate) fn record_as(
        self,
        status: u16,
        resp_head: Option<&ResponseHead>,
        body_sent: u64,
        slow_body: bool,
    ) {
        if let Some(o) = self.shared.observer.as_deref() {
            if slow_body {
                o.slow_client(SlowClient::Body);
            }
            // Nothing answered (the client left first): in flight, not counted.
            if status >= 100 {
                o.answered(&self.head, status, self.since);
            }
        }
        if let (Some(log), Some(started)) = (self.shared.access_log.as_ref(), self.started) {
            log.write(&AccessEntry {
                head: &self.head,
                conn: &self.conn,
                status,
                resp_head,
                body_bytes: body_sent,
                started,
                request_id: self.request_id.as_deref().map(RequestId::as_str),
            });
        }
    }
}

impl Drop for Ending {
    fn drop(&mut self) {
        if let Some(o) = self.shared.observer.as_deref() {
            o.ended();
        }
    }
}
