//! `mssql-sim`: serve a simulated SQL Server estate over TDS on loopback ports.

fn main() -> std::process::ExitCode {
    mssql_sim::cli::main_with(std::env::args_os().collect())
}
