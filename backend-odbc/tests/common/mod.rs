//! Shared test helpers.
#![allow(dead_code)]

/// Panics (never skips) when the FreeTDS ODBC driver is not registered with unixODBC.
pub fn require_freetds() {
    let drivers = backend_odbc::driver::installed_drivers().unwrap_or_else(|e| {
        panic!("unixODBC is not usable ({e:?}); install unixodbc, odbcinst and tdsodbc")
    });
    assert!(
        drivers.iter().any(|d| d.eq_ignore_ascii_case("FreeTDS")),
        "the FreeTDS ODBC driver is not registered in odbcinst.ini (found {drivers:?}); \
         install tdsodbc (apt-get install -y tdsodbc unixodbc odbcinst) and register it with \
         `odbcinst -i -d -f /usr/share/tdsodbc/odbcinst.ini`"
    );
}

/// Panics when unixODBC has no driver registered at all.
pub fn require_any_driver() {
    let drivers = backend_odbc::driver::installed_drivers().expect("unixODBC is not usable");
    assert!(
        !drivers.is_empty(),
        "no ODBC driver is registered in odbcinst.ini"
    );
}
