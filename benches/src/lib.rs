//! Criterion benchmarks
