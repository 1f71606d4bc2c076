//! The master's watch over live workers: past --max-worker-memory they are
//! replaced, past --timeout their Python stacks are asked for and they are
//! killed (or recycled, when other threads still serve), and a worker that
//! does not stop within --graceful-timeout is killed. Only timers and the
//! scoreboard are read here; the loop itself is master.rs.

use std::time::{Duration, Instant};

use super::{send, Master, Phase, STACK_GRACE, STACK_SIGNAL};
use crate::memory::rss_bytes;
use crate::scoreboard::now_ms;
use crate::view::Cause;

impl Master<'_> {
    /// --max-worker-memory: a worker past the limit is replaced, its
    /// successor ready first. Read about once a second: a file read per
    /// worker is cheap at that rate.
    pub(super) fn check_memory(&mut self) {
        let limit = self.cfg.max_worker_memory;
        if limit == 0
            || self.phase != Phase::Running
            || self.last_memory_check.elapsed() < Duration::from_secs(1)
        {
            return;
        }
        self.last_memory_check = Instant::now();
        for (&pid, w) in &mut self.workers {
            if !w.ready || w.retire || w.stopping.is_some() {
                continue;
            }
            if let Some(rss) = rss_bytes(pid).filter(|&rss| rss > limit) {
                log::warn!(
                    "Worker (pid:{pid}) uses {} MiB, over --max-worker-memory {} MiB: replacing it",
                    rss >> 20,
                    limit >> 20
                );
                w.retire = true;
                w.cause.get_or_insert(Cause::Memory);
            }
        }
    }

    pub(super) fn stop_worker(&mut self, pid: libc::pid_t, now: Instant) {
        if let Some(w) = self.workers.get_mut(&pid) {
            w.stopping = Some(now);
            send(pid, libc::SIGTERM);
        }
    }

    pub(super) fn check_timeouts(&mut self) {
        let now = Instant::now();
        let now_ms = now_ms();
        let graceful = self.cfg.graceful_timeout;
        for (&pid, w) in &mut self.workers {
            if let Some(at) = w.kill_at {
                if now >= at {
                    send(pid, libc::SIGKILL);
                    w.kill_at = Some(now + Duration::from_secs(3600));
                }
                continue;
            }
            if let Some(since) = w.stopping {
                if self.phase == Phase::Running && now.duration_since(since) > graceful {
                    log::warn!(
                        "Worker (pid:{pid}) did not stop within the graceful timeout: killing it"
                    );
                    send(pid, libc::SIGKILL);
                    w.kill_at = Some(now + Duration::from_secs(3600));
                }
                continue;
            }
            let Some(limit) = self.cfg.timeout else {
                continue;
            };
            if !w.ready {
                continue;
            }
            let limit_ms = limit.as_millis() as u64;
            let running = self.board.oldest_request(w.slot);
            let stuck = match &running {
                Some((since, what)) if now_ms.saturating_sub(*since) > limit_ms => {
                    Some(what.clone())
                }
                _ => None,
            };
            let silent = now_ms.saturating_sub(self.board.last_heartbeat(w.slot)) > limit_ms;
            if stuck.is_none() && !silent {
                continue;
            }
            if let (Some(what), false, true) = (&stuck, silent, self.cfg.threads > 1) {
                // Its other threads still serve: its client got a 504 from
                // the worker itself; dump the stacks and recycle gracefully.
                if !w.dumped {
                    log::error!(
                        "Worker (pid:{pid}) timed out after {}s on {what} (answered 504); its Python stacks follow, then it is replaced gracefully",
                        limit.as_secs()
                    );
                    send(pid, STACK_SIGNAL);
                    w.dumped = true;
                    w.retire = true;
                    w.cause.get_or_insert(Cause::Timeout);
                }
                continue;
            }
            // An app call on the I/O thread (--threads 1) stops the
            // heartbeat too, a moment before it counts as stuck: name it.
            let on = match stuck.as_ref().or(running.as_ref().map(|(_, what)| what)) {
                Some(what) => format!(" on {what}"),
                None => " (no heartbeat)".to_owned(),
            };
            log::error!(
                "Worker (pid:{pid}) timed out after {}s{on}; its Python stacks follow, then it is killed and replaced",
                limit.as_secs()
            );
            send(pid, libc::SIGABRT);
            w.kill_at = Some(now + STACK_GRACE);
            w.cause = Some(Cause::Timeout);
        }
    }
}
