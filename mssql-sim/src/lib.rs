//! A SQL Server simulator that speaks TDS 7.4 and serves a backend-fake estate
