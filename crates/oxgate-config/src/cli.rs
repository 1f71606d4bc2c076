//! Command-line and OXGATE_CMD_ARGS parsing: a clap command generated from the
//! settings table, clap's multi-line errors folded into one-line
//! `ConfigError`s. clap never prints and never exits the process here.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, ArgMatches};

use crate::docs::{help_text, version_text};
use crate::error::{shown, ConfigError};
use crate::layer::Layer;
use crate::table::{self, Kind, SETTINGS};
use crate::value::Source;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Serve (or check) with these command-line values.
    Run(Layer),
    /// `-h/--help`: print this text to stdout and exit 0.
    Help(String),
    /// `-v/--version`: print this text to stdout and exit 0.
    Version(String),
}

const HELP_ID: &str = "help";
const VERSION_ID: &str = "version";

/// Parse the command line, WITHOUT the program name. The positional
/// application goes into the layer as `wsgi_app`.
pub fn parse_args(args: &[String]) -> Result<Command, ConfigError> {
    let matches = match_args(args, &Source::CommandLine)?;
    if matches.get_flag(HELP_ID) {
        return Ok(Command::Help(help_text()));
    }
    if matches.get_flag(VERSION_ID) {
        return Ok(Command::Version(version_text()));
    }
    Ok(Command::Run(fill_layer(&matches, Source::CommandLine)?))
}

/// Parse OXGATE_CMD_ARGS (gunicorn's GUNICORN_CMD_ARGS): shell-split, then
/// the same options as the command line.
pub fn parse_env_args(value: &str) -> Result<Layer, ConfigError> {
    let Some(args) = shlex::split(value) else {
        return Err(ConfigError::new(
            "OXGATE_CMD_ARGS is not valid shell syntax: check its quotes and trailing backslash",
        ));
    };
    let source = Source::EnvArgs;
    let matches = match_args(&args, &source)?;
    for (id, flag) in [(HELP_ID, "--help"), (VERSION_ID, "--version")] {
        if matches.get_flag(id) {
            return Err(ConfigError::new(format!(
                "'{flag}' does not belong in OXGATE_CMD_ARGS: run 'oxgate {flag}' instead"
            )));
        }
    }
    fill_layer(&matches, source)
}

fn match_args(args: &[String], source: &Source) -> Result<ArgMatches, ConfigError> {
    command()
        .try_get_matches_from(args)
        .map_err(|err| clap_error(&err, source))
}

/// The clap command, generated from `SETTINGS`. Help and version are plain
/// flags so that clap never renders or prints anything itself.
fn command() -> clap::Command {
    let mut cmd = clap::Command::new("oxgate")
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        // argparse semantics: a repeated option's last value wins, and an
        // unambiguous prefix (--bi) names its option.
        .args_override_self(true)
        .infer_long_args(true)
        .arg(
            Arg::new(HELP_ID)
                .short('h')
                .long("help")
                .action(ArgAction::SetTrue),
        )
        .arg(
            Arg::new(VERSION_ID)
                .short('v')
                .long("version")
                .action(ArgAction::SetTrue),
        );
    for setting in SETTINGS {
        let mut arg = Arg::new(setting.name).value_name(setting.meta);
        arg = match setting.long {
            Some(long) => arg.long(long).aliases(setting.aliases.iter().copied()),
            None => arg.index(1),
        };
        if let Some(c) = setting.short {
            arg = arg.short(c);
        }
        arg = match setting.kind {
            Kind::Flag => arg.action(ArgAction::SetTrue),
            kind if kind.repeatable() => arg.action(ArgAction::Append),
            _ => arg.action(ArgAction::Set),
        };
        if let Kind::Int { .. } = setting.kind {
            // So that `--threads -1` reaches our validation and gets its
            // message, instead of reading as an unknown option.
            arg = arg.allow_negative_numbers(true);
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

fn fill_layer(matches: &ArgMatches, source: Source) -> Result<Layer, ConfigError> {
    let mut layer = Layer::with_source(source);
    for setting in SETTINGS {
        let values: Vec<String> = if setting.kind == Kind::Flag {
            if matches.get_flag(setting.name) {
                vec!["true".to_string()]
            } else {
                continue;
            }
        } else {
            match matches.get_many::<String>(setting.name) {
                Some(values) => values.cloned().collect(),
                None => continue,
            }
        };
        layer.set(setting, values)?;
    }
    Ok(layer)
}

fn context_str(err: &clap::Error, kind: ContextKind) -> Option<&str> {
    match err.get(kind)? {
        ContextValue::String(s) => Some(s),
        ContextValue::Strings(v) => v.first().map(String::as_str),
        _ => None,
    }
}

/// Fold a clap error into one line that names the problem and the fix.
fn clap_error(err: &clap::Error, source: &Source) -> ConfigError {
    let place = source.suffix();
    let arg = context_str(err, ContextKind::InvalidArg).unwrap_or_default();
    // clap names an option with its placeholder ("--bind <ADDRESS>").
    let flag = arg.split_whitespace().next().unwrap_or_default();
    let value = context_str(err, ContextKind::InvalidValue).unwrap_or_default();
    let message = match err.kind() {
        ErrorKind::UnknownArgument if !arg.starts_with('-') => format!(
            "unexpected argument '{}'{place}: give one APP_MODULE and put options before it \
             (see 'oxgate --help')",
            shown(arg)
        ),
        ErrorKind::UnknownArgument if ambiguous(arg).len() > 1 => format!(
            "ambiguous option '{}'{place} could be {} (see 'oxgate --help')",
            shown(arg),
            ambiguous(arg).join(" or ")
        ),
        ErrorKind::UnknownArgument => match context_str(err, ContextKind::SuggestedArg) {
            Some(suggestion) => {
                let suggestion = suggestion.split_whitespace().next().unwrap_or(suggestion);
                format!(
                    "unknown option '{}'{place} (did you mean '{suggestion}'? see 'oxgate --help')",
                    shown(arg)
                )
            }
            None => format!(
                "unknown option '{}'{place} (see 'oxgate --help')",
                shown(arg)
            ),
        },
        ErrorKind::InvalidValue if value.is_empty() => match table::by_flag(flag) {
            Some(setting) => format!(
                "missing value for '{flag}'{place}: write '{} {}'",
                setting.flag(),
                setting.meta
            ),
            None => format!(
                "missing value for '{}'{place} (see 'oxgate --help')",
                shown(flag)
            ),
        },
        ErrorKind::TooManyValues | ErrorKind::NoEquals if !value.is_empty() => {
            format!(
                "option '{}'{place} takes no value (got '{}'): give it alone",
                shown(flag),
                shown(value)
            )
        }
        _ => fallback(err, &place),
    };
    ConfigError::new(message)
}

/// The long options an abbreviated `--prefix` could mean (argparse accepts
/// unambiguous prefixes; clap's `infer_long_args` does too, but reports an
/// ambiguous one as unknown). Aliases of one setting count once.
fn ambiguous(arg: &str) -> Vec<String> {
    let Some(prefix) = arg.strip_prefix("--") else {
        return Vec::new();
    };
    let prefix = prefix.split_once('=').map_or(prefix, |(name, _)| name);
    if prefix.is_empty() {
        return Vec::new();
    }
    let mut out: Vec<String> = SETTINGS
        .iter()
        .filter(|s| {
            s.long
                .iter()
                .chain(s.aliases)
                .any(|l| l.starts_with(prefix))
        })
        .map(|s| format!("'{}'", s.flag()))
        .collect();
    out.extend(
        ["help", "version"]
            .iter()
            .filter(|l| l.starts_with(prefix))
            .map(|l| format!("'--{l}'")),
    );
    out
}

/// Any other clap error: its first line, without clap's "error: " prefix.
fn fallback(err: &clap::Error, place: &str) -> String {
    let rendered = err.render().to_string();
    let first = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid arguments");
    let first = first.trim().trim_start_matches("error: ");
    format!("{first}{place} (see 'oxgate --help')")
}
