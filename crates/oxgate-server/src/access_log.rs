//! The access log: one line per response in gunicorn's format (or JSON),
//! rendered by the compiled format from oxgate-config and written to stdout
//! or a file; --access-log-skip paths are left out.
//!
//! Lines are written when the thread that logged them runs out of work (the
//! I/O thread about to wait for events, an app thread for requests), when
//! 16 KiB are pending, and by the worker's 200 ms tick: one write(2) per
//! busy stretch rather than per response (a write per line was 9% of the
//! worker's CPU for a tiny response), and no later than that while idle.

use std::cell::RefCell;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use oxgate_config::{AccessLogFormat, AccessRecord};
use oxgate_proto::RequestHead;

use crate::handler::{ConnInfo, ResponseHead};
use crate::logging::open_target;

/// Past this many bytes pending, the lines go out at once.
const PENDING_MAX: usize = 16 * 1024;

pub struct AccessLog {
    format: AccessLogFormat,
    target: String,
    lines: Arc<Mutex<Lines>>,
    pid: u32,
    /// --access-log-skip: paths not logged.
    skip: Vec<String>,
}

struct Lines {
    out: Box<dyn Write + Send>,
    pending: Vec<u8>,
}

impl Lines {
    fn write_out(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // A failed write (a full disk, a closed pipe) drops these lines
        // rather than hold them, and every line after them, in memory.
        let _ = self.out.write_all(&self.pending);
        let _ = self.out.flush();
        self.pending.clear();
    }
}

fn lock(lines: &Mutex<Lines>) -> MutexGuard<'_, Lines> {
    lines.lock().unwrap_or_else(PoisonError::into_inner)
}

/// See `AccessLog::pending`.
pub struct PendingLines(Arc<Mutex<Lines>>);

impl PendingLines {
    pub fn flush(&self) {
        lock(&self.0).write_out();
    }
}

thread_local! {
    /// The log this thread left lines pending in, if any.
    static LEFT_IN: RefCell<Option<Arc<Mutex<Lines>>>> = const { RefCell::new(None) };
}

/// Write out the lines this thread left pending: called by a thread that
/// runs out of work.
pub fn flush_lines() {
    if let Some(lines) = LEFT_IN.with(|l| l.borrow_mut().take()) {
        lock(&lines).write_out();
    }
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
            lines: Arc::new(Mutex::new(Lines {
                out,
                pending: Vec::with_capacity(PENDING_MAX),
            })),
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
        let mut lines = lock(&self.lines);
        lines.write_out();
        lines.out = fresh;
        Ok(())
    }

    /// Write out every pending line (the worker's tick).
    pub fn flush(&self) {
        lock(&self.lines).write_out();
    }

    /// A hold on the pending lines alone, to write them out after the
    /// server (and this log with it) is gone.
    pub fn pending(&self) -> PendingLines {
        PendingLines(self.lines.clone())
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
        let mut lines = lock(&self.lines);
        lines.pending.extend_from_slice(line.as_bytes());
        if lines.pending.len() >= PENDING_MAX {
            lines.write_out();
            return;
        }
        drop(lines);
        LEFT_IN.with(|left| {
            let mut left = left.borrow_mut();
            if left.is_none() {
                *left = Some(self.lines.clone());
            }
        });
    }
}
