//! Generated text stays in step with the table: docs/settings.md is current,
//! and --help and the docs mention every setting with its flags and default.
#![allow(clippy::unwrap_used)]

use oxgate_config::{help_text, settings_markdown, SETTINGS};

const REGENERATE: &str = "cargo run -p oxgate-config --example gen_settings_doc > docs/settings.md";

#[test]
fn settings_doc_is_up_to_date() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/settings.md");
    let on_disk = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        on_disk == settings_markdown(),
        "docs/settings.md is out of date with the settings table; regenerate it from the \
         workspace root with `{REGENERATE}`"
    );
}

#[test]
fn help_lists_every_setting_with_flags_and_default() {
    let help = help_text();
    for setting in SETTINGS {
        let spellings = setting.spellings().join(", ");
        assert!(
            help.contains(&format!("  {spellings}\n")),
            "--help lacks {spellings}"
        );
        if setting.long.is_some() {
            // Long defaults wrap; compare with whitespace runs collapsed.
            let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                flat.contains(&format!("[default: {}]", setting.default)),
                "--help lacks default of {}",
                setting.name
            );
        }
    }
    assert!(help.contains("  -h, --help\n") && help.contains("  -v, --version\n"));
}

#[test]
fn help_groups_settings_under_gunicorn_section_names() {
    let help = help_text();
    let positions: Vec<usize> = [
        "Config File:",
        "Server Socket:",
        "Worker Processes:",
        "Server Mechanics:",
        "Security:",
        "Logging:",
        "Debugging:",
    ]
    .iter()
    .map(|title| help.find(&format!("\n{title}\n")).unwrap())
    .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn help_lines_fit_a_terminal() {
    for line in help_text().lines() {
        // The default access-log format is one unbreakable word group.
        assert!(
            line.chars().count() <= 79 || !line.contains(' '),
            "too long: {line}"
        );
    }
}

#[test]
fn settings_doc_has_a_section_per_setting() {
    let doc = settings_markdown();
    for setting in SETTINGS {
        assert!(
            doc.contains(&format!("\n### `{}`\n", setting.name)),
            "docs lack {}",
            setting.name
        );
        assert!(doc.contains(&format!("**Default:** `{}`", setting.default)));
    }
}

#[test]
fn setting_names_and_flags_are_unique() {
    let mut names: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
    let mut flags: Vec<String> = SETTINGS
        .iter()
        .flat_map(|s| s.long.iter().chain(s.aliases).map(|l| l.to_string()))
        .collect();
    let mut shorts: Vec<char> = SETTINGS.iter().filter_map(|s| s.short).collect();
    let (n, f, s) = (names.len(), flags.len(), shorts.len());
    names.sort_unstable();
    names.dedup();
    flags.sort_unstable();
    flags.dedup();
    shorts.sort_unstable();
    shorts.dedup();
    assert_eq!((names.len(), flags.len(), shorts.len()), (n, f, s));
    assert!(
        !shorts.contains(&'h') && !shorts.contains(&'v'),
        "-h and -v are help and version"
    );
}
