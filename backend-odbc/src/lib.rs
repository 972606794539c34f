//! Backend over unixODBC via odbc-api
