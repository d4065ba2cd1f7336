//! Locating settings in the config text, so that every error names a line:
//! the line of a validation error's field ([`field_line`]) and the line and
//! column of a byte offset ([`line_col`], for TOML parse errors). Lines come
//! from the spans of toml's own parse, so a setting is found however it is
//! written: under a `[table]` header, as a dotted key, in an inline table,
//! or as one element of an array spread over lines.

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ConfigError;

/// Adds the line of the offending setting to a validation error, when the
/// file holds that setting.
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
/// `trusted_proxies[2]`, `users[1].name`, or a whole table such as
/// `argon2`): the line of its key, or for an element of an array, of the
/// element. `None` when the file does not hold it (a default, or text that
/// does not parse).
pub fn field_line(text: &str, field: &str) -> Option<usize> {
    let doc = DeTable::parse(text).ok()?;
    let mut table: &DeTable<'_> = doc.get_ref();
    let mut current: Option<&Spanned<DeValue<'_>>> = None;
    let mut at = None;
    for segment in field.split('.') {
        let (name, indexes) = segment.split_once('[').unwrap_or((segment, ""));
        if let Some(v) = current {
            table = v.get_ref().as_table()?;
        }
        let (key, mut value) = table.get_key_value(name)?;
        at = Some(key.span().start);
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            let i: usize = index.strip_suffix(']')?.parse().ok()?;
            value = value.get_ref().as_array()?.get(i)?;
            at = Some(value.span().start);
        }
        current = Some(value);
    }
    at.map(|a| line_col(text, a).0)
}

/// 1-based line of the `index`-th (0-based) entry of the array of tables
/// `table` (its `[[table]]` header), for naming a rule by its place in the
/// file.
pub fn table_line(text: &str, table: &str, index: usize) -> Option<usize> {
    field_line(text, &format!("{table}[{index}]"))
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
