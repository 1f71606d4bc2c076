//! `--print-config` output: every setting as "name = value", sorted by name
//! and aligned, values written the way gunicorn prints its Python values
//! (None, True, ['a', 'b']). Reads a `Config`; prints nothing itself.

use crate::resolve::{ClientCerts, Config};
use crate::table::SETTINGS;

/// "name = value" per setting, sorted by name, one per line (each line ends
/// with '\n').
pub fn print_config(cfg: &Config) -> String {
    let mut names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
    names.sort_unstable();
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    let mut out = String::new();
    for name in names {
        let value = printed_value(cfg, name).unwrap_or_else(|| "None".to_string());
        out.push_str(&format!("{name:width$} = {value}\n"));
    }
    out
}

/// The printed value of one setting; `None` for a name this function does
/// not know (a test keeps it in step with the table).
pub(crate) fn printed_value(cfg: &Config, name: &str) -> Option<String> {
    let value = match name {
        "config" => opt(cfg.config_file.as_ref().map(|p| p.display().to_string())),
        "wsgi_app" => opt(cfg.app_uri.clone()),
        "bind" => py_list(cfg.bind.iter().map(ToString::to_string)),
        "backlog" => cfg.backlog.to_string(),
        "threads" => cfg.threads.to_string(),
        "worker_connections" => cfg.worker_connections.to_string(),
        "request_queue" => cfg.request_queue.to_string(),
        "request_buffer" => cfg.request_buffer.to_string(),
        "response_buffer" => cfg.response_buffer.to_string(),
        "header_timeout" => cfg.header_timeout.to_string(),
        "body_timeout" => cfg.body_timeout.to_string(),
        "write_timeout" => cfg.write_timeout.to_string(),
        "workers" => cfg.workers.to_string(),
        "max_worker_memory" => cfg.max_worker_memory.to_string(),
        "reuse_port" => py_bool(cfg.reuse_port),
        "preload_app" => py_bool(cfg.preload_app),
        "no_gc_freeze" => py_bool(cfg.no_gc_freeze),
        "worker_tmp_dir" => opt(cfg.worker_tmp_dir.as_ref().map(|p| p.display().to_string())),
        "reload" => py_bool(cfg.reload),
        "reload_extra_files" => py_list(cfg.reload_extra_files.iter().cloned()),
        "daemon" => py_bool(cfg.daemon),
        "user" => opt(cfg.user.clone()),
        "group" => opt(cfg.group.clone()),
        "umask" => cfg.umask.to_string(),
        "timeout" => cfg.timeout.to_string(),
        "max_requests" => cfg.max_requests.to_string(),
        "max_requests_jitter" => cfg.max_requests_jitter.to_string(),
        "certfile" => opt(cfg.tls.as_ref().map(|t| t.certfile.display().to_string())),
        "keyfile" => opt(cfg
            .tls
            .as_ref()
            .and_then(|t| t.keyfile.as_ref())
            .map(|p| p.display().to_string())),
        "ca_certs" => opt(cfg
            .tls
            .as_ref()
            .and_then(|t| t.ca_certs.as_ref())
            .map(|p| p.display().to_string())),
        "cert_reqs" => match cfg.tls.as_ref().map(|t| t.client_certs) {
            Some(ClientCerts::Optional) => "1",
            Some(ClientCerts::Required) => "2",
            _ => "0",
        }
        .to_string(),
        "tls_min_version" => match cfg.tls.as_ref().is_some_and(|t| t.tls13_only) {
            true => "1.3",
            false => "1.2",
        }
        .to_string(),
        "http" => cfg.http.as_str().to_string(),
        "http2_max_concurrent_streams" => cfg.http2_max_concurrent_streams.to_string(),
        "pidfile" => opt(cfg.pidfile.as_ref().map(|p| p.display().to_string())),
        "keepalive" => cfg.keepalive.to_string(),
        "graceful_timeout" => cfg.graceful_timeout.to_string(),
        // Not changing directory is the same as changing to '.'.
        "chdir" => cfg
            .chdir
            .as_ref()
            .map_or_else(|| ".".to_string(), |p| p.display().to_string()),
        // gunicorn keeps this one as the comma-separated string it was given.
        "pythonpath" => opt((!cfg.pythonpath.is_empty()).then(|| cfg.pythonpath.join(","))),
        "raw_env" => py_list(cfg.raw_env.iter().map(|(k, v)| format!("{k}={v}"))),
        "root_path" => cfg.root_path.clone(),
        "forwarded_allow_ips" => cfg.forwarded_allow_ips.to_string(),
        "proxy_protocol" => py_bool(cfg.proxy_protocol),
        "proxy_allow_ips" => cfg.proxy_allow_ips.to_string(),
        "static_map" => py_list(
            cfg.static_map
                .iter()
                .map(|(p, d)| format!("{}={}", if p.is_empty() { "/" } else { p }, d.display())),
        ),
        "django_static" => py_bool(cfg.django_static),
        "static_max_age" => cfg.static_max_age.to_string(),
        "limit_request_line" => cfg.limit_request_line.to_string(),
        "limit_request_fields" => cfg.limit_request_fields.to_string(),
        "limit_request_field_size" => cfg.limit_request_field_size.to_string(),
        "limit_request_body" => cfg.limit_request_body.to_string(),
        "accesslog" => opt(cfg.accesslog.clone()),
        "access_log_format" => cfg.access_log_format.as_str().to_string(),
        "access_log_skip" => py_list(cfg.access_log_skip.iter().cloned()),
        "request_id" => py_bool(cfg.request_id),
        "metrics_bind" => opt(cfg.metrics_bind.as_ref().map(ToString::to_string)),
        "errorlog" => cfg.errorlog.clone(),
        "loglevel" => cfg.loglevel.as_str().to_string(),
        "check_config" => py_bool(cfg.check_config),
        "print_config" => py_bool(cfg.print_config),
        _ => return None,
    };
    Some(value)
}

fn opt(value: Option<String>) -> String {
    value.unwrap_or_else(|| "None".to_string())
}

fn py_bool(value: bool) -> String {
    if value { "True" } else { "False" }.to_string()
}

fn py_list(items: impl Iterator<Item = String>) -> String {
    let items: Vec<String> = items.map(|s| py_repr(&s)).collect();
    format!("[{}]", items.join(", "))
}

/// Python's `repr()` of a str: single quotes unless the text holds one and
/// no double quote.
fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::resolve::build;

    #[test]
    fn every_setting_has_a_printed_value() {
        let cfg = build(&[], &|_| None).unwrap();
        for setting in SETTINGS {
            assert!(
                printed_value(&cfg, setting.name).is_some(),
                "{} is not printed",
                setting.name
            );
        }
    }

    #[test]
    fn defaults_print_as_the_docs_show_them() {
        let cfg = build(&[], &|_| None).unwrap();
        // The config file default is a file the caller reads if it exists;
        // the resolved value stays None unless a source names one.
        for setting in SETTINGS.iter().filter(|s| s.name != "config") {
            let printed = printed_value(&cfg, setting.name).unwrap();
            // Docs show Python literals: strings quoted, lists and None as is.
            let documented = setting
                .default
                .strip_prefix('\'')
                .and_then(|d| d.strip_suffix('\''));
            assert_eq!(
                printed,
                documented.unwrap_or(setting.default),
                "default of {}",
                setting.name
            );
        }
    }

    #[test]
    fn py_repr_quotes_like_python() {
        assert_eq!(py_repr("a"), "'a'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a'\"b"), "'a\\'\"b'");
        assert_eq!(py_repr("x\ny"), "'x\\ny'");
    }
}
