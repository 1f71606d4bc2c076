//! A start-up failure: the one line the user sees and the exit code that
//! names its cause (gunicorn's model: 3 boot error, 4 app load error).

pub struct Fail {
    pub code: i32,
    pub message: String,
}

/// Bad command line or config (what `oxgate --help` would fix).
pub const EXIT_USAGE: i32 = 2;
/// The server could not start: a socket could not be bound, a log opened.
pub const EXIT_BOOT: i32 = 3;
/// The application could not be loaded.
pub const EXIT_APP: i32 = 4;

impl Fail {
    pub fn usage(message: impl Into<String>) -> Self {
        Fail {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    pub fn boot(message: impl Into<String>) -> Self {
        Fail {
            code: EXIT_BOOT,
            message: message.into(),
        }
    }

    pub fn app(message: impl Into<String>) -> Self {
        Fail {
            code: EXIT_APP,
            message: message.into(),
        }
    }
}
