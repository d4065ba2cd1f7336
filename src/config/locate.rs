//! Locating settings in the config text, so that every error names a line:
//! the line of a validation error's field ([`field_line`]) and the line and
//! column of a byte offset ([`line_col`], for TOML parse errors).

use std::collections::HashMap;

use super::ConfigError;

/// Adds the line of the offending setting to a validation error, when the
/// file holds that setting (best effort: `[table]` and `[[users]]` headers
/// and `key = value` lines; dotted or inline keys are not found).
pub(super) fn locate(e: ConfigError, text: &str) -> ConfigError {
    match e {
        ConfigError::Invalid {
            path,
            line: None,
            field,
            reason,
        } => ConfigError::Invalid {
            line: field_line(text, &field),
            path,
            field,
            reason,
        },
        e => e,
    }
}

/// 1-based line of setting `field` (`bind`, `session.idle_secs`,
/// `trusted_proxies[2]`, `users[1].name`, or a whole table such as `argon2`).
pub fn field_line(text: &str, field: &str) -> Option<usize> {
    // Split the field into a table (with the index of a `[[users]]` entry)
    // and a key.
    let (table, index, key) = match field.split_once('.') {
        Some((t, k)) => match t.split_once('[') {
            Some((t, i)) => (
                Some(t),
                i.trim_end_matches(']').parse::<usize>().ok(),
                Some(k),
            ),
            None => (Some(t), None, Some(k)),
        },
        None => {
            let key = field.split('[').next().unwrap_or(field);
            if text.lines().any(|l| header(l) == Some(key)) {
                (Some(key), None, None)
            } else {
                (None, None, Some(key))
            }
        }
    };
    let mut current: Option<&str> = None;
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut current_index = 0;
    for (n, l) in text.lines().enumerate() {
        if let Some(h) = header(l) {
            current = Some(h);
            let c = seen.entry(h).or_insert(0);
            current_index = *c;
            *c += 1;
            if key.is_none() && Some(h) == table {
                return Some(n + 1);
            }
            continue;
        }
        let Some(key) = key else { continue };
        if current != table || index.is_some_and(|i| i != current_index) {
            continue;
        }
        let t = l.trim_start();
        if let Some(rest) = t.strip_prefix(key)
            && rest.trim_start().starts_with('=')
        {
            return Some(n + 1);
        }
    }
    None
}

/// The table name of a `[table]` or `[[table]]` header line.
fn header(line: &str) -> Option<&str> {
    let t = line.trim();
    let t = t.split('#').next().unwrap_or(t).trim();
    let inner = t.strip_prefix("[[").and_then(|r| r.strip_suffix("]]"));
    inner
        .or_else(|| t.strip_prefix('[').and_then(|r| r.strip_suffix(']')))
        .map(str::trim)
}

/// 1-based line and column of byte offset `at` in `text`. Works on bytes, so
/// an offset inside a multi-byte character cannot panic; the column counts bytes.
pub(super) fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = &text.as_bytes()[..at.min(text.len())];
    let line = before.iter().filter(|b| **b == b'\n').count() + 1;
    let col = match before.iter().rposition(|b| *b == b'\n') {
        Some(i) => before.len() - i,
        None => before.len() + 1,
    };
    (line, col)
}
