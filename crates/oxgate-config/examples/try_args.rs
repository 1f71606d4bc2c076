//! temporary
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match oxgate_config::parse_args(&args) {
        Ok(oxgate_config::Command::Run(l)) => {
            match oxgate_config::build(&[l], &|k| std::env::var(k).ok()) {
                Ok(c) => print!("{}", oxgate_config::print_config(&c)),
                Err(e) => println!("BUILD ERR: {e}"),
            }
        }
        Ok(oxgate_config::Command::Help(h)) => print!("{h}"),
        Ok(oxgate_config::Command::Version(h)) => print!("{h}"),
        Err(e) => println!("ERR: {e}"),
    }
}
