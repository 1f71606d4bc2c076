//! The `oxgate` command: settings from file, env and argv, logs, the app,
//! the sockets, then serving until a signal. Every start-up failure ends
//! here as one `Error:` line and an exit code naming its cause.

use std::sync::Arc;
use std::time::Duration;

use log::LevelFilter;
use oxgate_config::{Command, Config, Layer, LogLevel};
use oxgate_proto::Limits;
use oxgate_server::{AccessLog, Listener, Settings, Shared, Stopped};
use pyo3::prelude::*;

use crate::environ::AppContext;
use crate::fail::Fail;

const DEFAULT_CONFIG: &str = "oxgate.conf.py";

/// Entry point from Python: returns the process exit code.
#[pyfunction]
pub fn run(py: Python<'_>, argv: Vec<String>) -> i32 {
    match main(py, argv) {
        Ok(code) => code,
        Err(fail) => {
            log::logger().flush();
            eprintln!("Error: {}", fail.message);
            fail.code
        }
    }
}

fn main(py: Python<'_>, argv: Vec<String>) -> Result<i32, Fail> {
    let cli = match oxgate_config::parse_args(&argv).map_err(|e| Fail::usage(e.to_string()))? {
        Command::Help(text) => {
            print!("{text}");
            return Ok(0);
        }
        Command::Version(text) => {
            println!("{}", text.trim_end());
            return Ok(0);
        }
        Command::Run(layer) => layer,
    };
    let env = match std::env::var("OXGATE_CMD_ARGS") {
        Ok(v) if !v.trim().is_empty() => oxgate_config::parse_env_args(&v)
            .map_err(|e| Fail::usage(format!("in OXGATE_CMD_ARGS: {e}")))?,
        _ => Layer::new(),
    };
    let explicit = cli.config_file().or(env.config_file()).map(str::to_owned);
    let file = match explicit {
        Some(path) => crate::config_file::load(py, &path)?,
        None if std::path::Path::new(DEFAULT_CONFIG).is_file() => {
            crate::config_file::load(py, DEFAULT_CONFIG)?
        }
        None => Layer::new(),
    };
    let cfg = oxgate_config::build(&[file, env, cli], &|k| std::env::var(k).ok())
        .map_err(|e| Fail::usage(e.to_string()))?;
    if cfg.print_config {
        print!("{}", oxgate_config::print_config(&cfg));
        return Ok(0);
    }
    let level = match cfg.loglevel {
        LogLevel::Debug => LevelFilter::Debug,
        LogLevel::Info => LevelFilter::Info,
        LogLevel::Warning => LevelFilter::Warn,
        LogLevel::Error => LevelFilter::Error,
        // oxgate logs nothing at critical: that level silences the log.
        LogLevel::Critical => LevelFilter::Off,
    };
    oxgate_server::logging::init_error_log(&cfg.errorlog, level)
        .map_err(|e| Fail::boot(format!("cannot open error log '{}': {e}", cfg.errorlog)))?;
    prepare_python(py, &cfg)?;
    let uri = cfg.app_uri.clone().ok_or_else(|| {
        Fail::usage(
            "no application given: run oxgate [OPTIONS] MODULE[:VARIABLE], e.g. oxgate mysite.wsgi",
        )
    })?;
    let app = crate::app::load(py, &uri)?;
    if cfg.check_config {
        return Ok(0);
    }
    serve(py, &cfg, app)
}

/// chdir, sys.path and --env, before the app is imported (gunicorn's order).
fn prepare_python(py: Python<'_>, cfg: &Config) -> Result<(), Fail> {
    if let Some(dir) = &cfg.chdir {
        std::env::set_current_dir(dir).map_err(|e| {
            Fail::usage(format!(
                "cannot change directory to '{}': {e} (check --chdir)",
                dir.display()
            ))
        })?;
    }
    let setup = || -> PyResult<()> {
        let sys_path = py.import("sys")?.getattr("path")?;
        let cwd = std::env::current_dir()?.to_string_lossy().into_owned();
        let mut front = vec![cwd];
        front.extend(cfg.pythonpath.iter().rev().cloned());
        for dir in front {
            if !sys_path.contains(&dir)? {
                sys_path.call_method1("insert", (0, dir))?;
            }
        }
        let environ = py.import("os")?.getattr("environ")?;
        for (k, v) in &cfg.raw_env {
            environ.set_item(k, v)?;
        }
        Ok(())
    };
    setup().map_err(|e| Fail::boot(format!("cannot prepare the interpreter: {e}")))
}

fn serve(py: Python<'_>, cfg: &Config, app: Py<PyAny>) -> Result<i32, Fail> {
    let mut listeners = Vec::new();
    for bind in &cfg.bind {
        listeners.push(Listener::bind(bind, cfg.backlog).map_err(|e| Fail::boot(e.to_string()))?);
    }
    let access_log = match &cfg.accesslog {
        Some(target) => Some(
            AccessLog::open(target, cfg.access_log_format.clone())
                .map_err(|e| Fail::boot(format!("cannot open access log '{target}': {e}")))?,
        ),
        None => None,
    };
    let script_name = if cfg.root_path.is_empty() {
        std::env::var("SCRIPT_NAME").unwrap_or_default()
    } else {
        cfg.root_path.clone()
    };
    let script_name = script_name.trim_end_matches('/').to_owned();
    let threads = cfg.threads.max(1);
    let ctx = AppContext::new(py, script_name, threads)
        .map_err(|e| Fail::boot(format!("cannot build the environ: {e}")))?;
    let queue = (threads * 64).max(1024);
    let (pool, handles) = crate::pool::start(app, Arc::new(ctx), threads, queue)
        .map_err(|e| Fail::boot(format!("cannot start app threads: {e}")))?;
    let settings = Settings {
        limits: Limits {
            max_request_line: cfg.limit_request_line,
            max_headers: cfg.limit_request_fields,
            max_header_size: cfg.limit_request_field_size,
        },
        keepalive: Duration::from_secs(cfg.keepalive),
        head_timeout: Duration::from_secs(30),
        body_timeout: Duration::from_secs(30),
        body_buffer: 64 * 1024,
        graceful_timeout: Duration::from_secs(cfg.graceful_timeout),
    };
    log::info!("Starting oxgate {}", env!("CARGO_PKG_VERSION"));
    let urls: Vec<String> = listeners.iter().map(Listener::url).collect();
    let shared = Arc::new(Shared::new(settings, Arc::new(pool), access_log));
    let ready = move || {
        for url in urls {
            log::info!("Listening at: {url} ({})", std::process::id());
        }
        log::info!("Serving with {threads} thread(s)");
    };
    let stopped = py
        .detach(move || oxgate_server::run(listeners, shared, ready))
        .map_err(|e| Fail::boot(format!("server failed: {e}")))?;
    if stopped == Stopped::Graceful {
        // The queue closed with the server: idle threads exit at once. A
        // thread still in the app (its client gone) gets what is left of
        // the graceful timeout, then is abandoned with the process.
        let deadline = std::time::Instant::now() + Duration::from_secs(cfg.graceful_timeout);
        py.detach(|| {
            while handles.iter().any(|h| !h.is_finished()) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        });
    }
    log::info!("Shutting down: master");
    log::logger().flush();
    Ok(0)
}
