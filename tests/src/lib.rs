//! Cross-crate integration tests of fairio live in `tests/`; this library is empty.
