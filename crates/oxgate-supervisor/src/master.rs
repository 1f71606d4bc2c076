//! The master loop: one `match` over signals, worker notes and timers;
//! keeps `workers` processes serving, replacing any that die, hang, reach
//! max-requests or are reloaded, with the replacement ready first.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod endpoint;
mod exits;
mod health;

use crate::admin::Admin;
use crate::fork::{fork, Forked, WorkerHost};
use crate::scoreboard::{now_ms, Scoreboard};
use crate::signals::{self, pipe_nonblocking, SignalPipe};
use crate::systemd;
use crate::upgrade;
use crate::view::{Cause, CAUSES};
use crate::{MasterConfig, WorkerContext};

const SLOTS: usize = 512;
/// How long a worker asked for its stacks (SIGABRT) gets before SIGKILL.
const STACK_GRACE: Duration = Duration::from_millis(500);
/// Asks a worker for its Python stacks without ending it (faulthandler).
pub const STACK_SIGNAL: libc::c_int = libc::SIGUSR2;
/// How long INT/QUIT give workers before SIGKILL.
const FAST_GRACE: Duration = Duration::from_secs(2);

struct Worker {
    slot: usize,
    notify: OwnedFd,
    ready: bool,
    /// Replace this worker, then stop it (reload, max-requests, TTOU).
    retire: bool,
    /// Told to stop gracefully at this time.
    stopping: Option<Instant>,
    /// SIGKILL due at this time (after a timeout's stack dump).
    kill_at: Option<Instant>,
    spawned: Instant,
    /// Bytes from the worker's note pipe not yet understood.
    notes: Vec<u8>,
    /// Why the worker could not boot, as it said before exiting.
    boot_error: Option<String>,
    /// Its stacks were dumped for a stuck request already.
    dumped: bool,
    /// Why it is being replaced, once it is.
    cause: Option<Cause>,
    /// Its slot's request count when it took the slot.
    baseline: u64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Graceful(Instant),
    Fast(Instant),
}

struct Master<'a> {
    cfg: MasterConfig,
    host: &'a mut dyn WorkerHost,
    signals: SignalPipe,
    board: Arc<Scoreboard>,
    workers: HashMap<libc::pid_t, Worker>,
    target: usize,
    phase: Phase,
    boot_failures: u32,
    next_spawn: Instant,
    exit_code: i32,
    /// The one line the caller prints when the master gives up.
    exit_message: Option<String>,
    master_pid: libc::pid_t,
    /// The master started by SIGUSR2, while it runs.
    new_master: Option<libc::pid_t>,
    /// Workers forked so far; a worker's age is its number in that count.
    age: u64,
    rng: u64,
    /// systemd hears READY=1 once all workers first serve, and after reloads.
    announce_ready: bool,
    last_memory_check: Instant,
    /// --metrics-bind's endpoint, when on.
    admin: Option<Admin>,
    /// Workers replaced, by `Cause`.
    restarts: [u64; CAUSES.len()],
    started: Instant,
}

/// Run the master until it stops; returns the process exit code.
/// `ready` runs once signals are handled, before the first fork.
/// How the master ended: its exit code, and the one line to print when it
/// gave up (a worker's reason for failing to boot).
pub struct Exit {
    pub code: i32,
    pub message: Option<String>,
    /// A new master (USR2) runs on our sockets: leave their files alone.
    pub handed_over: bool,
}

pub fn run(cfg: MasterConfig, host: &mut dyn WorkerHost, ready: impl FnOnce()) -> io::Result<Exit> {
    let signals = SignalPipe::install()?;
    let board = Arc::new(Scoreboard::new(SLOTS)?);
    let admin = endpoint::bind(&cfg)?;
    if let Some(path) = &cfg.pidfile {
        std::fs::write(path, format!("{}\n", std::process::id()))?;
    }
    ready();
    let target = cfg.workers.clamp(1, SLOTS);
    let mut master = Master {
        host,
        signals,
        board,
        workers: HashMap::new(),
        target,
        phase: Phase::Running,
        boot_failures: 0,
        next_spawn: Instant::now(),
        exit_code: 0,
        exit_message: None,
        age: 0,
        new_master: None,
        master_pid: std::process::id() as libc::pid_t,
        rng: u64::from(std::process::id()) ^ now_ms().rotate_left(17),
        announce_ready: true,
        last_memory_check: Instant::now(),
        admin,
        restarts: [0; CAUSES.len()],
        started: Instant::now(),
        cfg,
    };
    let code = master.run_loop()?;
    let handed_over = master.new_master.is_some();
    if let Some(path) = &master.cfg.pidfile {
        // After an upgrade the pidfile is the new master's; ours is .oldbin.
        let _ = std::fs::remove_file(if handed_over {
            oldbin(path)
        } else {
            path.clone()
        });
    }
    Ok(Exit {
        code,
        message: master.exit_message.take(),
        handed_over,
    })
}

impl Master<'_> {
    fn run_loop(&mut self) -> io::Result<i32> {
        loop {
            self.spawn_as_needed()?;
            self.wait_events();
            for sig in self.signals.drain() {
                self.on_signal(sig);
            }
            self.reap();
            self.check_timeouts();
            self.check_memory();
            match self.phase {
                Phase::Running => {
                    self.rebalance();
                    self.announce();
                }
                Phase::Graceful(deadline) | Phase::Fast(deadline) => {
                    if self.workers.is_empty() {
                        log::info!("Shutting down: master");
                        return Ok(self.exit_code);
                    }
                    if Instant::now() >= deadline {
                        for (&pid, w) in &mut self.workers {
                            if w.kill_at.is_none() {
                                log::warn!(
                                    "Worker (pid:{pid}) still running at the deadline: killing it"
                                );
                                send(pid, libc::SIGKILL);
                                w.kill_at = Some(Instant::now());
                            }
                        }
                    }
                }
            }
        }
    }

    /// Sleep until a signal, a worker note, or the next tick.
    fn wait_events(&mut self) {
        let mut fds = vec![libc::pollfd {
            fd: self.signals.fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let pids: Vec<libc::pid_t> = self.workers.keys().copied().collect();
        for pid in &pids {
            let fd = self.workers[pid].notify.as_raw_fd();
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // The endpoint's sockets last: only their wake-up matters, and
        // `serve_endpoint` tries each of them without blocking anyway.
        fds.extend(self.endpoint_fds());
        // SAFETY: `fds` is a valid, initialised array of its stated length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 250) };
        self.serve_endpoint();
        if n <= 0 {
            return;
        }
        for (pid, pfd) in pids.iter().zip(&fds[1..]) {
            if pfd.revents & libc::POLLIN != 0 {
                self.read_notes(*pid);
            }
        }
    }

    fn read_notes(&mut self, pid: libc::pid_t) {
        let Some(w) = self.workers.get_mut(&pid) else {
            return;
        };
        let mut buf = [0u8; 512];
        loop {
            // SAFETY: reading into a stack buffer of the given length.
            let n = unsafe { libc::read(w.notify.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            match usize::try_from(n) {
                Ok(n) if n > 0 => w.notes.extend_from_slice(&buf[..n]),
                _ => break,
            }
        }
        // Notes: 'R' ready, 'M' max requests reached, 'E' message '\n' why
        // the worker cannot boot.
        while let Some(&b) = w.notes.first() {
            match b {
                b'R' => {
                    w.ready = true;
                    self.boot_failures = 0;
                }
                b'C' => {
                    log::info!("Worker (pid:{pid}) saw its code change: replacing it");
                    w.retire = true;
                    w.cause.get_or_insert(Cause::Reload);
                    // A fix after a failed reload deserves an immediate try.
                    self.boot_failures = 0;
                    self.next_spawn = Instant::now();
                }
                b'M' if !w.retire => {
                    log::info!("Worker (pid:{pid}) reached max requests: replacing it");
                    w.retire = true;
                    w.cause.get_or_insert(Cause::MaxRequests);
                }
                b'E' => {
                    let Some(end) = w.notes.iter().position(|&c| c == b'\n') else {
                        break;
                    };
                    w.boot_error = Some(String::from_utf8_lossy(&w.notes[1..end]).into_owned());
                    w.notes.drain(..end);
                }
                _ => {}
            }
            w.notes.remove(0);
        }
    }

    fn on_signal(&mut self, sig: libc::c_int) {
        match sig {
            libc::SIGCHLD | libc::SIGPIPE => {}
            libc::SIGTERM => self.stop(false),
            libc::SIGINT | libc::SIGQUIT => self.stop(true),
            libc::SIGHUP => {
                log::info!(
                    "Handling signal: hup; reloading with {} new worker(s)",
                    self.target
                );
                systemd::notify("RELOADING=1");
                self.host.reloading();
                self.announce_ready = true;
                for w in self.workers.values_mut() {
                    w.retire = true;
                    w.cause.get_or_insert(Cause::Reload);
                }
            }
            libc::SIGUSR2 => self.upgrade(),
            // gunicorn: stop the workers of a daemonized master (the step
            // after USR2 that leaves the old master idle).
            libc::SIGWINCH if self.cfg.daemon => {
                log::info!("Handling signal: winch; stopping all workers");
                self.target = 0;
            }
            libc::SIGUSR1 => {
                // Reopen first, so this line lands in the new file.
                self.host.reopen_logs();
                log::info!("Handling signal: usr1; reopened log files");
                for &pid in self.workers.keys() {
                    send(pid, libc::SIGUSR1);
                }
            }
            libc::SIGTTIN => {
                if self.target < SLOTS {
                    self.target += 1;
                    self.host.nworkers_changed(self.target, self.target - 1);
                }
                log::info!("Handling signal: ttin; workers: {}", self.target);
            }
            libc::SIGTTOU => {
                let old = self.target;
                self.target = self.target.saturating_sub(1).max(1);
                if self.target != old {
                    self.host.nworkers_changed(self.target, old);
                }
                log::info!("Handling signal: ttou; workers: {}", self.target);
            }
            other => log::info!(
                "Ignoring signal {} (not supported yet)",
                signals::name(other)
            ),
        }
    }

    /// SIGUSR2: a new master from the current binary on our sockets.
    fn upgrade(&mut self) {
        if self.phase != Phase::Running || self.new_master.is_some() {
            log::warn!("Ignoring signal usr2: an upgrade is already running or we are stopping");
            return;
        }
        if let Some(path) = &self.cfg.pidfile {
            let _ = std::fs::rename(path, oldbin(path));
        }
        match upgrade::spawn(self.host, &self.cfg.relaunch) {
            Ok(pid) => {
                log::info!(
                    "Handling signal: usr2; started a new master (pid:{pid}); stop this one (pid:{}) with TERM once it serves",
                    std::process::id()
                );
                self.new_master = Some(pid);
            }
            Err(e) => log::error!("cannot start a new master: {e}"),
        }
    }

    fn stop(&mut self, fast: bool) {
        let now = Instant::now();
        let (phase, sig) = if fast {
            (Phase::Fast(now + FAST_GRACE), libc::SIGINT)
        } else {
            (
                Phase::Graceful(now + self.cfg.graceful_timeout),
                libc::SIGTERM,
            )
        };
        // A second, faster signal may shorten a graceful stop, never lengthen.
        if matches!((self.phase, phase), (Phase::Fast(_), Phase::Graceful(_))) {
            return;
        }
        log::info!("Handling signal: {}", if fast { "int" } else { "term" });
        systemd::notify("STOPPING=1");
        if self.phase == Phase::Running {
            self.host.stopping(self.new_master.is_some());
        }
        self.phase = phase;
        for (&pid, w) in &mut self.workers {
            w.stopping.get_or_insert(now);
            send(pid, sig);
        }
    }

    /// Workers that count toward the target. One being killed for a
    /// timeout still counts until reaped, so its stack dump comes first.
    fn counted(&self) -> usize {
        self.workers
            .values()
            .filter(|w| !w.retire && w.stopping.is_none())
            .count()
    }

    /// Start workers up to the target (after a backoff if boots fail).
    fn spawn_as_needed(&mut self) -> io::Result<()> {
        if self.phase != Phase::Running {
            return Ok(());
        }
        while self.counted() < self.target && Instant::now() >= self.next_spawn {
            self.spawn()?;
        }
        Ok(())
    }

    fn spawn(&mut self) -> io::Result<()> {
        let used: Vec<usize> = self.workers.values().map(|w| w.slot).collect();
        let Some(slot) = (0..SLOTS).find(|s| !used.contains(s)) else {
            return Ok(());
        };
        self.board.reset(slot);
        let baseline = self.board.slot_requests(slot);
        let (read, write) = pipe_nonblocking()?;
        let max_requests = match self.cfg.max_requests {
            0 => 0,
            n => n + self.jitter(),
        };
        self.age += 1;
        self.host.pre_fork(self.age);
        match fork(self.host)? {
            Forked::Parent(pid) => {
                drop(write);
                let now = Instant::now();
                self.workers.insert(
                    pid,
                    Worker {
                        slot,
                        notify: read,
                        ready: false,
                        retire: false,
                        stopping: None,
                        kill_at: None,
                        spawned: now,
                        notes: Vec::new(),
                        boot_error: None,
                        dumped: false,
                        cause: None,
                        baseline,
                    },
                );
            }
            Forked::Child => {
                drop(read);
                // The child owns nothing of the master but its worker fds.
                let signals = std::mem::replace(&mut self.signals, SignalPipe::placeholder());
                signals.close_in_child();
                // Nor the metrics endpoint: it must close with the master.
                drop(self.admin.take());
                // A master killed outright must not leave its workers behind:
                // the kernel sends TERM (a graceful stop) when it dies.
                // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number.
                unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
                // SAFETY: getppid cannot fail.
                if unsafe { libc::getppid() } != self.master_pid {
                    // It died between fork and prctl.
                    // SAFETY: ending this child right away.
                    unsafe { libc::_exit(0) };
                }
                self.host.after_fork_child();
                let ctx = WorkerContext {
                    age: self.age,
                    scoreboard: self.board.clone(),
                    slot,
                    max_requests,
                    notify: write,
                };
                let code = self.host.run_worker(ctx);
                // SAFETY: ending the child here is the point: it must never
                // return into the master's loop.
                unsafe { libc::_exit(code) };
            }
        }
        Ok(())
    }

    fn jitter(&mut self) -> u64 {
        if self.cfg.max_requests_jitter == 0 {
            return 0;
        }
        // xorshift: spreading restarts needs no cryptographic quality.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % (self.cfg.max_requests_jitter + 1)
    }

    /// Stop retiring workers once their replacements can carry the load,
    /// and extra workers beyond the target.
    fn rebalance(&mut self) {
        let now = Instant::now();
        let ready_new = self
            .workers
            .values()
            .filter(|w| w.ready && !w.retire && w.stopping.is_none() && w.kill_at.is_none())
            .count();
        let mut retiring: Vec<(libc::pid_t, bool, Instant)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.retire && w.stopping.is_none() && w.kill_at.is_none())
            .map(|(&pid, w)| (pid, w.ready, w.spawned))
            .collect();
        retiring.sort_by_key(|&(_, _, spawned)| spawned);
        let mut serving = ready_new + retiring.iter().filter(|r| r.1).count();
        for (pid, ready, _) in retiring {
            // Never drop below the target while replacements boot.
            if ready && serving <= self.target {
                continue;
            }
            self.stop_worker(pid, now);
            if ready {
                serving -= 1;
            }
        }
        // TTOU: too many counted workers; stop the oldest.
        let mut counted: Vec<(libc::pid_t, Instant)> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.retire && w.stopping.is_none() && w.kill_at.is_none())
            .map(|(&pid, w)| (pid, w.spawned))
            .collect();
        counted.sort_by_key(|&(_, spawned)| spawned);
        let extra = counted.len().saturating_sub(self.target);
        for &(pid, _) in counted.iter().take(extra) {
            self.stop_worker(pid, now);
        }
    }

    /// READY=1 to systemd once the target number of workers serve and no
    /// old ones remain (first start, end of a reload).
    fn announce(&mut self) {
        if !self.announce_ready {
            return;
        }
        let ready = self
            .workers
            .values()
            .filter(|w| w.ready && !w.retire && w.stopping.is_none())
            .count();
        let old = self
            .workers
            .values()
            .any(|w| w.retire || w.stopping.is_some());
        if ready >= self.target && !old {
            self.announce_ready = false;
            let pid = std::process::id();
            systemd::notify(&format!(
                "READY=1\nSTATUS=serving with {ready} worker(s)\nMAINPID={pid}"
            ));
        }
    }
}

fn send(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill(2) on a child pid we have not reaped yet.
    unsafe { libc::kill(pid, sig) };
}

/// Where the old master's pidfile goes during an upgrade (gunicorn's name).
fn oldbin(path: &std::path::Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".oldbin");
    name.into()
}
