//! End-to-end tests of the `auditctl` binary against a database that a live
//! writer (this test process, standing in for the server: `Store::open`,
//! `Writer::spawn` and the admin socket's stream routes) is writing while
//! `auditctl` reads it through that socket, and against the file itself.

mod errors;
mod files;
mod harness;
mod postgres;
mod reading;
mod through;
