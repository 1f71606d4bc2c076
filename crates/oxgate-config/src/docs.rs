//! Text generated from the settings table: `--help`, `--version` and the
//! docs/settings.md page. Pure string building; printing is the caller's.

use std::fmt::Write as _;

use crate::access_format::ATOM_DOCS;
use crate::table::{Kind, Section, Setting, SETTINGS};

const WIDTH: usize = 79;
const HELP_INDENT: usize = 10;

const PRECEDENCE: &str = "Settings come from the config file, then the OXGATE_CMD_ARGS \
    environment variable, then the command line; a later source wins, and a list \
    (bind, env) given by a later source replaces the earlier list.";

/// `oxgate --version`, in gunicorn's shape: "oxgate (version 0.1.0)".
pub fn version_text() -> String {
    format!("oxgate (version {})\n", env!("CARGO_PKG_VERSION"))
}

/// `oxgate --help`: every setting grouped by section, with its flags,
/// placeholder, default and help.
pub fn help_text() -> String {
    let mut out = String::new();
    out.push_str("usage: oxgate [OPTIONS] [APP_MODULE]\n\n");
    wrap_into(
        &mut out,
        "Serve a WSGI application with a prefork server. Options and \
        config-file settings keep gunicorn's names and meanings.",
        0,
    );
    out.push('\n');
    wrap_into(&mut out, PRECEDENCE, 0);
    // The positional argument first, as argparse lists it.
    out.push_str("\nArguments:\n");
    for setting in SETTINGS.iter().filter(|s| s.long.is_none()) {
        help_entry(&mut out, setting);
    }
    for section in Section::ALL {
        let _ = writeln!(out, "\n{}:", section.title());
        for setting in settings_in(section).filter(|s| s.long.is_some()) {
            help_entry(&mut out, setting);
        }
    }
    out.push_str("\nOther:\n  -h, --help\n");
    wrap_into(&mut out, "Show this help and exit.", HELP_INDENT);
    out.push_str("  -v, --version\n");
    wrap_into(&mut out, "Show the version and exit.", HELP_INDENT);
    out
}

fn help_entry(out: &mut String, setting: &Setting) {
    let _ = writeln!(out, "  {}", setting.spellings().join(", "));
    wrap_into(out, setting.help, HELP_INDENT);
    if setting.kind == Kind::AccessLogFormat {
        let atoms: Vec<String> = ATOM_DOCS.iter().map(|(a, _)| format!("%({a})s")).collect();
        wrap_into(out, &format!("Atoms: {}.", atoms.join(" ")), HELP_INDENT);
    }
    if setting.long.is_some() {
        wrap_into(out, &format!("[default: {}]", setting.default), HELP_INDENT);
    }
}

/// The docs/settings.md page.
pub fn settings_markdown() -> String {
    let mut out = String::new();
    out.push_str("# Settings\n\n");
    out.push_str(
        "<!-- Generated from crates/oxgate-config/src/table.rs by\n     \
         `cargo run -p oxgate-config --example gen_settings_doc > docs/settings.md`.\n     \
         Do not edit by hand. -->\n\n",
    );
    out.push_str(
        "oxgate takes gunicorn's settings: the same config-file names, command-line \
         flags and meanings. The config file is Python; each module-level variable \
         named like a setting below sets it (`threads = 4`, `bind = [\"0.0.0.0:80\"]`).\n\n",
    );
    let _ = writeln!(out, "{PRECEDENCE}\n");
    out.push_str("Run `oxgate --print-config` to see the resolved values.\n");
    for section in Section::ALL {
        let _ = writeln!(out, "\n## {}", section.title());
        for setting in settings_in(section) {
            setting_markdown(&mut out, setting);
        }
    }
    out
}

fn setting_markdown(out: &mut String, setting: &Setting) {
    let _ = writeln!(out, "\n### `{}`\n", setting.name);
    let spellings: Vec<String> = setting
        .spellings()
        .iter()
        .map(|s| format!("`{s}`"))
        .collect();
    if setting.long.is_some() {
        let _ = writeln!(out, "**Command line:** {}\n", spellings.join(", "));
    } else {
        let _ = writeln!(
            out,
            "**Command line:** positional argument {}\n",
            spellings.join(", ")
        );
    }
    let _ = writeln!(out, "**Default:** `{}`\n", setting.default);
    let _ = writeln!(out, "{}", setting.help);
    if !setting.doc.is_empty() {
        let _ = writeln!(out, "\n{}", setting.doc);
    }
    if setting.kind == Kind::AccessLogFormat {
        out.push_str("\n| Atom | Meaning |\n|------|---------|\n");
        for (atom, meaning) in ATOM_DOCS {
            let _ = writeln!(out, "| `%({atom})s` | {meaning} |");
        }
    }
}

fn settings_in(section: Section) -> impl Iterator<Item = &'static Setting> {
    SETTINGS.iter().filter(move |s| s.section == section)
}

/// Greedy word wrap at `WIDTH`, every line indented by `indent`.
fn wrap_into(out: &mut String, text: &str, indent: usize) {
    let pad = " ".repeat(indent);
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent + line.len() + 1 + word.len() > WIDTH {
            let _ = writeln!(out, "{pad}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{pad}{line}");
    }
}
