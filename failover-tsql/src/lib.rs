//! All T-SQL text the SQL backends send, identifier quoting, and result-row parsing
