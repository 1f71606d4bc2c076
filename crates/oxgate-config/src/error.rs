//! `ConfigError`: one line that names the problem and its fix, with the exit
//! code the process should end with. Knows nothing about parsing.

use std::fmt;

/// A configuration problem, rendered as a single line (argparse-style usage
/// errors end the process with status 2, so does this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        let message: String = message.into();
        // The message goes to a terminal or a log as one record: a newline
        // smuggled in through a value must not start a second line.
        let message = message.replace(['\n', '\r'], " ");
        ConfigError { message }
    }

    /// The one-line message (same text as `Display`).
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Exit status for a process that stops on this error: 2, as argparse
    /// (and so gunicorn) uses for command-line usage errors.
    pub fn exit_code(&self) -> i32 {
        2
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// A user value as it appears inside quotes in a message: control characters
/// escaped so the message stays one readable line.
pub(crate) fn shown(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}
