//! In-memory SQL Server estate with deterministic fault injection, and a Backend over it
