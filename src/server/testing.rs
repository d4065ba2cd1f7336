//! Helpers for the unit tests of the server's modules.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderValue};

use crate::config::{Config, FileConfig};

pub fn config(trusted: &[&str], origin: Option<&str>) -> Config {
    config_with(trusted, origin, |_| {})
}

/// As [`config`], with `edit` applied to the file before validation.
pub fn config_with(
    trusted: &[&str],
    origin: Option<&str>,
    edit: impl FnOnce(&mut FileConfig),
) -> Config {
    let mut file = FileConfig {
        trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
        public_origin: origin.map(String::from),
        ..FileConfig::default()
    };
    edit(&mut file);
    Config::from_file("t.toml".into(), "d".into(), file).unwrap()
}

pub fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_str(v).unwrap());
    }
    h
}

pub fn ip(s: &str) -> Option<IpAddr> {
    Some(s.parse().unwrap())
}
