//! What a worker's exit means: reaped without blocking, logged with its
//! cause, counted, and judged: an expected stop, a crash to replace after a
//! growing delay, or a boot failure that stops the master (nothing serves)
//! or keeps the old workers (a reload whose code does not load).

use std::time::{Duration, Instant};

use super::{oldbin, Master, Phase, Worker};
use crate::signals;
use crate::{EXIT_APP, EXIT_BOOT};

impl Master<'_> {
    pub(super) fn reap(&mut self) {
        loop {
            let mut status = 0;
            // SAFETY: waitpid with WNOHANG writes only to `status`.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                return;
            }
            // What it said before it died (why it could not boot) comes first.
            self.read_notes(pid);
            let Some(w) = self.workers.remove(&pid) else {
                if Some(pid) == self.new_master {
                    self.new_master = None;
                    log::error!("The new master (pid:{pid}) exited; this one goes on serving");
                    if let Some(path) = &self.cfg.pidfile {
                        let _ = std::fs::write(path, format!("{}\n", std::process::id()));
                        let _ = std::fs::remove_file(oldbin(path));
                    }
                }
                continue;
            };
            self.on_exit(pid, &w, status);
            self.host.child_exit(pid);
        }
    }

    fn on_exit(&mut self, pid: libc::pid_t, w: &Worker, status: libc::c_int) {
        let expected = w.stopping.is_some() || w.kill_at.is_some() || self.phase != Phase::Running;
        let cause = if libc::WIFEXITED(status) {
            format!("exited with code {}", libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            format!(
                "was killed by signal {}",
                signals::name(libc::WTERMSIG(status))
            )
        } else {
            "ended".to_owned()
        };
        self.count_restart(w, expected);
        if expected {
            log::info!("Worker (pid:{pid}) {cause}");
            return;
        }
        log::error!("Worker (pid:{pid}) {cause}");
        if w.ready {
            return;
        }
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            0
        };
        let serving = self.workers.values().any(|o| o.ready);
        if (code == EXIT_APP || code == EXIT_BOOT) && !serving {
            let what = if code == EXIT_APP {
                "the application could not be loaded"
            } else {
                "it could not start"
            };
            log::error!("Worker (pid:{pid}) failed to boot: {what}; stopping");
            self.exit_code = code;
            self.exit_message = Some(w.boot_error.clone().unwrap_or_else(|| what.to_owned()));
            self.stop(false);
            return;
        }
        if code == EXIT_APP || code == EXIT_BOOT {
            // A reload whose new code does not load: keep the old workers.
            let why = w.boot_error.as_deref().unwrap_or("it could not start");
            log::error!("New worker failed to boot ({why}): keeping the running workers");
            for o in self.workers.values_mut() {
                o.retire = false;
            }
        }
        self.boot_failures += 1;
        let delay = Duration::from_millis(100 << self.boot_failures.min(7));
        self.next_spawn = Instant::now() + delay.min(Duration::from_secs(10));
    }
}
