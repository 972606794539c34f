//! Backend over SQL Server's TDS protocol via the tiberius crate
