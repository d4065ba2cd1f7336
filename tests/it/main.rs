//! Integration tests: one binary, one module per area. The server tests
//! start the real server on a loopback port with a temporary data dir and
//! drive it with a real HTTP client.

mod access;
mod access_tokens;
mod acme;
mod api;
mod apps;
mod auditctl;
mod awaited;
mod backup_load;
mod browser;
mod caddy;
mod child;
mod connections;
mod crash;
mod crash_server;
mod disk_full;
mod distributed;
mod distributed_faults;
mod distributed_outage;
mod distributed_sentinel;
mod distributed_tls;
mod enrollment;
mod factors;
mod fail2ban;
mod fixtures;
mod floods;
mod flow;
mod harness;
mod hostile;
mod jupyter;
mod lifecycle;
mod limits;
mod migrate;
mod nginx;
mod oidc;
mod operations;
mod original;
mod proxy;
mod proxy_memory;
mod regulation;
mod signals;
mod standin;
mod steering;
mod tls;
mod users_cli;
