//! What the nodes of one deployment must agree on, checked when a node
//! opens the Redis state:
//!
//! - `<prefix>:schema`: the layout of the keys. The first node writes this
//!   build's [`SCHEMA`]; a node that finds a newer one refuses to start
//!   rather than misread keys it does not know.
//! - `<prefix>:keyfp`: the fingerprint of `secrets.key`
//!   (`SecretBox::fingerprint`). Second factors are sealed with that key, so
//!   a node started with another key file could not open them: it refuses
//!   to start, naming both fingerprints and the fix.
//!
//! Both are claimed with `SET … NX` and read back in one script, so two
//! nodes starting at once agree on the first claim.

use crate::store::error::OpenError;

/// The layout of the keys that this build reads and writes.
pub const SCHEMA: u64 = 1;

/// `KEYS`: schema, keyfp. `ARGV`: this build's schema, this node's
/// fingerprint (`""` to leave it unchecked). Answers the stored schema and
/// fingerprint (`""` when none is stored).
const CLAIM: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local schema = redis.call('GET', KEYS[1])
local fp = ''
if ARGV[2] ~= '' then
  redis.call('SET', KEYS[2], ARGV[2], 'NX')
end
fp = redis.call('GET', KEYS[2]) or ''
return {schema, fp}
"#;

impl super::RedisState {
    /// Claims (or checks) this deployment's key layout and, when
    /// `key_fingerprint` is given, its key file: an error names what
    /// differs and what to do.
    pub async fn check_deployment(&self, key_fingerprint: Option<&str>) -> Result<(), OpenError> {
        let fail = |reason: String| OpenError::Other {
            store: self.name().to_string(),
            reason,
        };
        let mut conn = self.conn.clone();
        let (schema, stored_fp): (String, String) = redis::Script::new(CLAIM)
            .key(format!("{}:schema", self.prefix))
            .key(format!("{}:keyfp", self.prefix))
            .arg(SCHEMA)
            .arg(key_fingerprint.unwrap_or(""))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| fail(e.to_string()))?;
        check_schema(&schema, &self.prefix).map_err(fail)?;
        match key_fingerprint {
            Some(mine) if stored_fp != mine => {
                Err(fail(key_mismatch(mine, &stored_fp, &self.prefix)))
            }
            _ => Ok(()),
        }
    }
}

/// Why a stored layout is not one this build may use.
fn check_schema(stored: &str, prefix: &str) -> Result<(), String> {
    match stored.parse::<u64>() {
        Ok(n) if n <= SCHEMA => Ok(()),
        Ok(n) => Err(format!(
            "the state under the prefix {prefix:?} was written by a newer gatehouse (key \
             layout {n}; this build knows {SCHEMA}); upgrade this node"
        )),
        Err(_) => Err(format!(
            "{prefix}:schema holds {stored:?}, not a key layout number; is the prefix \
             {prefix:?} used by something else?"
        )),
    }
}

fn key_mismatch(mine: &str, theirs: &str, prefix: &str) -> String {
    format!(
        "this node's secrets.key is not the one the deployment uses (fingerprint {mine}; the \
         nodes on the prefix {prefix:?} use {theirs}). Every node needs the same key to open \
         second factors: copy secrets.key from a running node into this node's data directory \
         (mode 0600) and start again"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_newer_or_foreign_layout_is_refused_with_the_reason() {
        assert!(check_schema("1", "gh").is_ok());
        assert!(check_schema("0", "gh").is_ok());
        let newer = check_schema("2", "gh").unwrap_err();
        assert!(
            newer.contains("newer gatehouse") && newer.contains("upgrade"),
            "{newer}"
        );
        let foreign = check_schema("hello", "gh").unwrap_err();
        assert!(foreign.contains("gh:schema"), "{foreign}");
    }

    #[test]
    fn the_key_message_names_both_fingerprints_and_the_fix() {
        let m = key_mismatch("aaaa", "bbbb", "gh");
        assert!(m.contains("aaaa") && m.contains("bbbb"), "{m}");
        assert!(m.contains("copy secrets.key"), "{m}");
    }
}
