//! The access log: one line per response in gunicorn's format (or JSON),
//! rendered by the compiled format from oxgate-config and written to stdout
//! or a file; --access-log-skip paths are left out.
//!
//! Lines are written when the thread that logged them runs out of work (the
//! I/O thread about to wait for events, an app thread for requests), when
//! 16 KiB are pending, and by the worker's 200 ms tick: one write(2) per
//! busy stretch rather than per response (a write per line was 9% of the
//! worker's CPU for a tiny response), and no later than that while idle.

use std::cell::{Cell, RefCell};
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, FixedOffset, Offset, TimeZone};

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
    /// Rendered straight into, under the lock: no line of its own to copy.
    pending: String,
}

impl Lines {
    fn write_out(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        // A failed write (a full disk, a closed pipe) drops these lines
        // rather than hold them, and every line after them, in memory.
        let _ = self.out.write_all(self.pending.as_bytes());
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
                pending: String::with_capacity(PENDING_MAX),
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
        let start = local_time(
            SystemTime::now()
                .checked_sub(duration)
                .unwrap_or(UNIX_EPOCH),
        );
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
            time: start,
            pid: self.pid,
            request_id: e.request_id,
        };
        let mut lines = lock(&self.lines);
        self.format.render(&rec, &mut lines.pending);
        lines.pending.push('\n');
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

thread_local! {
    /// The second the zone's offset was last looked up in, and the offset.
    static OFFSET: Cell<Option<(i64, FixedOffset)>> = const { Cell::new(None) };
}

/// `at` in the server's local time. The zone's offset is looked up once a
/// second per thread: `Local::now()` per line was 1% of a busy worker's CPU.
fn local_time(at: SystemTime) -> DateTime<FixedOffset> {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(0);
    let offset = match OFFSET.get() {
        Some((s, offset)) if s == secs => offset,
        _ => {
            let offset = chrono::Local
                .timestamp_opt(secs, 0)
                .earliest()
                .map_or_else(|| chrono::Utc.fix(), |t| t.offset().fix());
            OFFSET.set(Some((secs, offset)));
            offset
        }
    };
    DateTime::from_timestamp(secs, since.subsec_nanos())
        .unwrap_or_default()
        .with_timezone(&offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_time_is_chronos_local_time_to_the_nanosecond() {
        let base = SystemTime::now();
        for step in [0, 1, 999_999_999, 1_000_000_000, 86_400_000_000_123] {
            let at = base + Duration::from_nanos(step);
            let want = DateTime::<chrono::Local>::from(at).fixed_offset();
            assert_eq!(local_time(at), want);
            // Again, from the offset looked up for this second.
            assert_eq!(local_time(at), want);
        }
        assert_eq!(local_time(UNIX_EPOCH).timestamp(), 0);
    }
}
