//! The access log: one line per response in gunicorn's format, rendered by
//! the compiled format from oxgate-config and written to stdout or a file.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oxgate_config::{AccessLogFormat, AccessRecord};
use oxgate_proto::RequestHead;

use crate::handler::ConnInfo;
use crate::logging::open_target;

pub struct AccessLog {
    format: AccessLogFormat,
    target: String,
    out: Mutex<Box<dyn Write + Send>>,
    pid: u32,
}

/// What the connection knows about one finished exchange.
pub struct AccessEntry<'a> {
    pub head: &'a RequestHead,
    pub conn: &'a Arc<ConnInfo>,
    pub status: u16,
    pub headers: &'a [(String, String)],
    pub body_bytes: u64,
    pub started: Instant,
}

impl AccessLog {
    /// `target` "-" is stdout.
    pub fn open(target: &str, format: AccessLogFormat) -> io::Result<Self> {
        let out = open_target(target, io::stdout())?;
        Ok(AccessLog {
            format,
            target: target.to_owned(),
            out: Mutex::new(out),
            pid: std::process::id(),
        })
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
        let remote = e
            .conn
            .peer
            .map(|p| p.ip().to_string())
            .unwrap_or_else(|| "-".to_owned());
        let req_headers: Vec<(&str, &[u8])> = e.head.headers().map(|h| (h.name, h.value)).collect();
        let resp_headers: Vec<(&str, &str)> = e
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let rec = AccessRecord {
            remote_addr: &remote,
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
