//! The benchmarks of fairio live in `benches/`; this library is empty.
