//! Access-log atoms: each one rendered on its own, escaping of client text,
//! and format errors.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use chrono::{DateTime, FixedOffset};
use oxgate_config::{AccessLogFormat, AccessRecord};

const REQUEST_HEADERS: &[(&str, &[u8])] = &[
    ("Host", b"example.com"),
    ("Referer", b"http://ref/"),
    ("User-Agent", b"curl/8.0"),
    // base64("alice:secret")
    ("Authorization", b"Basic YWxpY2U6c2VjcmV0"),
    ("X-Dup", b"first"),
    ("X-Dup", b"second"),
];

const RESPONSE_HEADERS: &[(&str, &str)] = &[("Content-Type", "text/plain"), ("X-Served-By", "w1")];

fn time() -> DateTime<FixedOffset> {
    DateTime::parse_from_rfc3339("2000-10-10T13:55:36-07:00").unwrap()
}

fn record() -> AccessRecord<'static> {
    AccessRecord {
        remote_addr: "192.0.2.7",
        method: "GET",
        target: "/x/y?a=1",
        path: "/x/y",
        query: "a=1",
        protocol: "HTTP/1.1",
        status: 200,
        response_bytes: 1234,
        request_headers: REQUEST_HEADERS,
        response_headers: RESPONSE_HEADERS,
        duration: Duration::from_micros(2_001_234),
        time: time(),
        pid: 4242,
        request_id: Some("4bf92f3577b34da6a3ce929d0e0e4736"),
    }
}

fn render_with(fmt: &str, rec: &AccessRecord<'_>) -> String {
    let mut out = String::new();
    AccessLogFormat::parse(fmt).unwrap().render(rec, &mut out);
    out
}

fn render(fmt: &str) -> String {
    render_with(fmt, &record())
}

#[test]
fn each_atom_renders_gunicorns_meaning() {
    let cases = [
        ("%(h)s", "192.0.2.7"),
        ("%(l)s", "-"),
        ("%(u)s", "alice"),
        ("%(t)s", "[10/Oct/2000:13:55:36 -0700]"),
        ("%(r)s", "GET /x/y?a=1 HTTP/1.1"),
        ("%(m)s", "GET"),
        ("%(U)s", "/x/y"),
        ("%(q)s", "a=1"),
        ("%(H)s", "HTTP/1.1"),
        ("%(s)s", "200"),
        ("%(B)s", "1234"),
        ("%(b)s", "1234"),
        ("%(f)s", "http://ref/"),
        ("%(a)s", "curl/8.0"),
        ("%(T)s", "2"),
        ("%(M)s", "2001"),
        ("%(D)s", "2001234"),
        ("%(L)s", "2.001234"),
        ("%(p)s", "<4242>"),
        ("%(rid)s", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("%({host}i)s", "example.com"),
        ("%({HOST}i)s", "example.com"),
        ("%({content-type}o)s", "text/plain"),
        ("%({X-SERVED-BY}o)s", "w1"),
        ("%({PATH}e)s", "-"),
    ];
    for (fmt, want) in cases {
        assert_eq!(render(fmt), want, "{fmt}");
    }
}

#[test]
fn default_format_is_the_combined_log_format() {
    let out = render(oxgate_config::DEFAULT_ACCESS_LOG_FORMAT);
    assert_eq!(
        out,
        r#"192.0.2.7 - alice [10/Oct/2000:13:55:36 -0700] "GET /x/y?a=1 HTTP/1.1" 200 1234 "http://ref/" "curl/8.0""#
    );
}

#[test]
fn time_uses_utc_offset_of_the_record() {
    let rec = AccessRecord {
        time: DateTime::parse_from_rfc3339("2024-02-29T00:00:01Z").unwrap(),
        ..record()
    };
    assert_eq!(render_with("%(t)s", &rec), "[29/Feb/2024:00:00:01 +0000]");
}

#[test]
fn time_offsets_with_minutes_render_as_hhmm() {
    let rec = AccessRecord {
        time: DateTime::parse_from_rfc3339("2001-01-02T03:04:05+05:30").unwrap(),
        ..record()
    };
    assert_eq!(render_with("%(t)s", &rec), "[02/Jan/2001:03:04:05 +0530]");
    let rec = AccessRecord {
        time: DateTime::parse_from_rfc3339("2001-12-31T23:59:59-09:30").unwrap(),
        ..record()
    };
    assert_eq!(render_with("%(t)s", &rec), "[31/Dec/2001:23:59:59 -0930]");
}

#[test]
fn zero_body_bytes_show_dash_for_b_and_zero_for_big_b() {
    let rec = AccessRecord {
        response_bytes: 0,
        ..record()
    };
    assert_eq!(render_with("%(b)s %(B)s", &rec), "- 0");
}

#[test]
fn missing_values_render_as_dash() {
    let rec = AccessRecord {
        remote_addr: "",
        request_headers: &[],
        response_headers: &[],
        request_id: None,
        ..record()
    };
    assert_eq!(
        render_with("%(h)s %(u)s %(f)s %(a)s %({x}i)s %({x}o)s %(rid)s", &rec),
        "- - - - - - -"
    );
}

#[test]
fn repeated_request_header_shows_the_last_value() {
    assert_eq!(render("%({x-dup}i)s"), "second");
}

#[test]
fn repeated_referer_is_joined_with_commas_like_the_environ() {
    let headers: &[(&str, &[u8])] = &[("Referer", b"a"), ("referer", b"b")];
    let rec = AccessRecord {
        request_headers: headers,
        ..record()
    };
    assert_eq!(render_with("%(f)s", &rec), "a,b");
}

#[test]
fn user_is_dash_for_other_schemes_and_bad_base64() {
    for value in [
        &b"Bearer abc"[..],
        b"Basic !!!",
        b"Basic",
        b"Basic OnB3",
        b"Basic /w==",
    ] {
        let headers: &[(&str, &[u8])] = &[("Authorization", value)];
        let rec = AccessRecord {
            request_headers: headers,
            ..record()
        };
        assert_eq!(
            render_with("%(u)s", &rec),
            "-",
            "{}",
            String::from_utf8_lossy(value)
        );
    }
}

#[test]
fn user_scheme_is_case_insensitive_and_password_may_hold_colons() {
    // base64("bob:pa:ss")
    let headers: &[(&str, &[u8])] = &[("authorization", b"basic Ym9iOnBhOnNz")];
    let rec = AccessRecord {
        request_headers: headers,
        ..record()
    };
    assert_eq!(render_with("%(u)s", &rec), "bob");
}

#[test]
fn client_bytes_cannot_break_or_forge_a_line() {
    let headers: &[(&str, &[u8])] = &[(
        "User-Agent",
        b"evil\r\n1.2.3.4 - - \"GET /\" \x1b[31m\\ \x7f \x9b end",
    )];
    let rec = AccessRecord {
        request_headers: headers,
        target: "/a\"b\nc",
        ..record()
    };
    assert_eq!(
        render_with(r#""%(a)s" "%(r)s""#, &rec),
        r#""evil\x0d\x0a1.2.3.4 - - \x22GET /\x22 \x1b[31m\x5c \x7f \x9b end" "GET /a\x22b\x0ac HTTP/1.1""#
    );
}

#[test]
fn non_ascii_header_bytes_render_as_latin1() {
    let headers: &[(&str, &[u8])] = &[("User-Agent", b"caf\xe9")];
    let rec = AccessRecord {
        request_headers: headers,
        ..record()
    };
    assert_eq!(render_with("%(a)s", &rec), "café");
}

#[test]
fn double_percent_is_a_literal_percent() {
    assert_eq!(render("100%% %(s)s%%"), "100% 200%");
}

#[test]
fn literal_text_around_atoms_is_kept() {
    assert_eq!(render("[%(m)s] <%(U)s>"), "[GET] </x/y>");
    assert_eq!(render("no atoms"), "no atoms");
    assert_eq!(render(""), "");
}

#[test]
fn render_appends_to_the_buffer() {
    let mut out = String::from("prefix ");
    AccessLogFormat::parse("%(s)s")
        .unwrap()
        .render(&record(), &mut out);
    assert_eq!(out, "prefix 200");
}

#[test]
fn format_errors_name_the_problem() {
    let cases = [
        (
            "%(zz)s",
            "unknown atom '%(zz)s'; known atoms: h l u t r m U q H s B b f a T M D L p rid {name}i {name}o {name}e",
        ),
        ("%({}i)s", "unknown atom '%({}i)s'; known atoms: h l u t r m U q H s B b f a T M D L p rid {name}i {name}o {name}e"),
        ("%({x}z)s", "unknown atom '%({x}z)s'; known atoms: h l u t r m U q H s B b f a T M D L p rid {name}i {name}o {name}e"),
        ("50% off", "'%' at position 2 must start '%(atom)s'; write '%%' for a literal percent"),
        ("end %", "'%' at position 4 must start '%(atom)s'; write '%%' for a literal percent"),
        ("%(h", "'%(' at position 0 is never closed with ')s'"),
        ("%(h)d", "write '%(h)s': only the 's' conversion is supported"),
    ];
    for (fmt, why) in cases {
        assert_eq!(
            AccessLogFormat::parse(fmt).unwrap_err().to_string(),
            format!("invalid access log format: {why}"),
            "{fmt}"
        );
    }
}

#[test]
fn compiled_format_remembers_its_source() {
    assert_eq!(AccessLogFormat::parse("%(h)s").unwrap().as_str(), "%(h)s");
}

#[test]
fn json_format_writes_every_key_in_order() {
    assert_eq!(
        render("json"),
        concat!(
            r#"{"time":"2000-10-10T13:55:36.000-07:00","remote_addr":"192.0.2.7","#,
            r#""method":"GET","path":"/x/y","query":"a=1","protocol":"HTTP/1.1","#,
            r#""status":200,"bytes":1234,"duration_ms":2001.234,"user_agent":"curl/8.0","#,
            r#""referer":"http://ref/","request_id":"4bf92f3577b34da6a3ce929d0e0e4736","#,
            r#""pid":4242}"#
        )
    );
}

#[test]
fn json_format_writes_null_for_what_is_unknown() {
    let rec = AccessRecord {
        remote_addr: "",
        query: "",
        request_headers: &[],
        request_id: None,
        response_bytes: 0,
        duration: Duration::from_micros(7),
        ..record()
    };
    let out = render_with("json", &rec);
    assert!(out.contains(r#""remote_addr":null,"#), "{out}");
    assert!(out.contains(r#""query":"","#), "{out}");
    assert!(out.contains(r#""bytes":0,"duration_ms":0.007,"#), "{out}");
    assert!(
        out.contains(r#""user_agent":null,"referer":null,"request_id":null,"#),
        "{out}"
    );
}

#[test]
fn json_format_escapes_hostile_client_text() {
    let headers: &[(&str, &[u8])] = &[("User-Agent", b"a\"b\\c\r\n\x00\x1b\x7f\xe9")];
    let rec = AccessRecord {
        request_headers: headers,
        path: "/p\"q",
        ..record()
    };
    let out = render_with("json", &rec);
    assert!(out.contains(r#""path":"/p\"q","#), "{out}");
    assert!(
        out.contains(r#""user_agent":"a\"b\\c\r\n\u0000\u001b\u007f\u00e9","#),
        "{out}"
    );
    assert!(out.is_ascii() && !out.contains('\n'));
}

#[test]
fn only_the_exact_word_json_selects_json() {
    assert_eq!(render("json %(s)s"), "json 200");
    assert_eq!(render("JSON"), "JSON");
}

#[test]
fn response_headers_are_wanted_only_by_formats_that_show_them() {
    let uses = |fmt: &str| AccessLogFormat::parse(fmt).unwrap().uses_response_headers();
    assert!(uses("%({content-type}o)s"));
    assert!(!uses("json"));
    assert!(!uses(oxgate_config::DEFAULT_ACCESS_LOG_FORMAT));
}
