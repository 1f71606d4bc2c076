//! The error log: gunicorn's line format, a level filter, and raw writes
//! for `wsgi.errors`. The destination is stderr or a file opened for append.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::sync::{Mutex, OnceLock};

use log::{Level, LevelFilter, Log, Metadata, Record};

type Sink = Mutex<Box<dyn Write + Send>>;

static SINK: OnceLock<Sink> = OnceLock::new();
/// The error log's destination, for reopening after rotation.
static TARGET: OnceLock<String> = OnceLock::new();

struct ErrorLog;

/// Open `target` ("-" is stderr) and install it as the process's error log.
/// Only the first call installs; later calls change the level only.
pub fn init_error_log(target: &str, level: LevelFilter) -> io::Result<()> {
    let out = open_target(target, io::stderr())?;
    let _ = TARGET.set(target.to_owned());
    if SINK.set(Mutex::new(out)).is_ok() {
        let _ = log::set_boxed_logger(Box::new(ErrorLog));
    }
    log::set_max_level(level);
    Ok(())
}

/// "-" means the given standard stream; anything else is a file, appended to.
pub fn open_target<W: Write + Send + 'static>(
    target: &str,
    std: W,
) -> io::Result<Box<dyn Write + Send>> {
    if target == "-" {
        return Ok(Box::new(std));
    }
    let file = OpenOptions::new().create(true).append(true).open(target)?;
    Ok(Box::new(io::LineWriter::new(file)))
}

/// Reopen the error log file (SIGUSR1, after logrotate moved it away).
pub fn reopen() -> io::Result<()> {
    let (Some(target), Some(sink)) = (TARGET.get(), SINK.get()) else {
        return Ok(());
    };
    if target == "-" {
        return Ok(());
    }
    let fresh = open_target(target, io::stderr())?;
    if let Ok(mut out) = sink.lock() {
        let _ = out.flush();
        *out = fresh;
    }
    Ok(())
}

/// Write text as is (wsgi.errors): no prefix, no added newline.
pub fn write_raw(text: &str) {
    match SINK.get() {
        Some(sink) => {
            if let Ok(mut out) = sink.lock() {
                let _ = out.write_all(text.as_bytes());
                let _ = out.flush();
            }
        }
        None => eprint!("{text}"),
    }
}

pub fn flush() {
    if let Some(sink) = SINK.get() {
        if let Ok(mut out) = sink.lock() {
            let _ = out.flush();
        }
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARNING",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

impl Log for ErrorLog {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S %z");
        // Asked each time: workers inherit this logger across fork.
        let pid = std::process::id();
        let line = format!(
            "[{now}] [{pid}] [{}] {}\n",
            level_name(record.level()),
            record.args()
        );
        write_raw(&line);
    }

    fn flush(&self) {
        flush();
    }
}
