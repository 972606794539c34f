//! The cms-failover command-line tool and small library examples
