//! Integration tests: the real server on a loopback port with a temporary
//! data dir, driven by a real HTTP client.

mod flow;
mod harness;
mod lifecycle;
mod limits;
mod nginx;
mod regulation;
mod signals;
