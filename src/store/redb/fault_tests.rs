//! Storage fault tests.
