//! GET /: a `View` as one self-contained HTML page (inline CSS, no script,
//! no external assets) that reloads itself every 2 seconds. Everything a
//! request supplied (paths, methods) is HTML-escaped. Text only, no I/O.

use std::fmt::Write;
use std::time::Duration;

use crate::view::{View, CAUSES};

pub(crate) const CONTENT_TYPE: &str = "text/html; charset=utf-8";

const STYLE: &str = "\
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;\
background:#f5f6f8;color:#1d2330}\
header{background:#1d2330;color:#fff;padding:14px 24px;display:flex;\
align-items:baseline;gap:18px;flex-wrap:wrap}\
header h1{font-size:20px;margin:0}header span{color:#aab3c5}\
main{padding:8px 24px 24px;max-width:1200px}\
.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}\
.card{background:#fff;border-radius:8px;padding:10px 16px;min-width:120px;\
box-shadow:0 1px 2px rgba(0,0,0,.08)}\
.card b{display:block;font-size:22px}.card small{color:#5b6475}\
h2{font-size:16px;margin:22px 0 8px}\
table{border-collapse:collapse;width:100%;background:#fff;border-radius:8px;\
overflow:hidden;box-shadow:0 1px 2px rgba(0,0,0,.08)}\
th,td{text-align:left;padding:6px 12px;border-bottom:1px solid #eceef2;\
white-space:nowrap}\
th{background:#fafbfc;color:#5b6475;font-weight:600}\
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}\
td.path{font-family:ui-monospace,Menlo,Consolas,monospace;white-space:normal;\
word-break:break-all}\
.state{padding:1px 8px;border-radius:10px;font-size:12px;background:#e3e7ee}\
.serving{background:#d8f3e0;color:#12632f}.booting{background:#fff1c7;color:#7a5a00}\
.stopping,.retiring,.killing{background:#fde0e0;color:#8a1f1f}\
.s5{color:#b3261e;font-weight:600}.s4{color:#9a6700}\
.empty{color:#5b6475;font-style:italic}";

/// `<`, `>`, `&`, `"` and `'` as entities.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn human_ms(ms: u64) -> String {
    match ms {
        0..=999 => format!("{ms} ms"),
        _ => format!("{:.2} s", ms as f64 / 1000.0),
    }
}

/// A request's duration: fractions of a millisecond still show.
fn human_us(us: u64) -> String {
    match us {
        0..=9_999 => format!("{:.2} ms", us as f64 / 1000.0),
        _ => human_ms(us / 1000),
    }
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or_else(
        || "-".into(),
        |b| format!("{:.1} MiB", b as f64 / 1048576.0),
    )
}

/// "GET /path" into its method and path.
fn split(what: &str) -> (&str, &str) {
    what.split_once(' ').unwrap_or((what, ""))
}

pub(crate) fn render(v: &View) -> String {
    let mut o = String::with_capacity(16 * 1024);
    let t = &v.totals;
    let answered: u64 = t.requests.iter().flatten().sum();
    let errors: u64 = t.requests.iter().map(|row| row[4]).sum();
    let restarts: u64 = v.restarts.iter().sum();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"2\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>oxgate status</title><style>{STYLE}</style></head><body>\
         <header><h1>oxgate</h1><span>master pid {}</span><span>up {}</span>\
         <span>refreshes every 2 s</span></header><main><div class=\"cards\">",
        v.master_pid,
        human_duration(v.uptime)
    );
    for (label, value) in [
        ("workers", format!("{} / {}", v.workers.len(), v.target)),
        ("requests", answered.to_string()),
        ("in flight", v.in_flight.to_string()),
        ("5xx", errors.to_string()),
        ("refused (503)", t.refused.to_string()),
        ("restarts", restarts.to_string()),
    ] {
        let _ = write!(
            o,
            "<div class=\"card\"><b>{value}</b><small>{label}</small></div>"
        );
    }
    o.push_str("</div>");
    workers(&mut o, v);
    in_flight(&mut o, v);
    slowest(&mut o, v);
    let causes: Vec<String> = CAUSES
        .iter()
        .zip(&v.restarts)
        .map(|(c, n)| format!("{c}: {n}"))
        .collect();
    let _ = writeln!(
        o,
        "<h2>Worker restarts</h2><p>{}</p></main></body></html>",
        causes.join(" &middot; ")
    );
    o
}

fn workers(o: &mut String, v: &View) {
    o.push_str(
        "<h2>Workers</h2><table><tr><th>slot</th><th>pid</th><th>state</th><th>age</th>\
         <th class=\"num\">requests served</th><th class=\"num\">in flight</th>\
         <th class=\"num\">RSS</th></tr>",
    );
    for w in &v.workers {
        let f = &w.facts;
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td><span class=\"state {state}\">{state}</span></td>\
             <td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td></tr>",
            f.slot,
            f.pid,
            human_duration(f.age),
            w.served,
            w.in_flight,
            mib(w.rss),
            state = f.state,
        );
    }
    if v.workers.is_empty() {
        o.push_str("<tr><td colspan=\"7\" class=\"empty\">no workers</td></tr>");
    }
    o.push_str("</table>");
}

fn in_flight(o: &mut String, v: &View) {
    o.push_str(
        "<h2>Requests in the app now</h2><table><tr><th>worker pid</th><th>method</th>\
         <th>path</th><th class=\"num\">elapsed</th></tr>",
    );
    let mut any = false;
    for w in &v.workers {
        for (elapsed, what) in &w.running {
            any = true;
            let (method, path) = split(what);
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td class=\"path\">{}</td>\
                 <td class=\"num\">{}</td></tr>",
                w.facts.pid,
                escape(method),
                escape(path),
                human_ms(*elapsed)
            );
        }
    }
    if !any {
        o.push_str("<tr><td colspan=\"4\" class=\"empty\">none</td></tr>");
    }
    o.push_str("</table>");
}

fn slowest(o: &mut String, v: &View) {
    o.push_str(
        "<h2>Slowest requests of the last minute</h2><table><tr><th class=\"num\">took</th>\
         <th>status</th><th>method</th><th>path</th><th>worker pid</th>\
         <th class=\"num\">ago</th></tr>",
    );
    for (s, pid) in &v.slowest {
        let (method, path) = split(&s.what);
        let _ = write!(
            o,
            "<tr><td class=\"num\">{}</td><td class=\"s{}\">{}</td><td>{}</td>\
             <td class=\"path\">{}</td><td>{pid}</td><td class=\"num\">{}</td></tr>",
            human_us(s.took_us),
            s.status / 100,
            s.status,
            escape(method),
            escape(path),
            human_ms(v.now_ms.saturating_sub(s.at_ms)),
        );
    }
    if v.slowest.is_empty() {
        o.push_str("<tr><td colspan=\"6\" class=\"empty\">none yet</td></tr>");
    }
    o.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_request_text_is_escaped() {
        assert_eq!(
            escape("/<script>alert('x')</script>&\""),
            "/&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }

    #[test]
    fn durations_read_like_a_person_writes_them() {
        assert_eq!(human_duration(Duration::from_secs(75)), "1m 15s");
        assert_eq!(human_duration(Duration::from_secs(90_000)), "1d 1h");
        assert_eq!(human_ms(1500), "1.50 s");
        assert_eq!(human_us(420), "0.42 ms");
        assert_eq!(human_us(25_000), "25 ms");
        assert_eq!(split("GET /a b"), ("GET", "/a b"));
    }
}
