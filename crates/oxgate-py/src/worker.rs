//! One worker process, from just after fork to its exit: fix up the
//! interpreter, load the app, serve on the inherited sockets, report
//! liveness to the master. Never returns into master code.

use std::sync::Arc;
use std::time::Duration;

use oxgate_config::Config;
use oxgate_proto::Limits;
use oxgate_server::{AccessLog, Listener, Settings, Shared, StaticFiles, Stopped, Tls};
use oxgate_supervisor::{ForkHooks, WorkerContext, WorkerHost};
use pyo3::prelude::*;

use crate::environ::AppContext;
use crate::fail::Fail;
use crate::hooks::{self, Hooks};

pub struct Host<'a, 'py> {
    pub py: Python<'py>,
    pub cfg: &'a Config,
    /// The master's listening sockets, closed when it starts to stop.
    pub listeners: Vec<Listener>,
    pub identity: oxgate_supervisor::Identity,
    /// The app loaded in the master (--preload), shared copy-on-write.
    pub preloaded: Option<Py<PyAny>>,
    pub hooks: Arc<Hooks>,
    /// The master's pid, the same in every worker.
    pub master_pid: u32,
}

impl Host<'_, '_> {
    fn server(&self) -> Option<Bound<'_, PyAny>> {
        hooks::server_obj(self.py, self.master_pid, self.cfg.workers).ok()
    }
}

impl ForkHooks for Host<'_, '_> {
    fn before_fork(&mut self) {
        PyFork.before_fork();
    }

    fn after_fork_parent(&mut self) {
        PyFork.after_fork_parent();
    }

    fn after_fork_child(&mut self) {
        PyFork.after_fork_child();
    }
}

impl WorkerHost for Host<'_, '_> {
    fn pre_fork(&mut self, age: u64) {
        if !self.hooks.has("pre_fork") {
            return;
        }
        let py = self.py;
        let worker = hooks::namespace(
            py,
            &[(
                "age",
                age.into_pyobject(py)
                    .map(|a| a.into_any())
                    .unwrap_or_else(|_| py.None().into_bound(py)),
            )],
        );
        if let (Some(server), Ok(worker)) = (self.server(), worker) {
            self.hooks.call(py, "pre_fork", &[server, worker]);
        }
    }

    fn child_exit(&mut self, pid: i32) {
        if !self.hooks.has("child_exit") {
            return;
        }
        let py = self.py;
        let worker = pid
            .into_pyobject(py)
            .map_err(PyErr::from)
            .and_then(|p| hooks::namespace(py, &[("pid", p.into_any())]));
        if let (Some(server), Ok(worker)) = (self.server(), worker) {
            self.hooks.call(py, "child_exit", &[server, worker]);
        }
    }

    fn nworkers_changed(&mut self, new: usize, old: usize) {
        let py = self.py;
        if let (Some(server), Ok(new), Ok(old)) =
            (self.server(), new.into_pyobject(py), old.into_pyobject(py))
        {
            self.hooks.call(
                py,
                "nworkers_changed",
                &[server, new.into_any(), old.into_any()],
            );
        }
    }

    fn pre_exec(&mut self) {
        if let Some(server) = self.server() {
            self.hooks.call(self.py, "pre_exec", &[server]);
        }
    }

    fn reloading(&mut self) {
        if let Some(server) = self.server() {
            self.hooks.call(self.py, "on_reload", &[server]);
        }
    }

    fn stopping(&mut self, handed_over: bool) {
        // New connections must fail at once, so a proxy tries another
        // upstream, instead of waiting in a backlog that nobody will take
        // from and being reset at exit. The workers drain what is queued.
        for l in self.listeners.drain(..) {
            if let (false, Some(path)) = (handed_over, l.unix_path()) {
                let _ = std::fs::remove_file(path);
            }
        }
    }

    fn reopen_logs(&mut self) {
        if let Err(e) = oxgate_server::logging::reopen() {
            log::error!("cannot reopen the error log: {e}");
        }
    }

    fn run_worker(&mut self, ctx: WorkerContext) -> i32 {
        let ctx = Arc::new(ctx);
        if let (Some(server), Ok(worker)) = (self.server(), hooks::worker_obj(self.py, ctx.age)) {
            self.hooks.call(self.py, "post_fork", &[server, worker]);
        }
        // The worker's own: none may stay open here once it stops
        // accepting, or the socket would keep taking connections after a
        // stop (see `stopping`).
        let own = std::mem::take(&mut self.listeners);
        let code = match worker_main(self.py, self, own, ctx.clone()) {
            Ok(code) => code,
            Err(fail) => {
                // The master decides whether this is fatal and says it once.
                log::error!("Worker failed to boot: {}", fail.message);
                ctx.boot_failed(&fail.message);
                fail.code
            }
        };
        if let (Some(server), Ok(worker)) = (self.server(), hooks::worker_obj(self.py, ctx.age)) {
            self.hooks.call(self.py, "worker_exit", &[server, worker]);
        }
        flush_python(self.py);
        code
    }
}

/// The app's buffered prints must not be lost to _exit.
fn flush_python(py: Python<'_>) {
    if let Ok(sys) = py.import("sys") {
        for name in ["stdout", "stderr"] {
            if let Ok(stream) = sys.getattr(name) {
                let _ = stream.call_method0("flush");
            }
        }
    }
}

/// faulthandler writes every thread's stack from its C signal handler, so
/// the dump works even when an app thread holds the GIL in a busy loop. It
/// covers SIGABRT (the master's timeout kill) and the crashes (SIGSEGV,
/// SIGBUS, SIGFPE, SIGILL) of C extensions alike.
fn arm_stack_dump(py: Python<'_>, errorlog: &str) -> PyResult<()> {
    let file = if errorlog == "-" {
        py.import("sys")?.getattr("stderr")?
    } else {
        py.import("builtins")?
            .getattr("open")?
            .call1((errorlog, "a"))?
    };
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("file", file)?;
    kwargs.set_item("all_threads", true)?;
    let faulthandler = py.import("faulthandler")?;
    faulthandler.getattr("enable")?.call((), Some(&kwargs))?;
    // The master's "show me your stacks" signal, which does not end us.
    faulthandler
        .getattr("register")?
        .call((oxgate_supervisor::STACK_SIGNAL,), Some(&kwargs))?;
    Ok(())
}

/// glibc gives freed memory back to the kernel as soon as the top of the
/// heap has 128 KiB free, and serves 128 KiB and up with mmap: a worker
/// that allocates a 64 KiB body and frees it per request can then fault in
/// 16 fresh pages per request (measured: 2.4x the CPU on a 64 KiB echo).
/// Keep up to 32 MiB of freed heap and take blocks under 4 MiB from it,
/// unless the user tuned malloc through its environment variables.
fn steady_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = std::env::vars_os().any(|(k, _)| {
            k.to_str()
                .is_some_and(|k| k.starts_with("MALLOC_") || k.starts_with("GLIBC_TUNABLES"))
        });
        if !tuned {
            // SAFETY: mallopt only sets allocator parameters; called before
            // this worker starts any thread of its own.
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
                libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
            }
        }
    }
}

fn worker_main(
    py: Python<'_>,
    host: &Host<'_, '_>,
    own: Vec<Listener>,
    ctx: Arc<WorkerContext>,
) -> Result<i32, Fail> {
    let (cfg, identity) = (host.cfg, host.identity);
    log::info!("Booting worker with pid: {}", std::process::id());
    steady_malloc();
    if let Err(e) = arm_stack_dump(py, &cfg.errorlog) {
        log::warn!("stack dumps on timeout are unavailable: {e}");
    }
    let access_log = match &cfg.accesslog {
        Some(target) => Some(
            AccessLog::open(
                target,
                cfg.access_log_format.clone(),
                cfg.access_log_skip.clone(),
            )
            .map_err(|e| Fail::boot(format!("cannot open access log '{target}': {e}")))?,
        ),
        None => None,
    };
    // Read at each worker's start, so a HUP serves renewed certificates;
    // before dropping privileges, so the key may be readable by root alone.
    let tls = match &cfg.tls {
        Some(files) => Some(Arc::new(
            Tls::load(files, cfg.http).map_err(|e| Fail::boot(format!("cannot serve TLS: {e}")))?,
        )),
        None => None,
    };
    // Logs were opened with the master's rights; the app runs with these.
    // Parsing the app spec needs `ast`, which the new user may not be able
    // to read from the interpreter's install: import it while we still can.
    let _ = py.import("ast");
    identity.apply().map_err(|e| {
        Fail::boot(format!(
            "cannot switch to the configured --user/--group: {e}"
        ))
    })?;
    let app = match &host.preloaded {
        Some(app) => app.clone_ref(py),
        None => crate::app::load(py, cfg.app_uri.as_deref().unwrap_or_default())?,
    };
    if let Ok(worker) = hooks::worker_obj(py, ctx.age) {
        host.hooks.call(py, "post_worker_init", &[worker]);
    }
    let statics = static_files(py, cfg)?;
    let script_name = cfg.root_path.trim_end_matches('/').to_owned();
    let threads = cfg.threads.max(1);
    let app_ctx = AppContext::new(py, script_name, threads, cfg.workers, cfg.request_id)
        .map_err(|e| Fail::boot(format!("cannot build the environ: {e}")))?;
    let queue = cfg.queue_size();
    if cfg.reload && host.preloaded.is_none() {
        crate::reloader::start(cfg.reload_extra_files.clone(), ctx.clone())
            .map_err(|e| Fail::boot(format!("cannot start the reloader: {e}")))?;
    }
    let (pool, handles) = crate::pool::start(
        app,
        app_ctx,
        ctx.clone(),
        host.hooks.clone(),
        threads,
        queue,
    )
    .map_err(|e| Fail::boot(format!("cannot start app threads: {e}")))?;
    let settings = Settings {
        limits: Limits {
            max_request_line: cfg.limit_request_line,
            max_headers: cfg.limit_request_fields,
            max_header_size: cfg.limit_request_field_size,
        },
        keepalive: Duration::from_secs(cfg.keepalive),
        head_timeout: Duration::from_secs(cfg.header_timeout),
        body_timeout: Duration::from_secs(cfg.body_timeout),
        write_timeout: Duration::from_secs(cfg.write_timeout),
        max_connections: cfg.worker_connections,
        response_buffer: cfg.response_buffer,
        queue_size: queue,
        body_buffer: cfg.request_buffer,
        max_body: (cfg.limit_request_body > 0).then_some(cfg.limit_request_body),
        graceful_timeout: Duration::from_secs(cfg.graceful_timeout),
        request_timeout: (cfg.timeout > 0).then(|| Duration::from_secs(cfg.timeout)),
        forwarded_allow: Arc::new(cfg.forwarded_allow_ips.clone()),
        proxy_allow: cfg
            .proxy_protocol
            .then(|| Arc::new(cfg.proxy_allow_ips.clone())),
        statics,
        request_id: cfg.request_id,
        tls,
        http: cfg.http,
        h2_max_streams: cfg.http2_max_concurrent_streams,
    };
    let mut shared = Shared::new(settings, Arc::new(pool), access_log);
    let beat = ctx.clone();
    match cfg.metrics_bind {
        Some(_) => {
            let observer = Arc::new(crate::metrics::SlotObserver::new(ctx.clone()));
            shared.observer = Some(observer.clone());
            shared.tick = Some(Box::new(move || {
                beat.scoreboard.heartbeat(beat.slot);
                observer.publish_write_stalls();
            }));
        }
        None => shared.tick = Some(Box::new(move || beat.scoreboard.heartbeat(beat.slot))),
    }
    // Not the server's Shared: the app threads exit once it is dropped.
    let logged = shared.access_log.as_ref().map(AccessLog::pending);
    let shared = Arc::new(shared);
    let notify = ctx.clone();
    let freeze = !cfg.no_gc_freeze;
    let ready = move || {
        if freeze {
            // Here rather than right after loading: the worker's signal
            // handlers are in place, so a stop sent while the collection
            // runs ends the worker gracefully (worker_exit and all) instead
            // of killing it by the default disposition.
            Python::attach(crate::app::freeze_gc);
        }
        log::info!("Worker ready (pid: {})", std::process::id());
        notify.ready();
    };
    let stopped = py
        .detach(move || {
            // Inline calls keep the GIL between them (gil_hold.rs): given
            // back before `detach` takes it again.
            let _release = crate::gil_hold::ReleaseOnDrop;
            oxgate_server::run(own, shared, ready)
        })
        .map_err(|e| Fail::boot(format!("server failed: {e}")))?;
    if stopped == Stopped::Fast {
        if let Ok(worker) = hooks::worker_obj(py, ctx.age) {
            host.hooks.call(py, "worker_int", &[worker]);
        }
    }
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
    // What the app threads logged as they finished, if they did not run
    // out of work after it.
    if let Some(lines) = &logged {
        lines.flush();
    }
    log::info!("Worker exiting (pid: {})", std::process::id());
    Ok(0)
}

/// CPython's fork protocol (GIL held by the only thread), for the workers'
/// forks and for --daemon's.
pub struct PyFork;

impl ForkHooks for PyFork {
    fn before_fork(&mut self) {
        // SAFETY: called with the GIL held by this (the only) thread, as
        // CPython requires around fork(2).
        unsafe { pyo3::ffi::PyOS_BeforeFork() }
    }

    fn after_fork_parent(&mut self) {
        // SAFETY: as above, in the parent right after fork(2).
        unsafe { pyo3::ffi::PyOS_AfterFork_Parent() }
    }

    fn after_fork_child(&mut self) {
        // SAFETY: in the child right after fork(2), GIL held by this thread.
        unsafe { pyo3::ffi::PyOS_AfterFork_Child() }
    }
}

/// The worker's static mounts: --static-map, and --django-static once the
/// app has set Django up.
fn static_files(py: Python<'_>, cfg: &Config) -> Result<Option<Arc<StaticFiles>>, Fail> {
    let mut mounts = cfg.static_map.clone();
    if cfg.django_static {
        mounts.extend(crate::django_static::mount(py, &cfg.root_path)?);
    }
    if mounts.is_empty() {
        return Ok(None);
    }
    let files = StaticFiles::new(&mounts, cfg.static_max_age)
        .map_err(|e| Fail::boot(format!("cannot serve static files: {e}")))?;
    Ok(Some(Arc::new(files)))
}
