//! `Layer`: the raw values one source (command line, OXGATE_CMD_ARGS, config
//! file) gave, each checked as it arrives. Merging and typing happen in
//! `resolve`; a layer never applies defaults.

use crate::error::{shown, ConfigError};
use crate::table::{self, Kind, Setting, SETTINGS};
use crate::value::{self, Source};

/// Values of settings from one source (CLI args, OXGATE_CMD_ARGS, config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub(crate) source: Source,
    /// Indexed like `SETTINGS`; `None` = this source did not set it.
    values: Vec<Option<Vec<String>>>,
}

impl Default for Layer {
    fn default() -> Self {
        Layer::new()
    }
}

impl Layer {
    /// An empty config-file layer (errors say "in the config file").
    pub fn new() -> Self {
        Layer::with_source(Source::ConfigFile(None))
    }

    /// An empty config-file layer whose errors name `path`.
    pub fn for_config_file(path: &str) -> Self {
        Layer::with_source(Source::ConfigFile(Some(path.to_string())))
    }

    pub(crate) fn with_source(source: Source) -> Self {
        Layer {
            source,
            values: vec![None; SETTINGS.len()],
        }
    }

    /// Set a setting by its name from a config file value already turned into
    /// strings (a Python list becomes several strings, a bool "true"/"false",
    /// `None` an empty list, which leaves the setting unset here).
    ///
    /// Unknown names return `Ok(false)`: gunicorn ignores module-level
    /// variables that are not settings. Known names return `Ok(true)`; a bad
    /// value is an error naming the variable.
    pub fn set_from_file(&mut self, name: &str, values: Vec<String>) -> Result<bool, ConfigError> {
        let Some(index) = table::index_of(name) else {
            return Ok(false);
        };
        let setting = &SETTINGS[index];
        let single_valued = !(setting.kind.repeatable()
            || matches!(setting.kind, Kind::CommaList | Kind::AddressList));
        if single_valued && values.len() > 1 {
            return Err(ConfigError::new(format!(
                "'{}'{} is a list of {} values: expected a single value",
                setting.name,
                self.source.suffix(),
                values.len()
            )));
        }
        if values.is_empty() {
            self.values[index] = None;
            return Ok(true);
        }
        self.set(setting, values)?;
        Ok(true)
    }

    /// The -c/--config value if this layer has one.
    pub fn config_file(&self) -> Option<&str> {
        self.first("config")
    }

    /// The application (positional `MODULE[:VARIABLE]`, or `wsgi_app` in a file).
    pub fn app_uri(&self) -> Option<&str> {
        self.first("wsgi_app")
    }

    /// The raw strings this layer holds for a setting (by config-file name).
    pub fn get(&self, name: &str) -> Option<&[String]> {
        self.values.get(table::index_of(name)?)?.as_deref()
    }

    /// True when this source set nothing.
    pub fn is_empty(&self) -> bool {
        self.values.iter().all(Option::is_none)
    }

    fn first(&self, name: &str) -> Option<&str> {
        self.get(name)?.first().map(String::as_str)
    }

    /// Check every value, then store them all (replacing what this layer had:
    /// callers hand over the complete value of the setting in this source).
    pub(crate) fn set(
        &mut self,
        setting: &'static Setting,
        values: Vec<String>,
    ) -> Result<(), ConfigError> {
        for raw in &values {
            value::check(setting, raw).map_err(|p| p.into_error(setting, raw, &self.source))?;
        }
        let values = if setting.kind == Kind::Flag {
            // Canonical spelling, so merged layers compare and print cleanly.
            values
                .iter()
                .map(|raw| value::parse_bool(raw).unwrap_or(false).to_string())
                .collect()
        } else {
            values
        };
        if let Some(index) = table::index_of(setting.name) {
            self.values[index] = Some(values);
            Ok(())
        } else {
            Err(ConfigError::new(format!(
                "unknown setting '{}'",
                shown(setting.name)
            )))
        }
    }

    /// The raw values and their source, for merging.
    pub(crate) fn raw(&self, index: usize) -> Option<&[String]> {
        self.values.get(index)?.as_deref()
    }
}
