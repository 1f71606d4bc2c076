//! Regenerates docs/settings.md from the settings table:
//! `cargo run -p oxgate-config --example gen_settings_doc > docs/settings.md`.

fn main() {
    print!("{}", oxgate_config::settings_markdown());
}
