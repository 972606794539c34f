//! `cms-failover`: see `cms-failover --help` and examples/README.md.

fn main() {
    std::process::exit(examples::app::main_with(std::env::args_os().collect()));
}
