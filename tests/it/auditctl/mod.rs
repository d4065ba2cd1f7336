//! End-to-end tests of the `auditctl` binary against a database that a live
//! writer (this test process, standing in for the server: `Store::open` and
//! `Writer::spawn`) is writing while `auditctl` reads it read-only.

mod errors;
mod files;
mod harness;
mod reading;
