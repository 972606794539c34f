fn main() {
    println!("{:?}", backend_odbc::driver::installed_drivers());
    let cs = std::env::args().nth(1).unwrap();
    match backend_odbc::driver::OdbcConn::connect(&cs, 2) {
        Ok(mut c) => println!("{:?}", c.execute("SELECT 1 AS x", 5)),
        Err(e) => println!("{e:?}\n{:?}", backend_odbc::classify::classify(&e)),
    }
}
