//! The `oxgate` command: settings from file, env and argv, logs, the app,
//! the sockets, then serving until a signal. Every start-up failure ends
//! here as one `Error:` line and an exit code naming its cause.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use log::LevelFilter;
use oxgate_config::{Command, Config, Layer, LogLevel};
use oxgate_server::Listener;
use oxgate_supervisor::upgrade::Relaunch;
use oxgate_supervisor::MasterConfig;
use pyo3::prelude::*;

use crate::fail::Fail;
use crate::hooks::{self, Hooks};

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
    let mut hooks = Hooks::default();
    let explicit = cli.config_file().or(env.config_file()).map(str::to_owned);
    let file = match explicit {
        Some(path) => crate::config_file::load(py, &path, &mut hooks)?,
        None if std::path::Path::new(DEFAULT_CONFIG).is_file() => {
            crate::config_file::load(py, DEFAULT_CONFIG, &mut hooks)?
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
    // A new master (USR2) starts where the first one did: --chdir may be relative.
    let start_dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    prepare_python(py, &cfg)?;
    let uri = cfg.app_uri.as_ref().ok_or_else(|| {
        Fail::usage(
            "no application given: run oxgate [OPTIONS] MODULE[:VARIABLE], e.g. oxgate mysite.wsgi",
        )
    })?;
    if cfg.check_config {
        crate::app::load(py, uri)?;
        return Ok(0);
    }
    if cfg.daemon {
        // This thread holds the GIL (we are inside a #[pyfunction]), as PyFork needs.
        oxgate_supervisor::daemonize(&mut crate::worker::PyFork)
            .map_err(|e| Fail::boot(format!("cannot daemonize: {e}")))?;
    }
    serve(py, &cfg, Arc::new(hooks), start_dir)
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

fn serve(py: Python<'_>, cfg: &Config, hooks: Arc<Hooks>, start_dir: PathBuf) -> Result<i32, Fail> {
    let server = |py| hooks::server_obj(py, std::process::id(), cfg.workers);
    if let Ok(s) = server(py) {
        hooks.call(py, "on_starting", &[s]);
    }
    match oxgate_supervisor::raise_open_files() {
        // Listeners, logs and the app's own files need some room too.
        Ok(n) if n < (cfg.worker_connections as u64).saturating_add(64) => log::warn!(
            "the open-files limit is {n}, below --worker-connections {} (+64): raise it \
             (ulimit -n) or lower --worker-connections",
            cfg.worker_connections
        ),
        Ok(_) => {}
        Err(e) => log::warn!("cannot raise the open-files limit: {e}"),
    }
    if let Some(files) = &cfg.tls {
        // Checked here for the one-line error; each worker reads them again.
        oxgate_server::Tls::load(files, cfg.http)
            .map_err(|e| Fail::boot(format!("cannot serve TLS: {e}")))?;
    }
    let mut listeners = Vec::new();
    // From a master we replace (USR2: the socket files become ours), else
    // from systemd (which owns its files).
    let mut activated = oxgate_supervisor::upgrade::inherited_fds();
    let owned = !activated.is_empty();
    if activated.is_empty() {
        activated = oxgate_supervisor::systemd::listen_fds();
    }
    for &fd in &activated {
        let l = Listener::from_fd(fd, owned).map_err(|e| Fail::boot(e.to_string()))?;
        listeners.push(l.tag(&cfg.bind));
    }
    // Socket activation replaces --bind, as in gunicorn.
    let binds: &[oxgate_config::Bind] = if activated.is_empty() { &cfg.bind } else { &[] };
    for bind in binds {
        let l = Listener::bind(bind, cfg.backlog, cfg.reuse_port)
            .map_err(|e| Fail::boot(e.to_string()))?;
        listeners.push(l);
    }
    let relaunch_fds: Vec<_> = listeners.iter().map(Listener::raw_fd).collect();
    let urls: Vec<String> = listeners
        .iter()
        .map(Listener::url)
        // With TLS every plain-HTTP TCP listener is an HTTPS one.
        .map(|url| match (&cfg.tls, url.strip_prefix("http://")) {
            (Some(_), Some(addr)) => format!("https://{addr}"),
            _ => url,
        })
        .collect();
    let unix_paths: Vec<_> = listeners
        .iter()
        .filter_map(Listener::unix_path)
        .cloned()
        .collect();
    let identity = identity(cfg)?;
    let preloaded = match (&cfg.preload_app, &cfg.app_uri) {
        (true, Some(uri)) => {
            let app = crate::app::load(py, uri)?;
            if !cfg.no_gc_freeze {
                // Before any fork: the workers then share these pages.
                crate::app::freeze_gc(py);
            }
            Some(app)
        }
        _ => None,
    };
    let mut host = crate::worker::Host {
        py,
        cfg,
        listeners,
        identity,
        preloaded,
        hooks: hooks.clone(),
        master_pid: std::process::id(),
    };
    let master = MasterConfig {
        workers: cfg.workers,
        threads: cfg.threads.max(1),
        timeout: (cfg.timeout > 0).then(|| Duration::from_secs(cfg.timeout)),
        graceful_timeout: Duration::from_secs(cfg.graceful_timeout),
        max_requests: cfg.max_requests,
        max_requests_jitter: cfg.max_requests_jitter,
        pidfile: cfg.pidfile.clone(),
        max_worker_memory: cfg.max_worker_memory.saturating_mul(1 << 20),
        daemon: cfg.daemon,
        relaunch: Relaunch {
            fds: relaunch_fds,
            start_dir,
        },
        metrics_bind: match &cfg.metrics_bind {
            Some(oxgate_config::Bind::Tcp { host, port }) => Some((host.clone(), *port)),
            _ => None,
        },
    };
    let (workers, threads) = (cfg.workers, cfg.threads.max(1));
    let ready_hooks = hooks.clone();
    let ready = move || {
        log::info!("Starting oxgate {}", env!("CARGO_PKG_VERSION"));
        for url in urls {
            log::info!("Listening at: {url} ({})", std::process::id());
        }
        log::info!("Using {workers} worker(s) with {threads} thread(s) each");
        if let Ok(s) = hooks::server_obj(py, std::process::id(), workers) {
            ready_hooks.call(py, "when_ready", &[s]);
        }
    };

    let exit = oxgate_supervisor::run(master, &mut host, ready)
        .map_err(|e| Fail::boot(format!("the master failed: {e}")))?;
    if let Ok(s) = server(py) {
        hooks.call(py, "on_exit", &[s]);
    }
    // After an upgrade the sockets belong to the new master.
    for path in unix_paths.iter().filter(|_| !exit.handed_over) {
        let _ = std::fs::remove_file(path);
    }
    log::logger().flush();
    match exit.message {
        Some(message) => Err(Fail {
            code: exit.code,
            message,
        }),
        None => Ok(exit.code),
    }
}

/// --user, --group and --umask, resolved before any fork.
fn identity(cfg: &Config) -> Result<oxgate_supervisor::Identity, Fail> {
    let mut id = oxgate_supervisor::Identity {
        umask: cfg.umask,
        ..Default::default()
    };
    if let Some(user) = &cfg.user {
        let (uid, gid) = oxgate_supervisor::lookup_user(user).map_err(Fail::usage)?;
        id.uid = Some(uid);
        id.gid = Some(gid);
    }
    if let Some(group) = &cfg.group {
        id.gid = Some(oxgate_supervisor::lookup_group(group).map_err(Fail::usage)?);
    }
    Ok(id)
}
