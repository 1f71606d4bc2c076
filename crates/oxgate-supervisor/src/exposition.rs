//! GET /metrics: a `View` in the Prometheus text exposition format 0.0.4
//! (HELP and TYPE lines, one sample a line, histograms as cumulative
//! `_bucket{le=...}` series with `_sum` and `_count`). Text only, no I/O.

use std::fmt::Write;

use crate::counters::{
    HistogramTotals, CLASSES, LATENCY_BOUNDS_US, METHODS, QUEUE_BOUNDS_US, SLOW_KINDS,
};
use crate::view::{View, CAUSES};

pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) fn render(v: &View) -> String {
    let mut out = String::with_capacity(8192);
    let t = &v.totals;
    head(
        &mut out,
        "oxgate_requests_total",
        "counter",
        "Requests answered, by method and status class (counted once the head is read).",
    );
    for (m, row) in METHODS.iter().zip(&t.requests) {
        for (class, n) in (1..=CLASSES).zip(row) {
            let _ = writeln!(
                out,
                "oxgate_requests_total{{method=\"{m}\",status=\"{class}xx\"}} {n}"
            );
        }
    }
    histogram(
        &mut out,
        "oxgate_request_duration_seconds",
        "Time from a request's head being read to the end of its response.",
        &LATENCY_BOUNDS_US,
        &t.latency,
    );
    histogram(
        &mut out,
        "oxgate_request_queue_wait_seconds",
        "Time from a request being ready (head and buffered body read) to an app thread \
         starting it.",
        &QUEUE_BOUNDS_US,
        &t.queue_wait,
    );
    gauge(
        &mut out,
        "oxgate_requests_in_flight",
        "Requests whose head was read and whose response has not ended.",
        v.in_flight,
    );
    gauge(
        &mut out,
        "oxgate_workers_alive",
        "Worker processes running (booting, serving or stopping).",
        v.workers.len() as u64,
    );
    gauge(
        &mut out,
        "oxgate_workers_target",
        "Worker processes the master keeps (--workers, TTIN/TTOU).",
        v.target as u64,
    );
    head(
        &mut out,
        "oxgate_worker_restarts_total",
        "counter",
        "Workers replaced, by cause.",
    );
    for (cause, n) in CAUSES.iter().zip(&v.restarts) {
        let _ = writeln!(out, "oxgate_worker_restarts_total{{cause=\"{cause}\"}} {n}");
    }
    head(
        &mut out,
        "oxgate_worker_rss_bytes",
        "gauge",
        "Resident memory of each worker, by scoreboard slot.",
    );
    for w in &v.workers {
        if let Some(rss) = w.rss {
            let _ = writeln!(
                out,
                "oxgate_worker_rss_bytes{{worker=\"{}\"}} {rss}",
                w.facts.slot
            );
        }
    }
    counter(
        &mut out,
        "oxgate_refused_requests_total",
        "Requests refused with 503 because the worker's request queue was full.",
        t.refused,
    );
    counter(
        &mut out,
        "oxgate_invalid_requests_total",
        "Connections answered with a 4xx before a whole request head arrived.",
        t.invalid,
    );
    head(
        &mut out,
        "oxgate_slow_clients_total",
        "counter",
        "Clients cut off for slowness: header and body are 408s, write a response write \
         that made no progress for --write-timeout.",
    );
    for (kind, n) in SLOW_KINDS.iter().zip(&t.slow) {
        let _ = writeln!(out, "oxgate_slow_clients_total{{kind=\"{kind}\"}} {n}");
    }
    out
}

fn head(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: u64) {
    head(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    head(out, name, "counter", help);
    let _ = writeln!(out, "{name} {value}");
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

fn histogram(out: &mut String, name: &str, help: &str, bounds: &[u64], h: &HistogramTotals) {
    head(out, name, "histogram", help);
    let mut cumulative = 0;
    for (bound, n) in bounds.iter().zip(&h.buckets) {
        cumulative += n;
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {cumulative}",
            seconds(*bound)
        );
    }
    let count = h.count();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {}", seconds(h.sum_us));
    let _ = writeln!(out, "{name}_count {count}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::counters::Totals;
    use std::time::Duration;

    fn view(totals: Totals) -> View {
        View {
            totals,
            workers: Vec::new(),
            target: 2,
            restarts: [1, 0, 0, 0, 3],
            in_flight: 0,
            slowest: Vec::new(),
            master_pid: 1,
            uptime: Duration::ZERO,
            now_ms: 0,
        }
    }

    #[test]
    fn histogram_buckets_are_cumulative_and_end_with_the_count() {
        let mut t = Totals::default();
        t.latency.buckets[0] = 2;
        t.latency.buckets[3] = 1;
        t.latency.buckets[14] = 4;
        t.latency.sum_us = 1_500_000;
        let text = render(&view(t));
        assert!(text.contains("oxgate_request_duration_seconds_bucket{le=\"0.001\"} 2\n"));
        assert!(text.contains("oxgate_request_duration_seconds_bucket{le=\"0.01\"} 3\n"));
        assert!(text.contains("oxgate_request_duration_seconds_bucket{le=\"30\"} 3\n"));
        assert!(text.contains("oxgate_request_duration_seconds_bucket{le=\"+Inf\"} 7\n"));
        assert!(text.contains("oxgate_request_duration_seconds_sum 1.5\n"));
        assert!(text.contains("oxgate_request_duration_seconds_count 7\n"));
        assert!(text.contains("oxgate_request_queue_wait_seconds_bucket{le=\"0.0001\"} 0\n"));
    }

    #[test]
    fn every_label_set_is_listed_even_at_zero() {
        let mut t = Totals::default();
        t.requests[0][1] = 5;
        let text = render(&view(t));
        assert!(text.contains("oxgate_requests_total{method=\"GET\",status=\"2xx\"} 5\n"));
        assert!(text.contains("oxgate_requests_total{method=\"OTHER\",status=\"5xx\"} 0\n"));
        assert!(text.contains("oxgate_worker_restarts_total{cause=\"reload\"} 3\n"));
        assert!(text.contains("oxgate_slow_clients_total{kind=\"write\"} 0\n"));
        assert!(text.contains("# TYPE oxgate_requests_in_flight gauge\n"));
    }
}
