//! Connects with the connection string in `$CMS_FAILOVER_ODBC_SMOKE` (never argv: it may hold
//! a password), runs `SELECT @@VERSION` and prints the result or the classified diagnostics.
//!
//! `CMS_FAILOVER_ODBC_SMOKE='Driver={FreeTDS};Server=127.0.0.1;Port=1433;TDS_Version=7.4;Encryption=off;UID=sa;PWD=…' cargo run -p backend-odbc --example odbc_smoke`

use backend_odbc::{classify, connstr, driver};

fn main() {
    println!("registered drivers: {:?}", driver::installed_drivers());
    let Ok(cs) = std::env::var("CMS_FAILOVER_ODBC_SMOKE") else {
        eprintln!("set CMS_FAILOVER_ODBC_SMOKE to an ODBC connection string");
        std::process::exit(2);
    };
    println!("connecting: {}", connstr::redact(&cs));
    match driver::OdbcConn::connect(&cs, 5) {
        Ok(mut c) => println!("{:?}", c.execute("SELECT @@VERSION AS version;", 5)),
        Err(e) => println!(
            "{}\nclassified as {:?}",
            e.summary(),
            classify::classify(&e)
        ),
    }
}
