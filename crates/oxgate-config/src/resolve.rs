//! From layers to a validated `Config`: merge (later source wins, a list
//! replaces the earlier list whole), apply defaults (PORT and SCRIPT_NAME come
//! from the environment, as in gunicorn), type every value. Also renders
//! `--print-config`. Checks only that --chdir exists; no other I/O.

use std::path::PathBuf;

mod transport;

pub use transport::{ClientCerts, HttpVersions, TlsConfig};

use crate::access_format::AccessLogFormat;
use crate::bind::Bind;
use oxgate_proto::TrustList;

/// gunicorn's default for both allow lists.
const LOOPBACK: &str = "127.0.0.1,::1";
use crate::error::ConfigError;
use crate::layer::Layer;
use crate::table::{self, Kind, Setting, SETTINGS};
use crate::value::{self, LogLevel, Problem, Source};

/// gunicorn's hard ceilings (gunicorn/http/message.py), applied by
/// `Config::request_limits`.
const MAX_REQUEST_LINE: usize = 8190;
const MAX_HEADERS: usize = 32768;
const DEFAULT_MAX_HEADERFIELD_SIZE: usize = 8190;

/// The validated settings, every default applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Positional `MODULE[:VARIABLE]` (or `wsgi_app` in the config file).
    pub app_uri: Option<String>,
    pub config_file: Option<PathBuf>,
    /// Never empty.
    pub bind: Vec<Bind>,
    /// Worker processes; `WEB_CONCURRENCY` when not set.
    pub workers: usize,
    pub threads: usize,
    /// Connections a worker holds at once.
    pub worker_connections: usize,
    /// Requests that may wait for an app thread; 0 = 64 per thread (see
    /// `queue_size()`).
    pub request_queue: usize,
    /// Bytes of request body read before the app is called.
    pub request_buffer: usize,
    /// Bytes of response an app thread may hand over ahead of the client.
    pub response_buffer: usize,
    pub backlog: i32,
    /// Seconds; 0 disables keep-alive.
    pub keepalive: u64,
    /// Seconds for a whole request head.
    pub header_timeout: u64,
    /// Seconds a request body may stall.
    pub body_timeout: u64,
    /// Seconds a response write may stall.
    pub write_timeout: u64,
    /// Seconds.
    pub graceful_timeout: u64,
    /// Seconds a request may run before its worker is replaced; 0 = off.
    pub timeout: u64,
    /// Requests before a worker is replaced; 0 = off.
    pub max_requests: u64,
    pub max_requests_jitter: u64,
    pub pidfile: Option<PathBuf>,
    /// MiB of resident memory before a worker is replaced; 0 = off.
    pub max_worker_memory: u64,
    pub reuse_port: bool,
    pub preload_app: bool,
    /// --no-gc-freeze: leave the loaded app's objects to the collector.
    pub no_gc_freeze: bool,
    /// Checked to be a directory; otherwise unused (see the setting's doc).
    pub worker_tmp_dir: Option<PathBuf>,
    pub reload: bool,
    pub reload_extra_files: Vec<String>,
    pub daemon: bool,
    pub user: Option<String>,
    pub group: Option<String>,
    pub umask: u32,
    /// Checked to exist as a directory; `None` = stay where we are.
    pub chdir: Option<PathBuf>,
    pub pythonpath: Vec<String>,
    pub raw_env: Vec<(String, String)>,
    /// Empty or "/prefix" without trailing slash.
    pub root_path: String,
    /// Peers whose X-Forwarded-*/Forwarded headers are believed.
    pub forwarded_allow_ips: TrustList,
    pub proxy_protocol: bool,
    /// Peers that may send a PROXY protocol header.
    pub proxy_allow_ips: TrustList,
    /// (URL prefix without trailing slash, directory checked to exist).
    pub static_map: Vec<(String, PathBuf)>,
    pub django_static: bool,
    /// Seconds.
    pub static_max_age: u64,
    /// As configured; 0 means unlimited. Use `request_limits()` for the
    /// bounds to enforce.
    pub limit_request_line: usize,
    /// As configured; 0 means gunicorn's ceiling. See `request_limits()`.
    pub limit_request_fields: usize,
    /// As configured; 0 means no per-field limit. See `request_limits()`.
    pub limit_request_field_size: usize,
    /// Bytes; 0 = no limit.
    pub limit_request_body: u64,
    /// `None` = no access log; "-" = stdout.
    pub accesslog: Option<String>,
    pub access_log_format: AccessLogFormat,
    /// URL paths not written to the access log.
    pub access_log_skip: Vec<String>,
    /// Give each request an id (X-Request-ID).
    pub request_id: bool,
    /// HTTPS on the TCP listeners; None = plain HTTP.
    pub tls: Option<TlsConfig>,
    /// --http: which HTTP versions the listeners speak.
    pub http: HttpVersions,
    /// Streams one HTTP/2 connection may have open at once.
    pub http2_max_concurrent_streams: u32,
    /// Where the master serves /metrics and the status page; None = off.
    pub metrics_bind: Option<Bind>,
    /// "-" = stderr.
    pub errorlog: String,
    pub loglevel: LogLevel,
    /// Also true when `print_config` is (gunicorn: print implies check).
    pub check_config: bool,
    pub print_config: bool,
}

/// The request-head bounds to enforce, resolved from the three limit
/// settings exactly as gunicorn resolves them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Request line bytes (without CRLF); `usize::MAX` = unlimited (0 set).
    pub max_request_line: usize,
    /// Header field count, 1..=32768.
    pub max_headers: usize,
    /// Bytes of one field line; `usize::MAX` = unlimited (0 set).
    pub max_header_field_size: usize,
    /// Bytes of the whole header block, which stays bounded even when the
    /// per-field limit is off.
    pub max_header_bytes: usize,
}

impl Config {
    /// gunicorn's rules: line 0 is unlimited and anything above 8190 is 8190;
    /// fields 0 or above 32768 is 32768; field size 0 is unlimited per field,
    /// with the header block capped at fields x (size or 8190, + 2) + 4.
    pub fn request_limits(&self) -> RequestLimits {
        let max_request_line = match self.limit_request_line {
            0 => usize::MAX,
            n => n.min(MAX_REQUEST_LINE),
        };
        let max_headers = match self.limit_request_fields {
            0 => MAX_HEADERS,
            n => n.min(MAX_HEADERS),
        };
        let (max_header_field_size, per_field) = match self.limit_request_field_size {
            0 => (usize::MAX, DEFAULT_MAX_HEADERFIELD_SIZE),
            n => (n, n),
        };
        let max_header_bytes = max_headers
            .saturating_mul(per_field.saturating_add(2))
            .saturating_add(4);
        RequestLimits {
            max_request_line,
            max_headers,
            max_header_field_size,
            max_header_bytes,
        }
    }

    /// The per-worker request queue: as set, or 64 per app thread.
    pub fn queue_size(&self) -> usize {
        match self.request_queue {
            0 => self.threads.saturating_mul(64),
            n => n,
        }
    }
}

/// Merge layers (later wins; a list setting like bind given in a later layer
/// replaces the earlier list entirely), apply defaults, validate. `getenv`
/// supplies PORT and SCRIPT_NAME.
pub fn build(
    layers: &[Layer],
    getenv: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let m = Merged { layers };
    let print_config = m.flag("print_config")?;
    Ok(Config {
        app_uri: m.text("wsgi_app")?,
        config_file: m.text("config")?.map(PathBuf::from),
        bind: m.binds(getenv)?,
        workers: to_usize(m.workers(getenv)?),
        threads: to_usize(m.int("threads", 1)?),
        worker_connections: to_usize(m.int("worker_connections", 1000)?),
        request_queue: to_usize(m.int("request_queue", 0)?),
        request_buffer: to_usize(m.int("request_buffer", 64 * 1024)?),
        response_buffer: to_usize(m.int("response_buffer", 1024 * 1024)?),
        backlog: i32::try_from(m.int("backlog", 2048)?).unwrap_or(i32::MAX),
        keepalive: m.int("keepalive", 2)?,
        header_timeout: m.int("header_timeout", 10)?,
        body_timeout: m.int("body_timeout", 30)?,
        write_timeout: m.int("write_timeout", 30)?,
        graceful_timeout: m.int("graceful_timeout", 30)?,
        timeout: m.int("timeout", 30)?,
        max_requests: m.int("max_requests", 0)?,
        max_requests_jitter: m.int("max_requests_jitter", 0)?,
        pidfile: m.text("pidfile")?.map(PathBuf::from),
        max_worker_memory: m.int("max_worker_memory", 0)?,
        reuse_port: m.flag("reuse_port")?,
        preload_app: m.flag("preload_app")?,
        no_gc_freeze: m.flag("no_gc_freeze")?,
        worker_tmp_dir: m.existing_dir("worker_tmp_dir")?,
        reload: m.flag("reload")?,
        reload_extra_files: m.list("reload_extra_files"),
        daemon: m.flag("daemon")?,
        user: m.text("user")?,
        group: m.text("group")?,
        umask: m.umask()?,
        chdir: m.chdir()?,
        pythonpath: m.comma_list("pythonpath"),
        raw_env: m.each("raw_env", value::parse_env_pair)?,
        root_path: m.root_path(getenv)?,
        forwarded_allow_ips: m.trust_list(
            "forwarded_allow_ips",
            Some("FORWARDED_ALLOW_IPS"),
            getenv,
        )?,
        proxy_protocol: m.flag("proxy_protocol")?,
        proxy_allow_ips: m.trust_list("proxy_allow_ips", None, getenv)?,
        static_map: m.static_map()?,
        django_static: m.flag("django_static")?,
        static_max_age: m.int("static_max_age", 60)?,
        limit_request_line: to_usize(m.int("limit_request_line", 4094)?),
        limit_request_fields: to_usize(m.int("limit_request_fields", 100)?),
        limit_request_field_size: to_usize(m.int("limit_request_field_size", 8190)?),
        limit_request_body: m.int("limit_request_body", 0)?,
        accesslog: m.text("accesslog")?,
        access_log_format: m.access_log_format()?,
        access_log_skip: m.each("access_log_skip", value::parse_url_path)?,
        request_id: m.flag("request_id")?,
        tls: m.tls()?,
        http: m.http()?,
        http2_max_concurrent_streams: u32::try_from(m.int("http2_max_concurrent_streams", 100)?)
            .unwrap_or(u32::MAX),
        metrics_bind: m.last("metrics_bind", value::parse_tcp_address)?,
        errorlog: m.text("errorlog")?.unwrap_or_else(|| "-".to_string()),
        loglevel: m.loglevel()?,
        check_config: m.flag("check_config")? || print_config,
        print_config,
    })
}

/// A default taken from an environment variable was bad.
fn env_error(name: &str, problem: Problem, raw: &str, var: &'static str) -> ConfigError {
    match table::setting(name) {
        Some(setting) => problem.into_error(setting, raw, &Source::EnvVar(var)),
        None => ConfigError::new(format!("invalid {var} environment variable")),
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

struct Merged<'a> {
    layers: &'a [Layer],
}

/// A setting's winning values and where they came from.
struct Found<'a> {
    setting: &'static Setting,
    values: &'a [String],
    source: &'a Source,
}

impl<'a> Found<'a> {
    /// Single-valued settings keep the last value (argparse's "store").
    fn last(&self) -> &'a str {
        self.values.last().map_or("", String::as_str)
    }

    fn err(&self, problem: Problem, raw: &str) -> ConfigError {
        problem.into_error(self.setting, raw, self.source)
    }
}

impl<'a> Merged<'a> {
    fn get(&self, name: &str) -> Option<Found<'a>> {
        let index = table::index_of(name);
        debug_assert!(index.is_some(), "'{name}' is not in SETTINGS");
        let index = index?;
        let layers: &'a [Layer] = self.layers;
        layers.iter().rev().find_map(|layer| {
            let values = layer.raw(index)?;
            Some(Found {
                setting: &SETTINGS[index],
                values,
                source: &layer.source,
            })
        })
    }

    fn int(&self, name: &str, default: u64) -> Result<u64, ConfigError> {
        let Some(found) = self.get(name) else {
            return Ok(default);
        };
        let (min, max) = match found.setting.kind {
            Kind::Int { min, max } => (min, max),
            _ => (0, u64::MAX),
        };
        value::parse_int(found.last(), min, max).map_err(|p| found.err(p, found.last()))
    }

    fn flag(&self, name: &str) -> Result<bool, ConfigError> {
        let Some(found) = self.get(name) else {
            return Ok(false);
        };
        value::parse_bool(found.last()).map_err(|p| found.err(p, found.last()))
    }

    /// The last value given for `name`, parsed; None when not given.
    fn last<T>(
        &self,
        name: &str,
        parse: fn(&str) -> Result<T, Problem>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(found) = self.get(name) else {
            return Ok(None);
        };
        parse(found.last())
            .map(Some)
            .map_err(|p| found.err(p, found.last()))
    }

    fn text(&self, name: &str) -> Result<Option<String>, ConfigError> {
        self.last(name, value::parse_text)
    }

    fn binds(&self, getenv: &dyn Fn(&str) -> Option<String>) -> Result<Vec<Bind>, ConfigError> {
        if let Some(found) = self.get("bind") {
            if !found.values.is_empty() {
                return found
                    .values
                    .iter()
                    .map(|raw| {
                        Bind::parse_detail(raw).map_err(|why| found.err(Problem::Bind(why), raw))
                    })
                    .collect();
            }
        }
        // gunicorn: with PORT set (Heroku and friends), listen on it publicly.
        match getenv("PORT").filter(|port| !port.trim().is_empty()) {
            Some(port) => {
                let raw = format!("0.0.0.0:{}", port.trim());
                let bind = Bind::parse_detail(&raw)
                    .map_err(|why| env_error("bind", Problem::Bind(why), &raw, "PORT"))?;
                Ok(vec![bind])
            }
            None => Ok(vec![Bind::Tcp {
                host: "127.0.0.1".to_string(),
                port: 8000,
            }]),
        }
    }

    fn chdir(&self) -> Result<Option<PathBuf>, ConfigError> {
        let Some(found) = self.get("chdir") else {
            return Ok(None);
        };
        let raw = found.last();
        let path = PathBuf::from(value::parse_text(raw).map_err(|p| found.err(p, raw))?);
        // gunicorn's validate_chdir refuses a missing directory up front,
        // so --check-config catches it.
        if !path.is_dir() {
            return Err(found.err(Problem::Expected("an existing directory".to_string()), raw));
        }
        Ok(Some(path))
    }

    fn comma_list(&self, name: &str) -> Vec<String> {
        let Some(found) = self.get(name) else {
            return Vec::new();
        };
        found
            .values
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    fn existing_dir(&self, name: &str) -> Result<Option<PathBuf>, ConfigError> {
        let Some(found) = self.get(name) else {
            return Ok(None);
        };
        let raw = found.last().trim();
        if !std::path::Path::new(raw).is_dir() {
            return Err(found.err(Problem::Expected("an existing directory".to_string()), raw));
        }
        Ok(Some(PathBuf::from(raw)))
    }

    fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|found| found.values.iter().map(|v| v.trim().to_string()).collect())
            .unwrap_or_default()
    }

    /// A repeatable setting: every value parsed by `parse`, none when unset.
    fn each<T>(
        &self,
        name: &str,
        parse: fn(&str) -> Result<T, Problem>,
    ) -> Result<Vec<T>, ConfigError> {
        let Some(found) = self.get(name) else {
            return Ok(Vec::new());
        };
        found
            .values
            .iter()
            .map(|raw| parse(raw).map_err(|p| found.err(p, raw)))
            .collect()
    }

    fn static_map(&self) -> Result<Vec<(String, PathBuf)>, ConfigError> {
        let Some(found) = self.get("static_map") else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for raw in found.values {
            let (prefix, dir) = value::parse_static_map(raw).map_err(|p| found.err(p, raw))?;
            if !dir.is_dir() {
                let why = format!("'{}' is not a directory", dir.display());
                return Err(found.err(Problem::Detail(why), raw));
            }
            out.push((prefix, dir));
        }
        Ok(out)
    }

    fn root_path(&self, getenv: &dyn Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
        if let Some(found) = self.get("root_path") {
            return value::parse_url_prefix(found.last()).map_err(|p| found.err(p, found.last()));
        }
        match getenv("SCRIPT_NAME") {
            Some(raw) => value::parse_url_prefix(&raw)
                .map_err(|p| env_error("root_path", p, &raw, "SCRIPT_NAME")),
            None => Ok(String::new()),
        }
    }

    /// An allow list: the given values (a config-file list is joined), else
    /// `var` from the environment, else gunicorn's default of the loopback
    /// addresses.
    fn trust_list(
        &self,
        name: &str,
        var: Option<&'static str>,
        getenv: &dyn Fn(&str) -> Option<String>,
    ) -> Result<TrustList, ConfigError> {
        if let Some(found) = self.get(name) {
            let raw = found.values.join(",");
            return TrustList::parse(&raw).map_err(|why| found.err(Problem::Detail(why), &raw));
        }
        if let Some((var, raw)) = var.and_then(|v| Some((v, getenv(v)?))) {
            return TrustList::parse(&raw)
                .map_err(|why| env_error(name, Problem::Detail(why), &raw, var));
        }
        TrustList::parse(LOOPBACK).map_err(ConfigError::new)
    }

    /// gunicorn: `WEB_CONCURRENCY` is the default when no source sets workers.
    fn workers(&self, getenv: &dyn Fn(&str) -> Option<String>) -> Result<u64, ConfigError> {
        if self.get("workers").is_some() {
            return self.int("workers", 1);
        }
        match getenv("WEB_CONCURRENCY").filter(|v| !v.trim().is_empty()) {
            Some(raw) => {
                let setting = table::setting("workers");
                let (min, max) = match setting.map(|s| s.kind) {
                    Some(Kind::Int { min, max }) => (min, max),
                    _ => (1, u64::MAX),
                };
                value::parse_int(raw.trim(), min, max)
                    .map_err(|p| env_error("workers", p, &raw, "WEB_CONCURRENCY"))
            }
            None => Ok(1),
        }
    }

    /// Python's int(x, 0): "0o22", "0x12", "0b10" or decimal.
    fn umask(&self) -> Result<u32, ConfigError> {
        let Some(found) = self.get("umask") else {
            return Ok(0);
        };
        let raw = found.last().trim();
        let lower = raw.to_ascii_lowercase();
        let parsed = if let Some(d) = lower.strip_prefix("0o") {
            u32::from_str_radix(d, 8)
        } else if let Some(d) = lower.strip_prefix("0x") {
            u32::from_str_radix(d, 16)
        } else if let Some(d) = lower.strip_prefix("0b") {
            u32::from_str_radix(d, 2)
        } else {
            lower.parse::<u32>()
        };
        match parsed {
            Ok(v) if v <= 0o777 => Ok(v),
            _ => Err(found.err(
                Problem::Expected("a umask like 0o022 (at most 0o777)".to_string()),
                raw,
            )),
        }
    }

    fn loglevel(&self) -> Result<LogLevel, ConfigError> {
        let Some(found) = self.get("loglevel") else {
            return Ok(LogLevel::Info);
        };
        let raw = found.last();
        LogLevel::parse(raw).ok_or_else(|| {
            let problem = value::check(found.setting, raw).err();
            found.err(
                problem.unwrap_or(Problem::Expected("a log level".to_string())),
                raw,
            )
        })
    }

    fn access_log_format(&self) -> Result<AccessLogFormat, ConfigError> {
        let Some(found) = self.get("access_log_format") else {
            return Ok(AccessLogFormat::default());
        };
        let raw = found.last();
        // Trimmed like gunicorn's validate_string does.
        AccessLogFormat::compile(raw.trim()).map_err(|why| found.err(Problem::Format(why), raw))
    }
}
