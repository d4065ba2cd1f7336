//! End-to-end tests of the `auditctl` binary.
