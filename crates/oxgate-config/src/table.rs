//! The settings table: every setting's config-file name, command-line flags,
//! section, value kind, documented default and help. Data only; parsing,
//! --help and docs/settings.md are all derived from it elsewhere.

/// The group a setting is listed under in --help and the docs (gunicorn's
/// section names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    ConfigFile,
    ServerSocket,
    WorkerProcesses,
    ServerMechanics,
    StaticFiles,
    Security,
    Ssl,
    Logging,
    Debugging,
}

impl Section {
    /// Listing order in --help and the docs.
    pub const ALL: [Section; 9] = [
        Section::ConfigFile,
        Section::ServerSocket,
        Section::WorkerProcesses,
        Section::ServerMechanics,
        Section::StaticFiles,
        Section::Security,
        Section::Ssl,
        Section::Logging,
        Section::Debugging,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Section::ConfigFile => "Config File",
            Section::ServerSocket => "Server Socket",
            Section::WorkerProcesses => "Worker Processes",
            Section::ServerMechanics => "Server Mechanics",
            Section::StaticFiles => "Static Files",
            Section::Security => "Security",
            Section::Ssl => "SSL",
            Section::Logging => "Logging",
            Section::Debugging => "Debugging",
        }
    }
}

/// What a setting's raw strings must look like, and how often it may be given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Free text, surrounding whitespace trimmed, must not be empty.
    Text,
    /// A filesystem path, must not be empty.
    Path,
    /// A decimal integer within `min..=max`.
    Int { min: u64, max: u64 },
    /// On/off; a flag without value on the command line, true/false in a file.
    Flag,
    /// Repeatable socket address (`HOST:PORT`, `[IPv6]:PORT`, `unix:PATH`).
    Bind,
    /// Repeatable KEY=VALUE pair.
    EnvPair,
    /// Repeatable filesystem path.
    PathList,
    /// Comma-separated list of strings.
    CommaList,
    /// One of debug, info, warning, error, critical.
    LogLevel,
    /// An access-log format (gunicorn's `%(atom)s` syntax).
    AccessLogFormat,
    /// A URL path prefix: empty or starting with '/'.
    UrlPrefix,
    /// `MODULE[:VARIABLE]` of the WSGI application.
    AppUri,
    /// Comma-separated IP addresses, CIDR networks or `*` (peers to trust).
    AddressList,
    /// Repeatable `URL_PREFIX=DIRECTORY` (a static files mount).
    StaticMap,
    /// Repeatable URL path, `/` and visible ASCII (matched exactly).
    UrlPath,
    /// One TCP address, `HOST:PORT` or `[IPv6]:PORT` (no unix: or uwsgi:).
    TcpAddress,
}

impl Kind {
    /// Given more than once in one source, values accumulate instead of the
    /// last one winning.
    pub fn repeatable(self) -> bool {
        matches!(
            self,
            Kind::Bind | Kind::EnvPair | Kind::PathList | Kind::StaticMap | Kind::UrlPath
        )
    }

    /// Takes a value on the command line (everything but flags).
    pub fn takes_value(self) -> bool {
        !matches!(self, Kind::Flag)
    }
}

/// One setting. `name` is the config-file variable (gunicorn's name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub name: &'static str,
    pub section: Section,
    /// Short flag without the dash (`'b'` for `-b`).
    pub short: Option<char>,
    /// Long flag without the dashes; `None` for the positional application.
    pub long: Option<&'static str>,
    /// More long flags that mean the same thing.
    pub aliases: &'static [&'static str],
    /// The value placeholder in --help (`ADDRESS`, `INT`, ...).
    pub meta: &'static str,
    pub kind: Kind,
    /// The default as the docs show it (Python notation, like gunicorn's docs).
    pub default: &'static str,
    /// One sentence for --help.
    pub help: &'static str,
    /// Further paragraphs for docs/settings.md (may be empty).
    pub doc: &'static str,
}

/// Upper bound for `backlog`: the value ends up in `listen(2)`'s `int`.
const I32_MAX: u64 = i32::MAX as u64;

const UNBOUNDED: u64 = u64::MAX;

/// Upper bound for `workers`: the master's scoreboard has this many slots.
pub const MAX_WORKERS: u64 = 512;

/// Every setting oxgate knows. Order within a section is listing order.
pub static SETTINGS: &[Setting] = &[
    Setting {
        name: "config",
        section: Section::ConfigFile,
        short: Some('c'),
        long: Some("config"),
        aliases: &[],
        meta: "CONFIG",
        kind: Kind::Path,
        default: "'./oxgate.conf.py'",
        help: "The Python config file to read settings from.",
        doc: "The file is executed as Python; each module-level variable named like a \
              setting sets it (for example `threads = 4`, `bind = [\"0.0.0.0:80\"]`). \
              Variables that are not settings are ignored. When this option is not \
              given, `./oxgate.conf.py` is read if it exists. Only has an effect on the \
              command line or in `OXGATE_CMD_ARGS`.",
    },
    Setting {
        name: "wsgi_app",
        section: Section::ConfigFile,
        short: None,
        long: None,
        aliases: &[],
        meta: "APP_MODULE",
        kind: Kind::AppUri,
        default: "None",
        help: "The WSGI application to serve, as MODULE[:VARIABLE].",
        doc: "On the command line this is the positional argument, e.g. \
              `oxgate myproject.wsgi:application`. VARIABLE defaults to `application`.",
    },
    Setting {
        name: "bind",
        section: Section::ServerSocket,
        short: Some('b'),
        long: Some("bind"),
        aliases: &[],
        meta: "ADDRESS",
        kind: Kind::Bind,
        default: "['127.0.0.1:8000']",
        help: "The socket to listen on: HOST, HOST:PORT, [IPv6]:PORT or unix:PATH, \
               each also as uwsgi:ADDRESS; repeat to listen on several.",
        doc: "A HOST without port listens on port 8000; `:PORT` listens on all IPv4 \
              interfaces. IPv6 addresses go in brackets: `[::1]:8000`. When no address \
              is given anywhere and the `PORT` environment variable is set, the default \
              is `0.0.0.0:$PORT`. A list given by a later source (command line over \
              `OXGATE_CMD_ARGS` over the config file) replaces the earlier list. \
              `uwsgi:` before an address (`uwsgi:127.0.0.1:9000`, \
              `uwsgi:unix:/run/oxgate/uwsgi.sock`) speaks the uwsgi protocol there \
              instead of HTTP, for nginx's `uwsgi_pass` (see docs/proxies.md).",
    },
    Setting {
        name: "reuse_port",
        section: Section::ServerSocket,
        short: None,
        long: Some("reuse-port"),
        aliases: &[],
        meta: "",
        kind: Kind::Flag,
        default: "False",
        help: "Set SO_REUSEPORT on the listening sockets.",
        doc: "Lets another process (a second oxgate, say) bind the same address.",
    },
    Setting {
        name: "backlog",
        section: Section::ServerSocket,
        short: None,
        long: Some("backlog"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int {
            min: 1,
            max: I32_MAX,
        },
        default: "2048",
        help: "The maximum number of connections waiting to be accepted.",
        doc: "Clients past this queue get a connection error; it only matters under \
              heavy load. Usually 64-2048. The kernel may cap it \
              (`net.core.somaxconn` on Linux).",
    },
    Setting {
        name: "workers",
        section: Section::WorkerProcesses,
        short: Some('w'),
        long: Some("workers"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int {
            min: 1,
            max: MAX_WORKERS,
        },
        default: "1",
        help: "The number of worker processes serving requests.",
        doc: "A master process binds the sockets and keeps this many workers running, \
              replacing any that die. When not set anywhere, the `WEB_CONCURRENCY` \
              environment variable gives the default, as in gunicorn. 2-4 per core is \
              a usual start; SIGTTIN and SIGTTOU change it while running.",
    },
    Setting {
        name: "threads",
        section: Section::WorkerProcesses,
        short: None,
        long: Some("threads"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int {
            min: 1,
            max: UNBOUNDED,
        },
        default: "1",
        help: "The number of threads per worker that run the application.",
        doc: "Each worker process runs the application on this many Python threads, \
              so a worker serves this many requests at once. With 1, the worker's I/O \
              thread calls a fast app itself (no hand-off between threads) and passes \
              requests to its app thread once calls average more than a millisecond; \
              see docs/threads.md.",
    },
    Setting {
        name: "worker_connections",
        section: Section::WorkerProcesses,
        short: None,
        long: Some("worker-connections"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int {
            min: 1,
            max: UNBOUNDED,
        },
        default: "1000",
        help: "The maximum number of simultaneous client connections per worker.",
        doc: "Past it the worker stops accepting; new connections wait in the listen \
              backlog (`--backlog`) until one closes. Idle keep-alive and slow \
              connections count too, but cost no Python thread, so this can be far \
              above `--threads`: an idle connection costs a few KiB. oxgate raises \
              its open-files limit (RLIMIT_NOFILE) to the hard limit at start.",
    },
    Setting {
        name: "request_queue",
        section: Section::WorkerProcesses,
        short: None,
        long: Some("request-queue"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int {
            min: 0,
            max: UNBOUNDED,
        },
        default: "0",
        help: "Requests per worker that may wait for a free app thread; past it they \
               get a 503 at once. 0 means 64 per thread.",
        doc: "A complete request waits here when all `--threads` are busy. When the \
              queue is full, the client gets `503 Service Unavailable` with \
              `Retry-After: 1` at once, instead of a wait that grows without bound. \
              The worst wait is about queue / threads x the time of one request: \
              lower it for slow views. An oxgate setting (granian's backpressure is \
              similar).",
    },
    Setting {
        name: "request_buffer",
        section: Section::WorkerProcesses,
        short: None,
        long: Some("request-buffer"),
        aliases: &[],
        meta: "BYTES",
        kind: Kind::Int {
            min: 0,
            max: UNBOUNDED,
        },
        default: "65536",
        help: "Request bodies up to this size are read in full before the application \
               is called.",
        doc: "So a slow upload of a small body never holds an app thread. Larger \
              bodies stream through `wsgi.input` as the application reads them \
              (with `Expect: 100-continue` honoured on the first read). A body of \
              16 KiB or more read in full is received straight into the `bytes` \
              object that `wsgi.input.read()` of the whole body returns, not into a \
              buffer that the read then copies: with `--threads 1` while the I/O \
              thread is running the application's calls, otherwise into one of the \
              spare objects the app threads make ahead of need once large bodies \
              arrive (bodies up to 1 MiB, and at most 1 MiB of spares per worker, freed \
              after 10 s unused; not in the abi3 build).",
    },
    Setting {
        name: "response_buffer",
        section: Section::WorkerProcesses,
        short: None,
        long: Some("response-buffer"),
        aliases: &[],
        meta: "BYTES",
        kind: Kind::Int {
            min: 0,
            max: UNBOUNDED,
        },
        default: "1048576",
        help: "Response bytes an app thread may hand over ahead of a slow client.",
        doc: "The application's thread moves on once the rest of its response fits in \
              this buffer, so a slow reader holds an app thread only for a response \
              larger than this. A body returned as one bytes object or a list is \
              handed over whole, whatever its size; files sent with \
              `wsgi.file_wrapper` cost nothing here (sendfile).",
    },
    Setting {
        name: "keepalive",
        section: Section::WorkerProcesses,
        short: None,
        long: Some("keep-alive"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int {
            min: 0,
            max: UNBOUNDED,
        },
        default: "2",
        help: "Seconds to wait for the next request on a keep-alive connection.",
        doc: "1-5 seconds suits clients that connect directly; behind a load balancer \
              that reuses connections, set it higher than the balancer's idle timeout. \
              0 closes the connection after each response.",
    },
    Setting {
        name: "header_timeout",
        section: Section::WorkerProcesses,
        short: None,
        long: Some("header-timeout"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int {
            min: 1,
            max: UNBOUNDED,
        },
        default: "10",
        help: "Seconds a client has to send a whole request head.",
        doc: "Counted from the connection's start, or from the first byte of a \
              later request on a kept-alive connection. A client past it (a \
              slowloris sending a byte at a time) is disconnected. gunicorn has no \
              such setting (nginx: client_header_timeout).",
    },
    Setting {
        name: "body_timeout",
        section: Section::WorkerProcesses,
        short: None,
        long: Some("body-timeout"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int {
            min: 1,
            max: UNBOUNDED,
        },
        default: "30",
        help: "Seconds a request body may stall (no byte arriving) before the \
               connection is closed.",
        doc: "For a body read before the application runs, the client is \
              disconnected; for a body the application is streaming, its \
              `wsgi.input` read raises an error. (nginx: client_body_timeout.)",
    },
    Setting {
        name: "write_timeout",
        section: Section::WorkerProcesses,
        short: None,
        long: Some("write-timeout"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int {
            min: 1,
            max: UNBOUNDED,
        },
        default: "30",
        help: "Seconds a response write may stall (the client reading nothing) before \
               the connection is closed.",
        doc: "A client that stops reading its response is disconnected after this \
              long without progress; a slow but moving reader is not. \
              (nginx: send_timeout.)",
    },
    Setting {
        name: "timeout",
        section: Section::WorkerProcesses,
        short: Some('t'),
        long: Some("timeout"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int {
            min: 0,
            max: UNBOUNDED,
        },
        default: "30",
        help: "Seconds a request may run (or a worker may stay silent) before the \
               worker is killed and replaced; 0 disables.",
        doc: "The master logs the method and path of the stuck request and the \
              Python stacks of the worker's threads, then kills the worker and \
              starts a new one.",
    },
    Setting {
        name: "max_requests",
        section: Section::WorkerProcesses,
        short: None,
        long: Some("max-requests"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int {
            min: 0,
            max: UNBOUNDED,
        },
        default: "0",
        help: "Replace a worker after it has served this many requests; 0 disables.",
        doc: "A simple guard against memory leaks. The replacement is started and \
              ready before the old worker stops accepting, so no request is refused.",
    },
    Setting {
        name: "max_requests_jitter",
        section: Section::WorkerProcesses,
        short: None,
        long: Some("max-requests-jitter"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int {
            min: 0,
            max: UNBOUNDED,
        },
        default: "0",
        help: "Add a random 0..=N to max_requests per worker, so workers do not all \
               restart at once.",
        doc: "",
    },
    Setting {
        name: "max_worker_memory",
        section: Section::WorkerProcesses,
        short: None,
        long: Some("max-worker-memory"),
        aliases: &[],
        meta: "MB",
        kind: Kind::Int {
            min: 0,
            max: UNBOUNDED,
        },
        default: "0",
        help: "Replace a worker whose resident memory passes this many MiB; 0 disables.",
        doc: "gunicorn has no such setting (uWSGI's reload-on-rss and granian's \
              workers-max-rss do the same). The master checks every worker's RSS \
              about once a second; the replacement is ready before the old worker \
              stops accepting, so no request is refused.",
    },
    Setting {
        name: "graceful_timeout",
        section: Section::WorkerProcesses,
        short: None,
        long: Some("graceful-timeout"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int {
            min: 0,
            max: UNBOUNDED,
        },
        default: "30",
        help: "Seconds a worker gets to finish its requests after a graceful stop or \
               restart signal.",
        doc: "Workers still running when this time is up are killed.",
    },
    Setting {
        name: "preload_app",
        section: Section::ServerMechanics,
        short: None,
        long: Some("preload"),
        aliases: &[],
        meta: "",
        kind: Kind::Flag,
        default: "False",
        help: "Load the application in the master before forking the workers.",
        doc: "Workers share the loaded code copy-on-write, which saves memory and boot \
              time, and an import error stops oxgate before any worker starts. A reload \
              (SIGHUP) then keeps the code loaded at start: restart oxgate to load new \
              code.",
    },
    Setting {
        name: "no_gc_freeze",
        section: Section::ServerMechanics,
        short: None,
        long: Some("no-gc-freeze"),
        aliases: &[],
        meta: "",
        kind: Kind::Flag,
        default: "False",
        help: "Do not move the objects of the loaded application out of the garbage \
               collector's sight (gc.freeze()).",
        doc: "By default the master calls `gc.collect()` then `gc.freeze()` once `--preload` \
              has loaded the app, and each worker does the same once it has loaded the app \
              and run `post_worker_init`. Frozen objects are never scanned again: a full \
              collection then skips the app's modules, classes and functions instead of \
              walking them all, and in a worker forked after `--preload` it no longer writes \
              to every page holding them, which kept those pages shared copy-on-write. \
              Objects frozen are never collected, so garbage cycles made before that point \
              stay; objects made later are collected as usual.",
    },
    Setting {
        name: "daemon",
        section: Section::ServerMechanics,
        short: Some('D'),
        long: Some("daemon"),
        aliases: &[],
        meta: "",
        kind: Kind::Flag,
        default: "False",
        help: "Detach from the terminal and run in the background.",
        doc: "Standard input, output and error go to /dev/null: give `--error-logfile` \
              (and `--pid`) to see and control the server.",
    },
    Setting {
        name: "worker_tmp_dir",
        section: Section::ServerMechanics,
        short: None,
        long: Some("worker-tmp-dir"),
        aliases: &[],
        meta: "DIR",
        kind: Kind::Path,
        default: "None",
        help: "Accepted for gunicorn compatibility: oxgate needs no heartbeat files.",
        doc: "gunicorn keeps a heartbeat file per worker there (often `/dev/shm`, so a \
              slow disk cannot make workers look dead). oxgate's workers beat in an \
              anonymous shared-memory scoreboard instead, so the setting has no effect; \
              it is accepted, and checked to name a directory, so existing command \
              lines and config files run unchanged.",
    },
    Setting {
        name: "pidfile",
        section: Section::ServerMechanics,
        short: Some('p'),
        long: Some("pid"),
        aliases: &[],
        meta: "FILE",
        kind: Kind::Path,
        default: "None",
        help: "Write the master's process id to this file.",
        doc: "The file is removed when the master exits cleanly.",
    },
    Setting {
        name: "user",
        section: Section::ServerMechanics,
        short: Some('u'),
        long: Some("user"),
        aliases: &[],
        meta: "USER",
        kind: Kind::Text,
        default: "None",
        help: "Run the workers as this user (a name or a numeric uid).",
        doc: "The master binds the sockets first, so privileged ports work; the workers \
              then drop to this user before loading the application.",
    },
    Setting {
        name: "group",
        section: Section::ServerMechanics,
        short: Some('g'),
        long: Some("group"),
        aliases: &[],
        meta: "GROUP",
        kind: Kind::Text,
        default: "None",
        help: "Run the workers as this group (a name or a numeric gid).",
        doc: "",
    },
    Setting {
        name: "umask",
        section: Section::ServerMechanics,
        short: Some('m'),
        long: Some("umask"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Text,
        default: "0",
        help: "The umask of the worker processes (\"0o22\", \"0x12\" or decimal, as \
               Python's int(x, 0)).",
        doc: "",
    },
    Setting {
        name: "chdir",
        section: Section::ServerMechanics,
        short: None,
        long: Some("chdir"),
        aliases: &[],
        meta: "CHDIR",
        kind: Kind::Path,
        default: "'.'",
        help: "Change to this directory before loading the application.",
        doc: "The directory must exist; a relative path is taken from the directory \
              oxgate was started in.",
    },
    Setting {
        name: "pythonpath",
        section: Section::ServerMechanics,
        short: None,
        long: Some("pythonpath"),
        aliases: &[],
        meta: "STRING",
        kind: Kind::CommaList,
        default: "None",
        help: "Comma-separated directories to add to the Python path.",
        doc: "For example `/home/me/myproject,/home/me/mylibrary`.",
    },
    Setting {
        name: "raw_env",
        section: Section::ServerMechanics,
        short: Some('e'),
        long: Some("env"),
        aliases: &[],
        meta: "ENV",
        kind: Kind::EnvPair,
        default: "[]",
        help: "Set an environment variable for the application, as KEY=VALUE; \
               repeat for several.",
        doc: "On the command line: `--env FOO=1 --env BAR=2`; in the config file: \
              `raw_env = [\"FOO=1\", \"BAR=2\"]`. The value may contain `=`.",
    },
    Setting {
        name: "root_path",
        section: Section::ServerMechanics,
        short: None,
        long: Some("root-path"),
        aliases: &[],
        meta: "PATH",
        kind: Kind::UrlPrefix,
        default: "''",
        help: "The URL prefix the application is mounted under (its SCRIPT_NAME).",
        doc: "Use this when a proxy serves the application below a path, e.g. \
              `/app`: requests under the prefix get `SCRIPT_NAME=/app` and the rest \
              of the path in `PATH_INFO`. A trailing slash is dropped. When not set, \
              the `SCRIPT_NAME` environment variable is used, as gunicorn does. \
              (An oxgate setting; gunicorn has no flag for it.)",
    },
    Setting {
        name: "forwarded_allow_ips",
        section: Section::ServerMechanics,
        short: None,
        long: Some("forwarded-allow-ips"),
        aliases: &[],
        meta: "STRING",
        kind: Kind::AddressList,
        default: "'127.0.0.1,::1'",
        help: "Peers (IP addresses, CIDR networks or *) whose X-Forwarded-* and \
               Forwarded headers are believed.",
        doc: "From a listed peer, and from any peer on a unix socket, oxgate sets \
              `REMOTE_ADDR` (and `REMOTE_PORT` when known) from RFC 7239 `Forwarded: \
              for=` or else `X-Forwarded-For`, `wsgi.url_scheme` from `proto=` or \
              `X-Forwarded-Proto` (also `X-Forwarded-Ssl: on` and \
              `X-Forwarded-Protocol: ssl`), and `HTTP_HOST`, `SERVER_NAME` and \
              `SERVER_PORT` from `host=` or `X-Forwarded-Host` and \
              `X-Forwarded-Port`. In a chain of proxies the client is the nearest \
              address that is not itself listed, so a client cannot pick its own \
              address by sending the header. Values that do not parse are ignored. \
              The headers themselves stay in the environ (`HTTP_X_FORWARDED_FOR`...). \
              From other peers the headers are passed on and nothing else changes. \
              When not set, the `FORWARDED_ALLOW_IPS` environment variable is used, \
              as gunicorn does; an empty value trusts nobody.",
    },
    Setting {
        name: "proxy_protocol",
        section: Section::ServerMechanics,
        short: None,
        long: Some("proxy-protocol"),
        aliases: &[],
        meta: "",
        kind: Kind::Flag,
        default: "False",
        help: "Accept a PROXY protocol header (v1 or v2) from the peers of \
               --proxy-allow-from.",
        doc: "For load balancers that speak the PROXY protocol (HAProxy \
              `send-proxy`/`send-proxy-v2`, nginx `proxy_protocol on`, AWS NLB): \
              the header's source address becomes `REMOTE_ADDR`/`REMOTE_PORT`, and \
              a v2 header saying the client used TLS makes `wsgi.url_scheme` \
              `https`. A listed peer may also connect without a header (a health \
              check); a header from a peer that is not listed is refused with 403, \
              and a malformed one with 400.",
    },
    Setting {
        name: "proxy_allow_ips",
        section: Section::ServerMechanics,
        short: None,
        long: Some("proxy-allow-from"),
        aliases: &[],
        meta: "STRING",
        kind: Kind::AddressList,
        default: "'127.0.0.1,::1'",
        help: "Peers (IP addresses, CIDR networks or *) allowed to send a PROXY \
               protocol header.",
        doc: "Only used with --proxy-protocol. Connections over a unix socket are \
              always allowed.",
    },
    Setting {
        name: "static_map",
        section: Section::StaticFiles,
        short: None,
        long: Some("static-map"),
        aliases: &[],
        meta: "URL_PREFIX=DIR",
        kind: Kind::StaticMap,
        default: "[]",
        help: "Serve the files under DIR at URL_PREFIX, without calling the \
               application; repeat for several.",
        doc: "For example `--static-map /static=/srv/app/staticfiles`. Files are sent \
              with sendfile(2) by the worker's I/O loop, never taking an app \
              thread, with a Content-Type from the extension, `ETag` and \
              `Last-Modified` (answering `If-None-Match`/`If-Modified-Since` with \
              304), `Range` requests (206, or 416), `HEAD`, and a `.br` or `.gz` \
              file next to the asked one sent when `Accept-Encoding` allows it \
              (with `Vary: Accept-Encoding`). Names with a content hash \
              (`app.1a2b3c4d5e6f.css`) are cached for a year as immutable; others \
              for --static-max-age. Only GET and HEAD are answered (405 \
              otherwise). A path under the prefix that names no regular file is a \
              404 and never reaches the app: no directory listings or index files, \
              no hidden files (a name starting with '.', except `.well-known`), \
              and no path that leads outside DIR, by `..`, encoded dots and \
              slashes, or symlinks. The longest matching prefix wins.",
    },
    Setting {
        name: "django_static",
        section: Section::StaticFiles,
        short: None,
        long: Some("django-static"),
        aliases: &[],
        meta: "",
        kind: Kind::Flag,
        default: "False",
        help: "Serve Django's STATIC_ROOT at its STATIC_URL (after \
               `manage.py collectstatic`), as --static-map would.",
        doc: "The Django settings are read once the application is loaded. A \
              relative STATIC_URL (`static/`) is served under --root-path, as \
              Django prefixes it; a STATIC_URL on another host (a CDN) is left \
              alone with a warning. Start-up fails with one line when STATIC_ROOT \
              is not set or is not a directory.",
    },
    Setting {
        name: "static_max_age",
        section: Section::StaticFiles,
        short: None,
        long: Some("static-max-age"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int {
            min: 0,
            max: 10 * 365 * 24 * 3600,
        },
        default: "60",
        help: "Seconds browsers may cache a static file whose name has no content \
               hash (Cache-Control: public, max-age).",
        doc: "Hashed names are always cached for a year, as `immutable`.",
    },
    Setting {
        name: "certfile",
        section: Section::Ssl,
        short: None,
        long: Some("certfile"),
        aliases: &[],
        meta: "FILE",
        kind: Kind::Path,
        default: "None",
        help: "Serve HTTPS: the server certificate (PEM), followed by its chain.",
        doc: "With a certificate every TCP listener speaks TLS (1.2 and 1.3, \
              with ALPN `http/1.1`); unix sockets and `uwsgi:` listeners stay \
              plain. The file holds the server's certificate first, then any \
              intermediate certificates. Each worker reads the files when it \
              starts, so a HUP (which replaces the workers) picks up renewed \
              certificates. See docs/tls.md.",
    },
    Setting {
        name: "keyfile",
        section: Section::Ssl,
        short: None,
        long: Some("keyfile"),
        aliases: &[],
        meta: "FILE",
        kind: Kind::Path,
        default: "None",
        help: "The private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC) of --certfile.",
        doc: "When not set, the key is read from --certfile, as gunicorn \
              (Python's `load_cert_chain`) does. Start-up fails with one line \
              when the key does not match the certificate.",
    },
    Setting {
        name: "ca_certs",
        section: Section::Ssl,
        short: None,
        long: Some("ca-certs"),
        aliases: &[],
        meta: "FILE",
        kind: Kind::Path,
        default: "None",
        help: "CA certificates (PEM) that client certificates must chain to.",
        doc: "Used with --cert-reqs 1 or 2 (mutual TLS).",
    },
    Setting {
        name: "cert_reqs",
        section: Section::Ssl,
        short: None,
        long: Some("cert-reqs"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int { min: 0, max: 2 },
        default: "0",
        help: "Client certificates: 0 not asked for, 1 optional, 2 required \
               (Python's ssl.CERT_NONE/OPTIONAL/REQUIRED).",
        doc: "With 1 or 2, --ca-certs is needed. A client certificate that does \
              not chain to --ca-certs fails the handshake, as does none at all \
              with 2. The app sees a verified certificate as `SSL_CLIENT_VERIFY` \
              `SUCCESS`, `SSL_CLIENT_S_DN` (its subject, RFC 4514) and \
              `SSL_CLIENT_CERT` (PEM); with 1 and no certificate, \
              `SSL_CLIENT_VERIFY` is `NONE`.",
    },
    Setting {
        name: "tls_min_version",
        section: Section::Ssl,
        short: None,
        long: Some("tls-min-version"),
        aliases: &[],
        meta: "VERSION",
        kind: Kind::Text,
        default: "1.2",
        help: "The oldest TLS version accepted: 1.2 or 1.3.",
        doc: "TLS 1.0 and 1.1 are never offered.",
    },
    Setting {
        name: "http",
        section: Section::ServerMechanics,
        short: None,
        long: Some("http"),
        aliases: &[],
        meta: "VERSION",
        kind: Kind::Text,
        default: "auto",
        help: "The HTTP versions served: auto, 1 or 2.",
        doc: "`auto` serves HTTP/1.1 and HTTP/2: TLS listeners offer ALPN `h2` and \
              `http/1.1`, and plain TCP and unix listeners also take HTTP/2 with prior \
              knowledge (h2c: a connection that opens with the HTTP/2 preface). `1` \
              serves HTTP/1.x only. `2` serves HTTP/2 only: ALPN offers `h2` alone and \
              a plain connection that does not open with the preface is closed. \
              `Upgrade: h2c` is never acted on, and `uwsgi:` listeners are not \
              affected. See docs/http2.md.",
    },
    Setting {
        name: "http2_max_concurrent_streams",
        section: Section::ServerMechanics,
        short: None,
        long: Some("http2-max-concurrent-streams"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int { min: 1, max: 65535 },
        default: "100",
        help: "The most requests one HTTP/2 connection may have open at once.",
        doc: "Sent to the client in SETTINGS_MAX_CONCURRENT_STREAMS, capped at the \
              worker's `--request-queue` so that one connection alone cannot fill the \
              queue (clients hold back requests past the limit; past the queue each \
              would get a 503). A stream opened past it anyway is refused with \
              REFUSED_STREAM. Requests of all connections share the queue.",
    },
    Setting {
        name: "limit_request_line",
        section: Section::Security,
        short: None,
        long: Some("limit-request-line"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int {
            min: 0,
            max: UNBOUNDED,
        },
        default: "4094",
        help: "The maximum size of the HTTP request line in bytes.",
        doc: "The request line holds the method, the URL (with its query string) and \
              the protocol version, so this bounds the URL length. Longer lines get \
              `414 URI Too Long`. 0 means unlimited; values above 8190 are treated \
              as 8190, as in gunicorn.",
    },
    Setting {
        name: "limit_request_fields",
        section: Section::Security,
        short: None,
        long: Some("limit-request-fields"),
        aliases: &[],
        meta: "INT",
        kind: Kind::Int {
            min: 0,
            max: UNBOUNDED,
        },
        default: "100",
        help: "The maximum number of header fields in a request.",
        doc: "Requests with more get `431 Request Header Fields Too Large`. 0, or a \
              value above 32768, means 32768, as in gunicorn.",
    },
    Setting {
        name: "limit_request_body",
        section: Section::Security,
        short: None,
        long: Some("limit-request-body"),
        aliases: &[],
        meta: "BYTES",
        kind: Kind::Int {
            min: 0,
            max: UNBOUNDED,
        },
        default: "0",
        help: "The maximum size of a request body in bytes; 0 means no limit.",
        doc: "A larger body gets `413 Payload Too Large` and a closed connection: at \
              once when Content-Length says so (before `100 Continue`, and without \
              calling the application), or as soon as a chunked body passes the \
              limit. gunicorn has no such setting (uWSGI's limit-post, nginx's \
              client_max_body_size do the same).",
    },
    Setting {
        name: "limit_request_field_size",
        section: Section::Security,
        short: None,
        long: Some("limit-request-field_size"),
        aliases: &["limit-request-field-size"],
        meta: "INT",
        kind: Kind::Int {
            min: 0,
            max: UNBOUNDED,
        },
        default: "8190",
        help: "The maximum size of one request header field in bytes.",
        doc: "0 means no per-field limit; the whole header block stays bounded by \
              limit_request_fields x (8190 + 2) bytes, as in gunicorn. The flag keeps \
              gunicorn's spelling with an underscore; `--limit-request-field-size` \
              works too.",
    },
    Setting {
        name: "accesslog",
        section: Section::Logging,
        short: None,
        long: Some("access-logfile"),
        aliases: &[],
        meta: "FILE",
        kind: Kind::Text,
        default: "None",
        help: "The access log file to write to; '-' means stdout.",
        doc: "Without it, no access log is written.",
    },
    Setting {
        name: "access_log_format",
        section: Section::Logging,
        short: None,
        long: Some("access-logformat"),
        aliases: &["access-log-format"],
        meta: "STRING",
        kind: Kind::AccessLogFormat,
        default: r#"'%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'"#,
        help: "The access log line format, built from %(atom)s placeholders, or \
               'json' for one JSON object per line.",
        doc: "`%%` is a literal percent sign. Values that come from the client have \
              control characters, `\"` and `\\` written as `\\xNN`, so a request cannot \
              forge log lines. The value `json` (that word alone) writes each request \
              as a JSON object with the keys `time`, `remote_addr`, `method`, `path`, \
              `query`, `protocol`, `status`, `bytes`, `duration_ms`, `user_agent`, \
              `referer`, `request_id` and `pid` (an oxgate format; see \
              docs/logging.md).",
    },
    Setting {
        name: "access_log_skip",
        section: Section::Logging,
        short: None,
        long: Some("access-log-skip"),
        aliases: &[],
        meta: "PATH",
        kind: Kind::UrlPath,
        default: "[]",
        help: "Do not write requests for this URL path to the access log; repeat for \
               several.",
        doc: "The path must match exactly, without the query string: \
              `--access-log-skip /healthz` drops `/healthz` and `/healthz?full=1` but \
              not `/healthz/` or `/healthz/db`. In the config file: \
              `access_log_skip = [\"/healthz\", \"/ready\"]`. (An oxgate setting.)",
    },
    Setting {
        name: "request_id",
        section: Section::Logging,
        short: None,
        long: Some("request-id"),
        aliases: &[],
        meta: "",
        kind: Kind::Flag,
        default: "False",
        help: "Give every request an id: the client's X-Request-ID when it is sane, \
               else a new random one.",
        doc: "The id reaches the app as `HTTP_X_REQUEST_ID`, goes back to the client in \
              an `X-Request-ID` response header unless the app sets its own, and is \
              logged by the `%(rid)s` atom and the `json` format's `request_id` key. \
              A client's value is kept when it is 1 to 200 visible ASCII characters \
              (no spaces or control characters) and the header is sent once; \
              otherwise it is replaced by 32 random hex digits, as are requests \
              without one. (An oxgate setting; see docs/logging.md.)",
    },
    Setting {
        name: "metrics_bind",
        section: Section::Logging,
        short: None,
        long: Some("metrics-bind"),
        aliases: &[],
        meta: "ADDRESS",
        kind: Kind::TcpAddress,
        default: "None",
        help: "Serve Prometheus metrics at /metrics and a status page at / on this \
               HOST:PORT (off by default).",
        doc: "The master answers `GET /metrics` (Prometheus text format 0.0.4: requests \
              by method and status class, latency and queue-wait histograms, requests \
              in flight, workers, restarts by cause, RSS per worker, 503 refusals and \
              slow clients, summed over all workers and kept across worker restarts) \
              and `GET /` (an HTML status page that refreshes itself every 2 seconds: \
              workers, requests in flight, the slowest recent requests); anything else \
              is a 404. Workers count into shared memory; the master serves from its \
              own loop, one request per connection. Bind it to a private address: \
              the status page shows request paths. (An oxgate setting; see \
              docs/metrics.md.)",
    },
    Setting {
        name: "errorlog",
        section: Section::Logging,
        short: None,
        long: Some("error-logfile"),
        aliases: &["log-file"],
        meta: "FILE",
        kind: Kind::Text,
        default: "'-'",
        help: "The error log file to write to; '-' means stderr.",
        doc: "",
    },
    Setting {
        name: "loglevel",
        section: Section::Logging,
        short: None,
        long: Some("log-level"),
        aliases: &[],
        meta: "LEVEL",
        kind: Kind::LogLevel,
        default: "'info'",
        help: "The error log level: debug, info, warning, error or critical.",
        doc: "",
    },
    Setting {
        name: "reload",
        section: Section::Debugging,
        short: None,
        long: Some("reload"),
        aliases: &[],
        meta: "",
        kind: Kind::Flag,
        default: "False",
        help: "Restart workers when a Python file of the application changes \
               (for development).",
        doc: "Each worker checks the files of its imported modules (and \
              `--reload-extra-file`) about once a second. On a change a new worker \
              starts with the new code and, once it is ready, the old one stops. \
              When the new code does not import, the error is logged and the old \
              worker keeps serving until the next change. Not with `--preload`.",
    },
    Setting {
        name: "reload_extra_files",
        section: Section::Debugging,
        short: None,
        long: Some("reload-extra-file"),
        aliases: &[],
        meta: "FILE",
        kind: Kind::PathList,
        default: "[]",
        help: "Also restart workers when this file changes (with --reload); repeatable.",
        doc: "For templates, configuration and other files that are not Python modules.",
    },
    Setting {
        name: "check_config",
        section: Section::Debugging,
        short: None,
        long: Some("check-config"),
        aliases: &[],
        meta: "",
        kind: Kind::Flag,
        default: "False",
        help: "Check the configuration and the application, then exit.",
        doc: "The exit status is 0 when both load, non-zero otherwise.",
    },
    Setting {
        name: "print_config",
        section: Section::Debugging,
        short: None,
        long: Some("print-config"),
        aliases: &[],
        meta: "",
        kind: Kind::Flag,
        default: "False",
        help: "Print the fully resolved settings, then exit; implies --check-config.",
        doc: "",
    },
];

/// The setting with this config-file name.
pub fn setting(name: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.name == name)
}

/// Position of a setting in `SETTINGS` (layers store values by position).
pub(crate) fn index_of(name: &str) -> Option<usize> {
    SETTINGS.iter().position(|s| s.name == name)
}

/// The setting a command-line flag (`-b`, `--bind`, `--log-file`) belongs to.
pub(crate) fn by_flag(flag: &str) -> Option<&'static Setting> {
    if let Some(long) = flag.strip_prefix("--") {
        SETTINGS
            .iter()
            .find(|s| s.long == Some(long) || s.aliases.contains(&long))
    } else {
        let mut chars = flag.strip_prefix('-')?.chars();
        let c = chars.next()?;
        if chars.next().is_some() {
            return None;
        }
        SETTINGS.iter().find(|s| s.short == Some(c))
    }
}

impl Setting {
    /// The primary flag as users type it (`--bind`), or the positional's
    /// placeholder (`APP_MODULE`).
    pub fn flag(&self) -> String {
        match self.long {
            Some(long) => format!("--{long}"),
            None => self.meta.to_string(),
        }
    }

    /// Every spelling for --help and the docs: `-b ADDRESS, --bind ADDRESS`.
    pub fn spellings(&self) -> Vec<String> {
        let meta = if self.kind.takes_value() {
            format!(" {}", self.meta)
        } else {
            String::new()
        };
        let mut out = Vec::new();
        if let Some(c) = self.short {
            out.push(format!("-{c}{meta}"));
        }
        for long in self.long.iter().chain(self.aliases) {
            out.push(format!("--{long}{meta}"));
        }
        if self.long.is_none() {
            out.push(self.meta.to_string());
        }
        out
    }
}
