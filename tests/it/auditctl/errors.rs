//! Bad input: each gets a clear message and the documented exit code.

use super::harness::*;

#[test]
fn bad_input_gets_a_clear_message_and_exit_code() {
    let live = Live::start();
    seed(&live);
    let cases: &[(&[&str], &str)] = &[
        (&["query", "--since", "yesterday"], "invalid time"),
        (&["query", "--until", "2026-13-40"], "invalid time"),
        (&["query", "--cursor", "not-a-cursor"], "invalid cursor"),
        (&["query", "--kind", "login.nope"], "unknown event kind"),
        (&["query", "--limit", "0"], "--limit"),
        (&["query", "--outcome", "maybe"], "unknown outcome"),
        (&["query", "--ip", "300.1.1.1"], "--ip"),
        (&["frobnicate"], "unrecognized subcommand"),
        (&["prune", "--older-than", "soon"], "invalid span"),
    ];
    for (args, needle) in cases {
        let o = live.auditctl(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
    }
    // A cursor from another query is refused too.
    let o = live.auditctl(&["query", "--user", "alice", "--limit", "1"]);
    let c = next_cursor(&o).unwrap();
    let o = live.auditctl(&["query", "--user", "bob", "--cursor", &c]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("different query"), "{}", stderr(&o));
    live.shutdown();

    // No database.
    let empty = tempfile::tempdir().unwrap();
    let o = auditctl_in(empty.path(), &["query"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no database at"), "{}", stderr(&o));
    assert!(stderr(&o).contains("--data-dir"), "{}", stderr(&o));

    // A file held by a process that excludes readers.
    let (dir, db, _) = seeded_copy();
    let hold = gatehouse::store::testing::hold_exclusive(&db).unwrap();
    let o = auditctl_in(dir.path(), &["query"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("locked"), "{}", stderr(&o));
    drop(hold);

    // A file from a newer version.
    gatehouse::store::testing::set_schema_version(&db, 99).unwrap();
    let o = auditctl_in(dir.path(), &["stats"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("newer"), "{}", stderr(&o));
}
