//! The master's side of --metrics-bind: polls the endpoint's sockets from
//! the master loop and answers from the master's own bookkeeping and the
//! scoreboard. Rendering lives in `exposition` and `status_page`.

use std::io;
use std::time::Instant;

use super::{Master, Worker};
use crate::admin::{Admin, Page, Reply};
use crate::view::{Cause, View, WorkerFacts};
use crate::{exposition, status_page};

/// Bind --metrics-bind, if set, before the first fork.
pub(super) fn bind(cfg: &crate::MasterConfig) -> io::Result<Option<Admin>> {
    let Some((host, port)) = &cfg.metrics_bind else {
        return Ok(None);
    };
    let admin = Admin::bind(host, *port).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot bind --metrics-bind {host}:{port}: {e}"),
        )
    })?;
    if let Ok(addr) = admin.local_addr() {
        log::info!("Metrics at: http://{addr}/metrics, status page at http://{addr}/");
    }
    Ok(Some(admin))
}

impl Master<'_> {
    /// The endpoint's descriptors, to poll beside the workers' pipes.
    pub(super) fn endpoint_fds(&self) -> Vec<libc::pollfd> {
        self.admin.as_ref().map(|a| a.pollfds()).unwrap_or_default()
    }

    /// Serve what the endpoint's clients are ready for, without blocking.
    pub(super) fn serve_endpoint(&mut self) {
        let Some(mut admin) = self.admin.take() else {
            return;
        };
        admin.turn(&mut |page| {
            let view = self.view();
            match page {
                Page::Metrics => Reply {
                    content_type: exposition::CONTENT_TYPE,
                    body: exposition::render(&view),
                },
                Page::Status => Reply {
                    content_type: status_page::CONTENT_TYPE,
                    body: status_page::render(&view),
                },
            }
        });
        self.admin = Some(admin);
    }

    fn view(&self) -> View {
        let now = Instant::now();
        let facts = self
            .workers
            .iter()
            .map(|(&pid, w)| WorkerFacts {
                pid,
                slot: w.slot,
                state: state(w),
                age: now.duration_since(w.spawned),
                baseline: w.baseline,
            })
            .collect();
        View::build(
            &self.board,
            facts,
            self.target,
            self.restarts,
            now.duration_since(self.started),
        )
    }

    /// A worker is gone: count it as a restart when it was replaced (not
    /// when the master stops or TTOU sheds it).
    pub(super) fn count_restart(&mut self, w: &Worker, expected: bool) {
        if self.phase != super::Phase::Running {
            return;
        }
        let cause = match (w.cause, expected) {
            (Some(cause), _) => cause,
            (None, false) => Cause::Crash,
            (None, true) => return,
        };
        self.restarts[cause as usize] += 1;
    }
}

fn state(w: &Worker) -> &'static str {
    if w.kill_at.is_some() {
        "killing"
    } else if w.stopping.is_some() {
        "stopping"
    } else if w.retire {
        "retiring"
    } else if w.ready {
        "serving"
    } else {
        "booting"
    }
}
