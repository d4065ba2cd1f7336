//! For tests: whether the factor and pending keys agree with their
//! indexes, as redb's `check()` verifies its tables (every passkey indexed
//! under its own user and nothing else indexed; every pending sign-in in
//! its user's set at its creation and in `pdd` at its deadline, and
//! nothing else there). Reads with `KEYS`, which only a test may do.

use std::collections::{HashMap, HashSet};

use super::RedisState;
use crate::store::chain::hex;

impl RedisState {
    /// Every disagreement found, described.
    pub(crate) async fn factor_problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mut conn = self.conn.clone();
        let p = &self.prefix;
        let keys = async |conn: &mut super::connection::Conn, pattern: String| {
            redis::cmd("KEYS")
                .arg(pattern)
                .query_async::<Vec<String>>(conn)
                .await
                .expect("KEYS")
        };

        let mut owned: HashSet<(String, String)> = HashSet::new();
        for key in keys(&mut conn, format!("{p}:f:*")).await {
            let user = key[p.len() + 3..].to_string();
            let (set, v): (Option<Vec<u8>>, Option<u64>) = redis::cmd("HMGET")
                .arg(&key)
                .arg("set")
                .arg("v")
                .query_async(&mut conn)
                .await
                .expect("HMGET");
            match (set.map(|s| super::factors::decode(&s)), v) {
                (Some(Ok(set)), Some(_)) => {
                    if set.is_empty() {
                        problems.push(format!("{user:?} has an empty set stored"));
                    }
                    for pk in set.passkeys {
                        owned.insert((hex(&pk.credential_id), user.clone()));
                    }
                }
                other => problems.push(format!("{user:?}: set and version {other:?}")),
            }
        }
        let mut indexed: HashSet<(String, String)> = HashSet::new();
        for key in keys(&mut conn, format!("{p}:pk:*")).await {
            let owner: String = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("GET");
            indexed.insert((key[p.len() + 4..].to_string(), owner));
        }
        if owned != indexed {
            problems.push(format!("passkeys {owned:?} but passkey index {indexed:?}"));
        }

        // Pending sign-ins: (user, created) and expires per hash, against
        // the two indexes.
        let mut by_user: HashSet<(String, String, u64)> = HashSet::new();
        let mut by_deadline: HashSet<(String, u64)> = HashSet::new();
        for key in keys(&mut conn, format!("{p}:pd:*")).await {
            let h = key[p.len() + 4..].to_string();
            let f: HashMap<String, String> = redis::cmd("HGETALL")
                .arg(&key)
                .query_async(&mut conn)
                .await
                .expect("HGETALL");
            let num = |k: &str| f.get(k).and_then(|v| v.parse::<u64>().ok());
            match (f.get("user"), num("created"), num("expires")) {
                (Some(user), Some(created), Some(expires)) => {
                    by_user.insert((user.clone(), h.clone(), created));
                    by_deadline.insert((h, expires));
                }
                _ => problems.push(format!("pending sign-in {h} is incomplete: {f:?}")),
            }
        }
        let mut in_sets: HashSet<(String, String, u64)> = HashSet::new();
        for key in keys(&mut conn, format!("{p}:pdu:*")).await {
            let user = key[p.len() + 5..].to_string();
            let members: Vec<(String, u64)> = redis::cmd("ZRANGE")
                .arg(&key)
                .arg(0)
                .arg(-1)
                .arg("WITHSCORES")
                .query_async(&mut conn)
                .await
                .expect("ZRANGE");
            in_sets.extend(members.into_iter().map(|(h, s)| (user.clone(), h, s)));
        }
        if by_user != in_sets {
            problems.push(format!(
                "pending sign-ins {by_user:?} but users' sets {in_sets:?}"
            ));
        }
        let deadlines: Vec<(String, u64)> = redis::cmd("ZRANGE")
            .arg(format!("{p}:pdd"))
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .expect("ZRANGE");
        let deadlines: HashSet<(String, u64)> = deadlines.into_iter().collect();
        if by_deadline != deadlines {
            problems.push(format!(
                "pending sign-ins {by_deadline:?} but deadline index {deadlines:?}"
            ));
        }
        problems
    }
}
