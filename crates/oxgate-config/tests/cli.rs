//! Command-line and OXGATE_CMD_ARGS parsing through the public API: every
//! flag in its long, short and `=` forms, and each error's exact line.
#![allow(clippy::unwrap_used)]

use oxgate_config::{build, parse_args, parse_env_args, Bind, Command, Config, Layer, LogLevel};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn layer(list: &[&str]) -> Layer {
    match parse_args(&args(list)) {
        Ok(Command::Run(layer)) => layer,
        other => panic!("expected Run for {list:?}, got {other:?}"),
    }
}

fn config(list: &[&str]) -> Config {
    build(&[layer(list)], &|_| None).unwrap()
}

fn error(list: &[&str]) -> String {
    match parse_args(&args(list)) {
        Err(e) => {
            assert_eq!(e.exit_code(), 2);
            assert!(!e.to_string().contains('\n'), "multi-line error: {e}");
            e.to_string()
        }
        Ok(other) => panic!("expected an error for {list:?}, got {other:?}"),
    }
}

fn tcp(host: &str, port: u16) -> Bind {
    Bind::Tcp {
        host: host.to_string(),
        port,
    }
}

#[test]
fn bind_accepts_long_short_equals_and_attached_forms() {
    for form in [
        &["--bind", "10.0.0.1:81"][..],
        &["--bind=10.0.0.1:81"],
        &["-b", "10.0.0.1:81"],
        &["-b10.0.0.1:81"],
        &["-b=10.0.0.1:81"],
    ] {
        assert_eq!(config(form).bind, vec![tcp("10.0.0.1", 81)], "{form:?}");
    }
}

#[test]
fn bind_repeated_listens_on_every_address_in_order() {
    let cfg = config(&[
        "-b",
        "127.0.0.1:1",
        "--bind",
        "[::1]:2",
        "-b",
        "unix:/tmp/s.sock",
    ]);
    assert_eq!(
        cfg.bind,
        vec![
            tcp("127.0.0.1", 1),
            tcp("::1", 2),
            Bind::Unix("/tmp/s.sock".into())
        ]
    );
}

#[test]
fn every_integer_flag_accepts_space_and_equals_forms() {
    type Getter = fn(&Config) -> u64;
    let cases: &[(&str, Getter)] = &[
        ("--threads", |c| c.threads as u64),
        ("--backlog", |c| c.backlog as u64),
        ("--keep-alive", |c| c.keepalive),
        ("--graceful-timeout", |c| c.graceful_timeout),
        ("--limit-request-line", |c| c.limit_request_line as u64),
        ("--limit-request-fields", |c| c.limit_request_fields as u64),
        ("--limit-request-field_size", |c| {
            c.limit_request_field_size as u64
        }),
        ("--limit-request-field-size", |c| {
            c.limit_request_field_size as u64
        }),
    ];
    for (flag, get) in cases {
        assert_eq!(get(&config(&[flag, "7"])), 7, "{flag} 7");
        assert_eq!(get(&config(&[&format!("{flag}=9")])), 9, "{flag}=9");
    }
}

#[test]
fn string_flags_set_their_settings() {
    let cfg = config(&[
        "--chdir",
        "/tmp",
        "--pythonpath",
        "/a, /b,,/c",
        "--root-path=/app/",
        "--access-logfile",
        "-",
        "--access-logformat",
        "%(h)s %(s)s",
        "--error-logfile",
        "/tmp/err.log",
        "--log-level",
        "WARNING",
        "-c",
        "conf.py",
        "mysite.wsgi:application",
    ]);
    assert_eq!(cfg.chdir, Some("/tmp".into()));
    assert_eq!(cfg.pythonpath, vec!["/a", "/b", "/c"]);
    assert_eq!(cfg.root_path, "/app");
    assert_eq!(cfg.accesslog.as_deref(), Some("-"));
    assert_eq!(cfg.access_log_format.as_str(), "%(h)s %(s)s");
    assert_eq!(cfg.errorlog, "/tmp/err.log");
    assert_eq!(cfg.loglevel, LogLevel::Warning);
    assert_eq!(cfg.config_file, Some("conf.py".into()));
    assert_eq!(cfg.app_uri.as_deref(), Some("mysite.wsgi:application"));
}

#[test]
fn log_file_is_an_alias_of_error_logfile() {
    assert_eq!(config(&["--log-file=/tmp/x.log"]).errorlog, "/tmp/x.log");
}

#[test]
fn config_flag_short_attached_and_long_equals_forms() {
    assert_eq!(layer(&["-cfile.py"]).config_file(), Some("file.py"));
    assert_eq!(layer(&["--config=file.py"]).config_file(), Some("file.py"));
    assert_eq!(layer(&[]).config_file(), None);
}

#[test]
fn env_flag_is_repeatable_and_splits_at_first_equals() {
    let cfg = config(&["-e", "A=1", "--env", "B=x=y", "-eC=", "--env=D=4"]);
    let pairs: Vec<(&str, &str)> = cfg
        .raw_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(pairs, [("A", "1"), ("B", "x=y"), ("C", ""), ("D", "4")]);
}

#[test]
fn flags_take_no_value_and_print_implies_check() {
    let cfg = config(&["--check-config"]);
    assert!(cfg.check_config && !cfg.print_config);
    let cfg = config(&["--print-config"]);
    assert!(cfg.check_config && cfg.print_config);
    assert_eq!(
        error(&["--check-config=yes"]),
        "option '--check-config' takes no value (got 'yes'): give it alone"
    );
}

#[test]
fn repeated_single_value_option_keeps_the_last() {
    assert_eq!(config(&["--threads", "2", "--threads", "5"]).threads, 5);
}

#[test]
fn unambiguous_prefix_names_its_option_like_argparse() {
    assert_eq!(config(&["--thr", "3", "--keep=4"]).threads, 3);
    assert_eq!(config(&["--keep=4"]).keepalive, 4);
}

#[test]
fn ambiguous_prefix_is_an_error_listing_the_candidates() {
    assert_eq!(
        error(&["--log", "x"]),
        "ambiguous option '--log' could be '--error-logfile' or '--log-level' (see 'oxgate --help')"
    );
}

#[test]
fn double_dash_ends_options() {
    assert_eq!(
        config(&["--", "-odd:app"]).app_uri.as_deref(),
        Some("-odd:app")
    );
}

#[test]
fn unknown_option_suggests_the_closest_flag() {
    assert_eq!(
        error(&["--bnd", "x"]),
        "unknown option '--bnd' (did you mean '--bind'? see 'oxgate --help')"
    );
    assert_eq!(error(&["-x"]), "unknown option '-x' (see 'oxgate --help')");
}

#[test]
fn gunicorn_flags_oxgate_lacks_are_unknown_options() {
    assert!(error(&["--no-such-setting=1"]).starts_with("unknown option '--no-such-setting"));
}

#[test]
fn second_positional_is_an_error() {
    assert_eq!(
        error(&["app:one", "app:two"]),
        "unexpected argument 'app:two': give one APP_MODULE and put options before it (see 'oxgate --help')"
    );
}

#[test]
fn missing_value_names_the_option_and_its_placeholder() {
    assert_eq!(
        error(&["--threads"]),
        "missing value for '--threads': write '--threads INT'"
    );
    assert_eq!(
        error(&["-b"]),
        "missing value for '--bind': write '--bind ADDRESS'"
    );
    assert_eq!(
        error(&["--bind", "--threads", "2"]),
        "missing value for '--bind': write '--bind ADDRESS'"
    );
}

#[test]
fn bad_integers_say_what_is_expected() {
    assert_eq!(
        error(&["--threads", "abc"]),
        "invalid value 'abc' for '--threads': expected a positive integer"
    );
    assert_eq!(
        error(&["--threads", "0"]),
        "invalid value '0' for '--threads': expected a positive integer"
    );
    assert_eq!(
        error(&["--threads", "-1"]),
        "invalid value '-1' for '--threads': expected a positive integer"
    );
    assert_eq!(
        error(&["--keep-alive=-2"]),
        "invalid value '-2' for '--keep-alive': expected 0 or a positive integer"
    );
    assert_eq!(
        error(&["--backlog", "3000000000"]),
        "invalid value '3000000000' for '--backlog': expected an integer from 1 to 2147483647"
    );
}

#[test]
fn bad_values_of_other_kinds_say_what_is_expected() {
    assert_eq!(
        error(&["-e", "NOEQUALS"]),
        "invalid value 'NOEQUALS' for '--env': expected KEY=VALUE, e.g. FOO=1"
    );
    assert_eq!(
        error(&["-e", "=v"]),
        "invalid value '=v' for '--env': expected KEY=VALUE, e.g. FOO=1"
    );
    assert_eq!(
        error(&["--log-level", "loud"]),
        "invalid value 'loud' for '--log-level': expected one of debug, info, warning, error, critical"
    );
    assert_eq!(
        error(&["--root-path", "app"]),
        "invalid value 'app' for '--root-path': expected a URL path starting with '/', e.g. /app"
    );
    assert_eq!(
        error(&["--access-logfile="]),
        "invalid value '' for '--access-logfile': expected a non-empty value"
    );
    assert_eq!(
        error(&["--access-logformat", "%(zz)s"]),
        "invalid access log format for '--access-logformat': unknown atom '%(zz)s'; known atoms: \
         h l u t r m U q H s B b f a T M D L p rid {name}i {name}o {name}e"
    );
}

#[test]
fn access_log_skip_wants_an_exact_url_path() {
    let cases = [
        (
            "healthz",
            "invalid value 'healthz' for '--access-log-skip': expected a URL path \
             starting with '/', e.g. /healthz",
        ),
        (
            "/healthz?full=1",
            "invalid value '/healthz?full=1' for '--access-log-skip': a path to match \
             exactly cannot hold a query string ('?')",
        ),
        (
            "/a b",
            "invalid value '/a b' for '--access-log-skip': a path to match exactly \
             cannot hold spaces",
        ),
        (
            "/x#top",
            "invalid value '/x#top' for '--access-log-skip': a path to match exactly \
             cannot hold a fragment ('#')",
        ),
    ];
    for (raw, want) in cases {
        assert_eq!(error(&["--access-log-skip", raw]), want, "{raw}");
    }
}

#[test]
fn control_characters_in_values_stay_on_one_line() {
    assert_eq!(
        error(&["--threads", "1\n2"]),
        "invalid value '1\\n2' for '--threads': expected a positive integer"
    );
}

#[test]
fn help_and_version_return_text_instead_of_exiting() {
    for flag in ["-h", "--help"] {
        match parse_args(&args(&[flag])).unwrap() {
            Command::Help(text) => assert!(text.starts_with("usage: oxgate")),
            other => panic!("{other:?}"),
        }
    }
    for flag in ["-v", "--version"] {
        assert_eq!(
            parse_args(&args(&[flag])).unwrap(),
            Command::Version(format!("oxgate (version {})\n", env!("CARGO_PKG_VERSION")))
        );
    }
}

#[test]
fn help_wins_over_bad_values_given_with_it() {
    assert!(matches!(
        parse_args(&args(&["--threads", "abc", "--help"])).unwrap(),
        Command::Help(_)
    ));
}

#[test]
fn env_args_are_shell_split() {
    let env = parse_env_args("--bind '0.0.0.0:9 ' -e 'GREETING=hello world' --threads=3").unwrap();
    let cfg = build(&[env], &|_| None).unwrap();
    assert_eq!(cfg.bind, vec![tcp("0.0.0.0", 9)]);
    assert_eq!(
        cfg.raw_env,
        vec![("GREETING".to_string(), "hello world".to_string())]
    );
    assert_eq!(cfg.threads, 3);
}

#[test]
fn empty_env_args_set_nothing() {
    assert!(parse_env_args("").unwrap().is_empty());
    assert!(parse_env_args("   ").unwrap().is_empty());
}

#[test]
fn env_args_errors_say_where_the_value_came_from() {
    assert_eq!(
        parse_env_args("--threads x").unwrap_err().to_string(),
        "invalid value 'x' for '--threads' in OXGATE_CMD_ARGS: expected a positive integer"
    );
    assert_eq!(
        parse_env_args("--bnd x").unwrap_err().to_string(),
        "unknown option '--bnd' in OXGATE_CMD_ARGS (did you mean '--bind'? see 'oxgate --help')"
    );
    assert_eq!(
        parse_env_args("--bind 'unterminated")
            .unwrap_err()
            .to_string(),
        "OXGATE_CMD_ARGS is not valid shell syntax: check its quotes and trailing backslash"
    );
    assert_eq!(
        parse_env_args("--help").unwrap_err().to_string(),
        "'--help' does not belong in OXGATE_CMD_ARGS: run 'oxgate --help' instead"
    );
}
