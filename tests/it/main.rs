//! Integration tests: one binary, one module per area.

mod auditctl;
mod crash;
