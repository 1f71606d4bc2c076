//! The access log: one line per response in gunicorn's format (or JSON),
//! rendered by the compiled format from oxgate-config and written to stdout
//! or a file; --access-log-skip paths are left out.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxgate_config::{AccessLogFormat, AccessRecord};
use oxgate_proto::RequestHead;

use crate::handler::{ConnInfo, ResponseHead};
use crate::logging::open_target;

pub struct AccessLog {
    format: AccessLogFormat,
    target: String,
    out: Mutex<Box<dyn Write + Send>>,
    pid: u32,
    /// --access-log-skip: paths not logged.
    skip: Vec<String>,
}

/// What the connection knows about one finished exchange.
pub struct AccessEntry<'a> {
    pub head: &'a RequestHead,
    pub conn: &'a Arc<ConnInfo>,
    pub status: u16,
    /// The head that went out; None when none did.
    pub resp_head: Option<&'a ResponseHead>,
    pub body_bytes: u64,
    pub started: Instant,
    pub request_id: Option<&'a str>,
}

impl AccessLog {
    /// `target` "-" is stdout; requests for a path in `skip` are not logged.
    pub fn open(target: &str, format: AccessLogFormat, skip: Vec<String>) -> io::Result<Self> {
        let out = open_target(target, io::stdout())?;
        Ok(AccessLog {
            format,
            target: target.to_owned(),
            out: Mutex::new(out),
            pid: std::process::id(),
            skip,
        })
    }

    /// Whether a request for `path` is logged (--access-log-skip).
    pub fn wants(&self, path: &str) -> bool {
        self.skip.is_empty() || !self.skip.iter().any(|p| p == path)
    }

    /// Reopen the file (SIGUSR1, after logrotate moved it away).
    pub fn reopen(&self) -> io::Result<()> {
        if self.target == "-" {
            return Ok(());
        }
        let fresh = open_target(&self.target, io::stdout())?;
        if let Ok(mut out) = self.out.lock() {
            let _ = out.flush();
            *out = fresh;
        }
        Ok(())
    }

    pub fn write(&self, e: &AccessEntry<'_>) {
        let duration: Duration = e.started.elapsed();
        let start = chrono::Local::now() - chrono::Duration::from_std(duration).unwrap_or_default();
        let req_headers: Vec<(&str, &[u8])> = e.head.headers().map(|h| (h.name, h.value)).collect();
        // Made only for a format that shows them: an allocation per header.
        let pairs = e
            .resp_head
            .filter(|_| self.format.uses_response_headers())
            .map(ResponseHead::header_pairs)
            .unwrap_or_default();
        let resp_headers: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let rec = AccessRecord {
            // The peer's address, as text made once per connection; empty
            // on a unix socket (rendered `-`, or null in JSON).
            remote_addr: e.conn.peer_strings().0,
            method: e.head.method(),
            target: e.head.target(),
            path: e.head.path(),
            query: e.head.query(),
            protocol: e.head.version.as_str(),
            status: e.status,
            response_bytes: e.body_bytes,
            request_headers: &req_headers,
            response_headers: &resp_headers,
            duration,
            time: start.fixed_offset(),
            pid: self.pid,
            request_id: e.request_id,
        };
        let mut line = String::with_capacity(128);
        self.format.render(&rec, &mut line);
        line.push('\n');
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(line.as_bytes());
            let _ = out.flush();
        }
    }
}
