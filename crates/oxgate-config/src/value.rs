//! Turning one raw string into a typed value per setting kind, and the wording
//! of what went wrong (with where the value came from). No merging, no I/O.

use std::fmt;

use crate::access_format::AccessLogFormat;
use crate::bind::Bind;
use crate::error::{shown, ConfigError};
use crate::table::{Kind, Setting};
use oxgate_proto::TrustList;

/// The error log level (gunicorn's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl LogLevel {
    /// Case-insensitive, as gunicorn lowercases the name before looking it up.
    pub fn parse(raw: &str) -> Option<LogLevel> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "debug" => Some(LogLevel::Debug),
            "info" => Some(LogLevel::Info),
            "warning" => Some(LogLevel::Warning),
            "error" => Some(LogLevel::Error),
            "critical" => Some(LogLevel::Critical),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a raw value came from; decides how an error names the setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    CommandLine,
    EnvArgs,
    /// A config file, with its path when the caller told us.
    ConfigFile(Option<String>),
    /// A default taken from an environment variable (PORT, SCRIPT_NAME).
    EnvVar(&'static str),
}

impl Source {
    /// `'--threads'` for flags, `'threads'` for config-file variables.
    fn subject(&self, setting: &Setting) -> String {
        match self {
            Source::ConfigFile(_) => format!("'{}'", setting.name),
            _ => format!("'{}'", setting.flag()),
        }
    }

    /// Appended after the subject: where to look for the bad value.
    pub(crate) fn suffix(&self) -> String {
        match self {
            Source::CommandLine => String::new(),
            Source::EnvArgs => " in OXGATE_CMD_ARGS".to_string(),
            Source::ConfigFile(None) => " in the config file".to_string(),
            Source::ConfigFile(Some(path)) => format!(" in config file '{}'", shown(path)),
            Source::EnvVar(var) => format!(" from the {var} environment variable"),
        }
    }
}

/// What is wrong with a raw value, before we know where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Problem {
    /// Rendered "invalid value 'V' for 'FLAG': expected ...".
    Expected(String),
    /// Rendered "invalid bind address 'V': ..." (the text says the fix).
    Bind(String),
    /// Rendered "invalid access log format for 'FLAG': ...".
    Format(String),
    /// Rendered "invalid value 'V' for 'FLAG': ..." (the text says what is wrong).
    Detail(String),
}

impl Problem {
    pub(crate) fn into_error(self, setting: &Setting, raw: &str, source: &Source) -> ConfigError {
        let (subject, suffix, raw) = (source.subject(setting), source.suffix(), shown(raw));
        ConfigError::new(match self {
            Problem::Expected(what) => {
                format!("invalid value '{raw}' for {subject}{suffix}: expected {what}")
            }
            Problem::Bind(why) => format!("invalid bind address '{raw}'{suffix}: {why}"),
            Problem::Format(why) => {
                format!("invalid access log format for {subject}{suffix}: {why}")
            }
            Problem::Detail(why) => format!("invalid value '{raw}' for {subject}{suffix}: {why}"),
        })
    }
}

/// A decimal integer in `min..=max` (surrounding whitespace allowed, as
/// Python's `int()` allows it).
pub(crate) fn parse_int(raw: &str, min: u64, max: u64) -> Result<u64, Problem> {
    let expected = || {
        Problem::Expected(match (min, max) {
            (1, u64::MAX) => "a positive integer".to_string(),
            (0, u64::MAX) => "0 or a positive integer".to_string(),
            _ => format!("an integer from {min} to {max}"),
        })
    };
    let digits = raw.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected());
    }
    match digits.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(expected()),
    }
}

/// gunicorn's `validate_bool`: "true" or "false", any case.
pub(crate) fn parse_bool(raw: &str) -> Result<bool, Problem> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(Problem::Expected("true or false".to_string())),
    }
}

/// KEY=VALUE split at the first '=' (the value may hold more of them).
pub(crate) fn parse_env_pair(raw: &str) -> Result<(String, String), Problem> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(Problem::Expected("KEY=VALUE, e.g. FOO=1".to_string())),
    }
}

/// A SCRIPT_NAME prefix: empty or "/..."; a trailing slash is dropped so that
/// SCRIPT_NAME + PATH_INFO rebuilds the path (PEP 3333, "environ Variables").
pub(crate) fn parse_url_prefix(raw: &str) -> Result<String, Problem> {
    let trimmed = raw.trim();
    if !(trimmed.is_empty() || trimmed.starts_with('/')) || trimmed.chars().any(char::is_whitespace)
    {
        return Err(Problem::Expected(
            "a URL path starting with '/', e.g. /app".to_string(),
        ));
    }
    Ok(trimmed.trim_end_matches('/').to_string())
}

/// `URL_PREFIX=DIR`: the prefix a URL path (a trailing slash dropped, so
/// "/" is ""), the directory not empty. Whether it exists is checked when
/// settings are resolved.
pub(crate) fn parse_static_map(raw: &str) -> Result<(String, std::path::PathBuf), Problem> {
    let expected =
        || Problem::Expected("URL_PREFIX=DIRECTORY, e.g. /static=/srv/app/static".to_string());
    let (prefix, dir) = raw.split_once('=').ok_or_else(expected)?;
    let (prefix, dir) = (prefix.trim(), dir.trim());
    if !prefix.starts_with('/') || dir.is_empty() || prefix.chars().any(char::is_whitespace) {
        return Err(expected());
    }
    Ok((
        prefix.trim_end_matches('/').to_string(),
        std::path::PathBuf::from(dir),
    ))
}

/// A URL path to match exactly: '/' then visible ASCII, without a query
/// string or fragment (neither is part of the path a request is matched by).
pub(crate) fn parse_url_path(raw: &str) -> Result<String, Problem> {
    let path = raw.trim();
    if !path.starts_with('/') {
        return Err(Problem::Expected(
            "a URL path starting with '/', e.g. /healthz".to_string(),
        ));
    }
    if let Some(c) = path
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '?' | '#'))
    {
        return Err(Problem::Detail(format!(
            "a path to match exactly cannot hold {}",
            match c {
                '?' => "a query string ('?')".to_string(),
                '#' => "a fragment ('#')".to_string(),
                c if c.is_whitespace() => "spaces".to_string(),
                c => format!("'{}'", c.escape_default()),
            }
        )));
    }
    Ok(path.to_string())
}

/// Free text (gunicorn's `validate_string` trims it); empty is refused since
/// every text setting names something (a file, a module).
pub(crate) fn parse_text(raw: &str) -> Result<String, Problem> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(Problem::Expected("a non-empty value".to_string()));
    }
    Ok(trimmed.to_string())
}

/// Check one raw value against its setting's kind (the typed value is built
/// again when layers are merged; this catches mistakes at the source).
pub(crate) fn check(setting: &Setting, raw: &str) -> Result<(), Problem> {
    match setting.kind {
        Kind::Text | Kind::Path | Kind::AppUri | Kind::CommaList | Kind::PathList => {
            parse_text(raw).map(drop)
        }
        Kind::Int { min, max } => parse_int(raw, min, max).map(drop),
        Kind::Flag => parse_bool(raw).map(drop),
        Kind::Bind => Bind::parse_detail(raw).map(drop).map_err(Problem::Bind),
        Kind::EnvPair => parse_env_pair(raw).map(drop),
        Kind::LogLevel => match LogLevel::parse(raw) {
            Some(_) => Ok(()),
            None => Err(Problem::Expected(
                "one of debug, info, warning, error, critical".to_string(),
            )),
        },
        Kind::AccessLogFormat => AccessLogFormat::compile(raw)
            .map(drop)
            .map_err(Problem::Format),
        Kind::UrlPrefix => parse_url_prefix(raw).map(drop),
        Kind::UrlPath => parse_url_path(raw).map(drop),
        Kind::AddressList => TrustList::parse(raw).map(drop).map_err(Problem::Detail),
        Kind::StaticMap => parse_static_map(raw).map(drop),
        Kind::TcpAddress => parse_tcp_address(raw).map(drop),
    }
}

/// One TCP `HOST:PORT` (the metrics endpoint): bind syntax, but neither a
/// unix socket nor the uwsgi protocol, and the port must be given.
pub(crate) fn parse_tcp_address(raw: &str) -> Result<Bind, Problem> {
    let bind = Bind::parse_detail(raw).map_err(Problem::Bind)?;
    let explicit_port = raw
        .trim()
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.is_empty() && !port.contains(']'));
    match bind {
        Bind::Tcp { .. } if explicit_port => Ok(bind),
        Bind::Tcp { .. } => Err(Problem::Expected(
            "HOST:PORT with a port, e.g. 127.0.0.1:9100".to_string(),
        )),
        _ => Err(Problem::Expected(
            "a TCP HOST:PORT, e.g. 127.0.0.1:9100 (not unix: or uwsgi:)".to_string(),
        )),
    }
}
