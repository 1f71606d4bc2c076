//! oxgate's settings: one table (`SETTINGS`) drives the command line,
//! OXGATE_CMD_ARGS, config-file values, `--help` and docs/settings.md; raw
//! strings go in, a validated `Config` comes out. No Python, no tokio, no
//! sockets: executing the config file and acting on the settings belong to the
//! callers.
//!
//! The caller's sequence: `parse_args(cli)`; find `-c` in the command-line or
//! `parse_env_args(OXGATE_CMD_ARGS)` layer (or `./oxgate.conf.py` if present);
//! execute that file and feed its variables to `Layer::set_from_file`; then
//! `build(&[file, env, cli], getenv)`.

mod access_format;
mod access_json;
mod bind;
mod cli;
mod docs;
mod error;
mod layer;
mod print_config;
mod resolve;
mod table;
mod value;

pub use access_format::{AccessLogFormat, AccessRecord, DEFAULT_ACCESS_LOG_FORMAT, JSON_FORMAT};
pub use bind::Bind;
pub use cli::{parse_args, parse_env_args, Command};
pub use docs::{help_text, settings_markdown, version_text};
pub use error::ConfigError;
pub use layer::Layer;
pub use print_config::print_config;
pub use resolve::{build, ClientCerts, Config, HttpVersions, RequestLimits, TlsConfig};
pub use table::{setting, Kind, Section, Setting, SETTINGS};
pub use value::LogLevel;
