//! Merging sources into a `Config`: defaults, PORT and SCRIPT_NAME, the
//! precedence file < OXGATE_CMD_ARGS < command line, list replacement,
//! config-file values, bind syntax, limits and --print-config.
#![allow(clippy::unwrap_used)]

use oxgate_config::{
    build, parse_args, parse_env_args, print_config, Bind, ClientCerts, Command, Config, Layer,
    LogLevel, TlsConfig,
};

fn cli(list: &[&str]) -> Layer {
    let args: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    match parse_args(&args).unwrap() {
        Command::Run(layer) => layer,
        other => panic!("{other:?}"),
    }
}

fn file(vars: &[(&str, &[&str])]) -> Layer {
    let mut layer = Layer::new();
    for (name, values) in vars {
        assert!(
            layer
                .set_from_file(name, values.iter().map(|s| s.to_string()).collect())
                .unwrap(),
            "{name}"
        );
    }
    layer
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn defaults() -> Config {
    build(&[], &no_env).unwrap()
}

fn tcp(host: &str, port: u16) -> Bind {
    Bind::Tcp {
        host: host.to_string(),
        port,
    }
}

#[test]
fn defaults_match_gunicorn() {
    let cfg = defaults();
    assert_eq!(cfg.bind, vec![tcp("127.0.0.1", 8000)]);
    assert_eq!(
        (
            cfg.threads,
            cfg.backlog,
            cfg.keepalive,
            cfg.graceful_timeout
        ),
        (1, 2048, 2, 30)
    );
    assert_eq!(
        (
            cfg.limit_request_line,
            cfg.limit_request_fields,
            cfg.limit_request_field_size
        ),
        (4094, 100, 8190)
    );
    assert_eq!(cfg.accesslog, None);
    assert_eq!(cfg.errorlog, "-");
    assert_eq!(cfg.loglevel, LogLevel::Info);
    assert_eq!(
        cfg.access_log_format.as_str(),
        r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#
    );
    assert_eq!(
        (cfg.app_uri, cfg.config_file, cfg.chdir),
        (None, None, None)
    );
    assert!(cfg.pythonpath.is_empty() && cfg.raw_env.is_empty() && cfg.root_path.is_empty());
    assert!(!cfg.check_config && !cfg.print_config);
    assert!(cfg.access_log_skip.is_empty() && !cfg.request_id);
    assert_eq!(cfg.metrics_bind, None);
}

#[test]
fn port_env_var_makes_the_default_bind_public() {
    let cfg = build(&[], &|k| (k == "PORT").then(|| "5000".to_string())).unwrap();
    assert_eq!(cfg.bind, vec![tcp("0.0.0.0", 5000)]);
}

#[test]
fn port_env_var_is_ignored_when_a_bind_is_given() {
    let cfg = build(&[cli(&["-b", "127.0.0.1:1"])], &|k| {
        (k == "PORT").then(|| "5000".to_string())
    })
    .unwrap();
    assert_eq!(cfg.bind, vec![tcp("127.0.0.1", 1)]);
}

#[test]
fn bad_port_env_var_is_reported_as_such() {
    let err = build(&[], &|k| (k == "PORT").then(|| "http".to_string())).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid bind address '0.0.0.0:http' from the PORT environment variable: 'http' is not a port number (0-65535)"
    );
}

#[test]
fn script_name_env_var_is_the_default_root_path() {
    let env = |k: &str| (k == "SCRIPT_NAME").then(|| "/mounted/".to_string());
    assert_eq!(build(&[], &env).unwrap().root_path, "/mounted");
    assert_eq!(
        build(&[cli(&["--root-path", "/cli"])], &env)
            .unwrap()
            .root_path,
        "/cli"
    );
    assert_eq!(
        build(&[cli(&["--root-path", "/"])], &no_env)
            .unwrap()
            .root_path,
        ""
    );
}

#[test]
fn later_layers_win_file_then_env_then_cli() {
    let f = file(&[
        ("threads", &["2"]),
        ("backlog", &["10"]),
        ("keepalive", &["7"]),
    ]);
    let env = parse_env_args("--threads 3 --backlog 11").unwrap();
    let c = cli(&["--threads", "4"]);
    let cfg = build(&[f, env, c], &no_env).unwrap();
    assert_eq!(cfg.threads, 4, "command line beats env and file");
    assert_eq!(cfg.backlog, 11, "env beats file");
    assert_eq!(cfg.keepalive, 7, "file beats default");
}

#[test]
fn a_later_bind_list_replaces_the_earlier_one_entirely() {
    let f = file(&[("bind", &["127.0.0.1:1", "127.0.0.1:2"])]);
    let env = parse_env_args("-b 127.0.0.1:3").unwrap();
    let cfg = build(&[f.clone(), env.clone()], &no_env).unwrap();
    assert_eq!(cfg.bind, vec![tcp("127.0.0.1", 3)]);
    let cfg = build(
        &[f, env, cli(&["-b", "127.0.0.1:4", "-b", "127.0.0.1:5"])],
        &no_env,
    )
    .unwrap();
    assert_eq!(cfg.bind, vec![tcp("127.0.0.1", 4), tcp("127.0.0.1", 5)]);
}

#[test]
fn a_later_env_list_replaces_the_earlier_one_entirely() {
    let f = file(&[("raw_env", &["A=1", "B=2"])]);
    let cfg = build(&[f, cli(&["-e", "C=3"])], &no_env).unwrap();
    assert_eq!(cfg.raw_env, vec![("C".to_string(), "3".to_string())]);
}

#[test]
fn positional_app_beats_wsgi_app_from_the_file() {
    let f = file(&[("wsgi_app", &["from.file:app"])]);
    assert_eq!(
        build(std::slice::from_ref(&f), &no_env)
            .unwrap()
            .app_uri
            .as_deref(),
        Some("from.file:app")
    );
    assert_eq!(
        build(&[f, cli(&["from.cli:app"])], &no_env)
            .unwrap()
            .app_uri
            .as_deref(),
        Some("from.cli:app")
    );
}

#[test]
fn file_unknown_variables_are_ignored() {
    let mut layer = Layer::new();
    assert!(!layer
        .set_from_file("not_a_setting", vec!["1".into()])
        .unwrap());
    assert!(!layer.set_from_file("os", vec![]).unwrap());
    assert!(layer.is_empty());
}

#[test]
fn file_bools_accept_true_and_false_in_any_case() {
    let cfg = build(
        &[file(&[
            ("check_config", &["TRUE"]),
            ("print_config", &["false"]),
        ])],
        &no_env,
    )
    .unwrap();
    assert!(cfg.check_config && !cfg.print_config);
    // A later source can switch a flag on, not off: argparse flags only store true.
    let cfg = build(
        &[
            file(&[("print_config", &["false"])]),
            cli(&["--print-config"]),
        ],
        &no_env,
    )
    .unwrap();
    assert!(cfg.print_config);
}

#[test]
fn file_single_string_bind_is_one_address() {
    let cfg = build(&[file(&[("bind", &["0.0.0.0:80"])])], &no_env).unwrap();
    assert_eq!(cfg.bind, vec![tcp("0.0.0.0", 80)]);
}

#[test]
fn file_none_leaves_the_setting_unset() {
    let mut layer = file(&[("accesslog", &["/tmp/a.log"])]);
    layer.set_from_file("accesslog", vec![]).unwrap();
    assert_eq!(build(&[layer], &no_env).unwrap().accesslog, None);
}

#[test]
fn file_errors_name_the_variable_and_the_file() {
    let mut layer = Layer::new();
    assert_eq!(
        layer
            .set_from_file("threads", vec!["many".into()])
            .unwrap_err()
            .to_string(),
        "invalid value 'many' for 'threads' in the config file: expected a positive integer"
    );
    let mut layer = Layer::for_config_file("oxgate.conf.py");
    assert_eq!(
        layer
            .set_from_file("threads", vec!["1".into(), "2".into()])
            .unwrap_err()
            .to_string(),
        "'threads' in config file 'oxgate.conf.py' is a list of 2 values: expected a single value"
    );
    assert_eq!(
        layer.set_from_file("check_config", vec!["yes".into()]).unwrap_err().to_string(),
        "invalid value 'yes' for 'check_config' in config file 'oxgate.conf.py': expected true or false"
    );
    assert_eq!(
        layer.set_from_file("bind", vec!["::1".into()]).unwrap_err().to_string(),
        "invalid bind address '::1' in config file 'oxgate.conf.py': put IPv6 addresses in brackets, e.g. [::1]:8000"
    );
}

#[test]
fn file_pythonpath_may_be_a_string_or_a_list() {
    let cfg = build(&[file(&[("pythonpath", &["/a,/b"])])], &no_env).unwrap();
    assert_eq!(cfg.pythonpath, vec!["/a", "/b"]);
    let cfg = build(&[file(&[("pythonpath", &["/a", "/b,/c"])])], &no_env).unwrap();
    assert_eq!(cfg.pythonpath, vec!["/a", "/b", "/c"]);
}

#[test]
fn layer_reports_config_file_and_app() {
    let layer = cli(&["-c", "x.py", "app:main"]);
    assert_eq!(layer.config_file(), Some("x.py"));
    assert_eq!(layer.app_uri(), Some("app:main"));
    assert_eq!(layer.get("config"), Some(&["x.py".to_string()][..]));
}

#[test]
fn chdir_must_exist() {
    assert_eq!(
        build(&[cli(&["--chdir", "/"])], &no_env).unwrap().chdir,
        Some("/".into())
    );
    assert_eq!(
        build(&[cli(&["--chdir", "/no/such/dir/oxgate"])], &no_env)
            .unwrap_err()
            .to_string(),
        "invalid value '/no/such/dir/oxgate' for '--chdir': expected an existing directory"
    );
}

#[test]
fn bind_forms_parse_like_gunicorn() {
    let cases: &[(&str, Bind)] = &[
        ("127.0.0.1:8080", tcp("127.0.0.1", 8080)),
        ("LocalHost", tcp("localhost", 8000)),
        ("example.com:80", tcp("example.com", 80)),
        (":9000", tcp("0.0.0.0", 9000)),
        ("[::1]:8080", tcp("::1", 8080)),
        ("[::1]", tcp("::1", 8000)),
        ("[fe80::1%eth0]:1", tcp("fe80::1%eth0", 1)),
        ("tcp://10.1.1.1:5", tcp("10.1.1.1", 5)),
        ("0.0.0.0:0", tcp("0.0.0.0", 0)),
        ("unix:/run/app.sock", Bind::Unix("/run/app.sock".into())),
        (
            "unix:relative/app.sock",
            Bind::Unix("relative/app.sock".into()),
        ),
        ("unix:///run/app.sock", Bind::Unix("/run/app.sock".into())),
        (
            "uwsgi:127.0.0.1:9000",
            Bind::Uwsgi(Box::new(tcp("127.0.0.1", 9000))),
        ),
        (
            "uwsgi://unix:/run/u.sock",
            Bind::Uwsgi(Box::new(Bind::Unix("/run/u.sock".into()))),
        ),
    ];
    for (raw, want) in cases {
        assert_eq!(&Bind::parse(raw).unwrap(), want, "{raw}");
    }
}

#[test]
fn bind_displays_in_the_form_it_parses_from() {
    for raw in [
        "127.0.0.1:8080",
        "[::1]:8000",
        "unix:/run/app.sock",
        "uwsgi:[::1]:9000",
        "uwsgi:unix:/run/u.sock",
    ] {
        assert_eq!(Bind::parse(raw).unwrap().to_string(), raw);
    }
}

#[test]
fn bad_bind_addresses_say_how_to_fix_them() {
    let cases = [
        ("::1:80", "put IPv6 addresses in brackets, e.g. [::1]:80"),
        ("::1", "put IPv6 addresses in brackets, e.g. [::1]:8000"),
        (
            "2001:db8::1",
            "put IPv6 addresses in brackets, e.g. [2001:db8::1]:8000",
        ),
        ("host:http", "'http' is not a port number (0-65535)"),
        ("host:70000", "'70000' is not a port number (0-65535)"),
        ("host:", "'' is not a port number (0-65535)"),
        (
            "[::1",
            "missing ']' after the IPv6 address, e.g. [::1]:8000",
        ),
        ("[::1]80", "expected ':PORT' after ']', e.g. [::1]:8000"),
        ("[nope]:80", "'nope' is not an IPv6 address"),
        (
            "unix:",
            "the socket path after 'unix:' is empty, e.g. unix:/run/oxgate.sock",
        ),
        (
            "fd://3",
            "fd:// addresses are not supported; use HOST:PORT or unix:PATH",
        ),
        ("a b:80", "'a b' is not a host name or IP address"),
        (
            "uwsgi:uwsgi:1.2.3.4:9",
            "'uwsgi:' is given twice, e.g. uwsgi:127.0.0.1:9000",
        ),
        ("uwsgi:host:x", "'x' is not a port number (0-65535)"),
    ];
    for (raw, why) in cases {
        assert_eq!(
            Bind::parse(raw).unwrap_err().to_string(),
            format!("invalid bind address '{raw}': {why}")
        );
    }
}

#[test]
fn limits_zero_means_unlimited_and_gunicorn_caps_apply() {
    let limits = defaults().request_limits();
    assert_eq!(
        (
            limits.max_request_line,
            limits.max_headers,
            limits.max_header_field_size
        ),
        (4094, 100, 8190)
    );
    assert_eq!(limits.max_header_bytes, 100 * (8190 + 2) + 4);

    let cfg = build(
        &[cli(&[
            "--limit-request-line=0",
            "--limit-request-fields=0",
            "--limit-request-field_size=0",
        ])],
        &no_env,
    )
    .unwrap();
    // The configured values stay as given (that is what --print-config shows).
    assert_eq!(
        (
            cfg.limit_request_line,
            cfg.limit_request_fields,
            cfg.limit_request_field_size
        ),
        (0, 0, 0)
    );
    let limits = cfg.request_limits();
    assert_eq!(limits.max_request_line, usize::MAX);
    assert_eq!(limits.max_headers, 32768);
    assert_eq!(limits.max_header_field_size, usize::MAX);
    assert_eq!(
        limits.max_header_bytes,
        32768 * (8190 + 2) + 4,
        "the header block stays bounded"
    );

    let cfg = build(
        &[cli(&[
            "--limit-request-line=9000",
            "--limit-request-fields=40000",
            "--limit-request-field_size=9000",
        ])],
        &no_env,
    )
    .unwrap();
    let limits = cfg.request_limits();
    assert_eq!(
        (
            limits.max_request_line,
            limits.max_headers,
            limits.max_header_field_size
        ),
        (8190, 32768, 9000)
    );
}

#[test]
fn print_config_lists_every_setting_sorted_and_aligned() {
    let cfg = build(
        &[cli(&[
            "-b",
            "[::1]:1",
            "-b",
            "unix:/s",
            "-e",
            "A=1",
            "--print-config",
            "app:x",
        ])],
        &no_env,
    )
    .unwrap();
    let expected = r#"access_log_format            = %(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"
access_log_skip              = []
accesslog                    = None
backlog                      = 2048
bind                         = ['[::1]:1', 'unix:/s']
body_timeout                 = 30
ca_certs                     = None
cert_reqs                    = 0
certfile                     = None
chdir                        = .
check_config                 = True
config                       = None
daemon                       = False
django_static                = False
errorlog                     = -
forwarded_allow_ips          = 127.0.0.1,::1
graceful_timeout             = 30
group                        = None
header_timeout               = 10
http                         = auto
http2_max_concurrent_streams = 100
keepalive                    = 2
keyfile                      = None
limit_request_body           = 0
limit_request_field_size     = 8190
limit_request_fields         = 100
limit_request_line           = 4094
loglevel                     = info
max_requests                 = 0
max_requests_jitter          = 0
max_worker_memory            = 0
metrics_bind                 = None
no_gc_freeze                 = False
pidfile                      = None
preload_app                  = False
print_config                 = True
proxy_allow_ips              = 127.0.0.1,::1
proxy_protocol               = False
pythonpath                   = None
raw_env                      = ['A=1']
reload                       = False
reload_extra_files           = []
request_buffer               = 65536
request_id                   = False
request_queue                = 0
response_buffer              = 1048576
reuse_port                   = False
root_path                    = 
static_map                   = []
static_max_age               = 60
threads                      = 1
timeout                      = 30
tls_min_version              = 1.2
umask                        = 0
user                         = None
worker_connections           = 1000
worker_tmp_dir               = None
workers                      = 1
write_timeout                = 30
wsgi_app                     = app:x
"#;
    assert_eq!(print_config(&cfg), expected);
}

#[test]
fn web_concurrency_is_the_default_for_workers_and_a_flag_wins() {
    let env = |k: &str| (k == "WEB_CONCURRENCY").then(|| "3".to_string());
    let cfg = build(&[cli(&["app:x"])], &env).unwrap();
    assert_eq!(cfg.workers, 3);
    let cfg = build(&[cli(&["-w", "2", "app:x"])], &env).unwrap();
    assert_eq!(cfg.workers, 2);
    let bad = |k: &str| (k == "WEB_CONCURRENCY").then(|| "many".to_string());
    let err = build(&[cli(&["app:x"])], &bad).unwrap_err().to_string();
    assert!(err.contains("WEB_CONCURRENCY"), "{err}");
}

#[test]
fn umask_takes_pythons_int_prefixes_and_refuses_garbage() {
    let cfg = build(&[cli(&["--umask", "0o027", "app:x"])], &no_env).unwrap();
    assert_eq!(cfg.umask, 0o027);
    let cfg = build(&[cli(&["-m", "18", "app:x"])], &no_env).unwrap();
    assert_eq!(cfg.umask, 18);
    let err = build(&[cli(&["--umask", "rwx", "app:x"])], &no_env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("umask"), "{err}");
}

#[test]
fn worker_tmp_dir_must_be_a_directory() {
    let cfg = build(&[cli(&["--worker-tmp-dir", "/", "app:x"])], &no_env).unwrap();
    assert_eq!(
        cfg.worker_tmp_dir.as_deref(),
        Some(std::path::Path::new("/"))
    );
    let err = build(
        &[cli(&["--worker-tmp-dir", "/no/such/dir", "app:x"])],
        &no_env,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("existing directory"), "{err}");
}

#[test]
fn access_log_skip_collects_every_path_and_a_file_list() {
    let cfg = build(
        &[cli(&[
            "--access-log-skip",
            "/healthz",
            "--access-log-skip=/ready",
            "app:x",
        ])],
        &no_env,
    )
    .unwrap();
    assert_eq!(cfg.access_log_skip, ["/healthz", "/ready"]);
    let cfg = build(&[file(&[("access_log_skip", &["/a", "/b"])])], &no_env).unwrap();
    assert_eq!(cfg.access_log_skip, ["/a", "/b"]);
}

#[test]
fn request_id_and_json_format_are_settings_like_any_other() {
    let cfg = build(
        &[cli(&[
            "--request-id",
            "--access-log-format",
            "json",
            "app:x",
        ])],
        &no_env,
    )
    .unwrap();
    assert!(cfg.request_id);
    assert_eq!(cfg.access_log_format.as_str(), "json");
    let cfg = build(&[file(&[("request_id", &["True"])])], &no_env).unwrap();
    assert!(cfg.request_id);
}

#[test]
fn tls_settings_from_flags_and_config_file() {
    assert_eq!(defaults().tls, None);
    let cfg = build(
        &[
            file(&[("ca_certs", &["ca.pem"]), ("cert_reqs", &["1"])]),
            cli(&[
                "--certfile",
                "c.pem",
                "--keyfile",
                "k.pem",
                "--tls-min-version",
                "1.3",
            ]),
        ],
        &no_env,
    )
    .unwrap();
    assert_eq!(
        cfg.tls,
        Some(TlsConfig {
            certfile: "c.pem".into(),
            keyfile: Some("k.pem".into()),
            ca_certs: Some("ca.pem".into()),
            client_certs: ClientCerts::Optional,
            tls13_only: true,
        })
    );
    let printed = print_config(&cfg);
    assert!(
        printed.contains("cert_reqs                    = 1\n"),
        "{printed}"
    );
    assert!(
        printed.contains("tls_min_version              = 1.3\n"),
        "{printed}"
    );
    // The key may sit in the certificate file, as Python's load_cert_chain allows.
    let cfg = build(&[cli(&["--certfile", "both.pem"])], &no_env).unwrap();
    assert_eq!(cfg.tls.unwrap().keyfile, None);
}

#[test]
fn tls_settings_that_cannot_work_are_refused() {
    let err = |args: &[&str]| build(&[cli(args)], &no_env).unwrap_err().to_string();
    assert_eq!(
        err(&["--keyfile", "k.pem"]),
        "--keyfile needs --certfile (the server certificate it belongs to)"
    );
    assert!(err(&["--certfile", "c", "--cert-reqs", "2"]).starts_with("--cert-reqs 1 or 2 needs"));
    assert_eq!(
        err(&["--tls-min-version", "1.0"]),
        "invalid value '1.0' for '--tls-min-version': expected 1.2 or 1.3"
    );
}

#[test]
fn metrics_bind_takes_one_tcp_host_and_port() {
    let cfg = build(&[cli(&["--metrics-bind", "[::1]:9100", "app:x"])], &no_env).unwrap();
    assert_eq!(
        cfg.metrics_bind,
        Some(Bind::Tcp {
            host: "::1".into(),
            port: 9100
        })
    );
    assert!(print_config(&cfg).contains("metrics_bind                 = [::1]:9100\n"));
    let mut layer = Layer::new();
    for (raw, why) in [
        (
            "localhost",
            "expected HOST:PORT with a port, e.g. 127.0.0.1:9100",
        ),
        (
            "unix:/run/m.sock",
            "expected a TCP HOST:PORT, e.g. 127.0.0.1:9100 (not unix: or uwsgi:)",
        ),
    ] {
        assert_eq!(
            layer
                .set_from_file("metrics_bind", vec![raw.into()])
                .unwrap_err()
                .to_string(),
            format!("invalid value '{raw}' for 'metrics_bind' in the config file: {why}")
        );
    }
}
