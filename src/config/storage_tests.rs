//! `[storage]`: the distributed backend named, refused with the line of
//! the setting at fault, and never a password shown.

use super::*;

fn load_text(text: &str) -> Result<Config, ConfigError> {
    let file = parse_file(Path::new("g.toml"), text)?;
    Config::from_file("g.toml".into(), "d".into(), file).map_err(|e| locate(e, text))
}

const DISTRIBUTED: &str = "[storage]\nbackend = \"distributed\"\n\
    redis_url = \"redis://:r3dis-secret@cache.internal:6379/0\"\n\
    postgres_url = \"postgres://gh:pg-secret@db.internal:5432/gatehouse\"\n";

#[test]
fn tls_to_both_services_is_accepted() {
    let text = DISTRIBUTED
        .replace("redis://", "rediss://")
        .replace("/gatehouse\"", "/gatehouse?sslmode=verify-full\"");
    let c = load_text(&text).unwrap();
    let crate::store::BackendConfig::Distributed(d) = c.backend_config() else {
        panic!("not distributed");
    };
    assert!(d.redis_url.starts_with("rediss://"), "{d:?}");
    assert!(d.postgres_url.contains("sslmode=verify-full"), "{d:?}");
}

#[test]
fn a_redis_behind_sentinel_with_replicas_is_accepted_and_its_passwords_hidden() {
    let text = DISTRIBUTED.replace(
        "redis://:r3dis-secret@cache.internal:6379/0",
        "redis+sentinel://:r3dis-secret@s1:26379,s2/gh/0?sentinel_password=s3ntinel-secret",
    ) + "redis_replicas = 1\n";
    let c = load_text(&text).unwrap();
    let crate::store::BackendConfig::Distributed(d) = c.backend_config() else {
        panic!("not distributed");
    };
    assert!(d.redis_url.starts_with("redis+sentinel://"), "{d:?}");
    assert_eq!(d.redis_replicas, 1);
    let shown = format!("{c:?} {} {:?}", c.backend_config(), c.backend_config());
    assert!(
        !shown.contains("r3dis-secret") && !shown.contains("s3ntinel-secret"),
        "{shown}"
    );
    // A Sentinel URL that names no master is refused at the setting.
    let e = load_text(&DISTRIBUTED.replace(
        "redis://:r3dis-secret@cache.internal:6379/0",
        "redis+sentinel://:r3dis-secret@s1:26379",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("g.toml:3: invalid setting `storage.redis_url`")
            && e.contains("names no service")
            && !e.contains("r3dis-secret"),
        "{e}"
    );
}

#[test]
fn the_default_is_the_redb_file_in_the_data_dir() {
    let c = load_text("").unwrap();
    assert!(c.storage.is_none());
    assert!(matches!(
        c.backend_config(),
        crate::store::BackendConfig::Redb { .. }
    ));
}

#[test]
fn distributed_names_both_services_and_hides_their_passwords() {
    let c = load_text(&format!("{DISTRIBUTED}prefix = \"eu-1\"\n")).unwrap();
    let crate::store::BackendConfig::Distributed(d) = c.backend_config() else {
        panic!("distributed");
    };
    assert_eq!(d.prefix, "eu-1");
    assert_eq!(d.redis_url, "redis://:r3dis-secret@cache.internal:6379/0");
    assert_eq!(d.durability, crate::store::redis::Durability::Always);
    let shown = format!("{c:?} {} {:?}", c.backend_config(), c.backend_config());
    assert!(
        !shown.contains("r3dis-secret") && !shown.contains("pg-secret"),
        "{shown}"
    );
    let d = load_text(&format!("{DISTRIBUTED}redis_durability = \"everysec\"\n")).unwrap();
    assert_eq!(
        d.storage.unwrap().durability,
        crate::store::redis::Durability::Everysec
    );
    assert_eq!(
        load_text(DISTRIBUTED).unwrap().storage.unwrap().prefix,
        "gatehouse"
    );
}

#[test]
fn errors_name_file_line_and_field_and_no_password() {
    for (text, starts) in [
        (
            "[storage]\nbackend = \"distributed\"\nredis_url = \"redis://:r3dis-secret@h\"\n"
                .to_string(),
            "g.toml:2: invalid setting `storage.backend`",
        ),
        (
            format!("{DISTRIBUTED}prefix = \"a:b\"\n"),
            "g.toml:5: invalid setting `storage.prefix`",
        ),
        (
            DISTRIBUTED
                .replace("redis://", "rediss://")
                .replace("/0\"", "/0#insecure\""),
            "g.toml:3: invalid setting `storage.redis_url`",
        ),
        (
            format!("{DISTRIBUTED}redis_ca_file = \"/nonexistent/ca.pem\"\n"),
            "g.toml:5: invalid setting `storage.redis_ca_file`",
        ),
        (
            DISTRIBUTED.replace("redis://", "http://"),
            "g.toml:3: invalid setting `storage.redis_url`",
        ),
        (
            DISTRIBUTED.replace(
                "/gatehouse\"",
                "/gatehouse?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem\"",
            ),
            "g.toml:4: invalid setting `storage.postgres_url`",
        ),
        (
            "[storage]\nredis_url = \"redis://:r3dis-secret@h\"\n".to_string(),
            "g.toml:2: invalid setting `storage.redis_url`",
        ),
        (
            format!("{DISTRIBUTED}redis_durability = \"never\"\n"),
            "g.toml:5:",
        ),
    ] {
        let e = load_text(&text).unwrap_err().to_string();
        assert!(e.starts_with(starts), "{e}");
        assert!(
            !e.contains("r3dis-secret") && !e.contains("pg-secret"),
            "{e}"
        );
    }
}

#[test]
fn a_changed_password_is_a_restart_change_without_being_shown() {
    let old = load_text(DISTRIBUTED).unwrap();
    let new = load_text(&DISTRIBUTED.replace("pg-secret", "pg-rotated")).unwrap();
    assert_eq!(old.restart_changes(&new), ["storage.postgres_url"]);
    let moved = load_text(&DISTRIBUTED.replace("cache.internal", "cache2.internal")).unwrap();
    assert_eq!(old.restart_changes(&moved), ["storage.redis_url"]);
}

#[test]
fn the_urls_may_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g.toml");
    std::fs::write(&path, "[storage]\nbackend = \"distributed\"\n").unwrap();
    let ov = Overrides {
        config: Some(path),
        data_dir: Some(dir.path().to_path_buf()),
        redis_url: Some(SecretUrl::new("redis://:r3dis-secret@cache.internal")),
        postgres_url: Some(SecretUrl::new("postgres://gh:pg-secret@db.internal/g")),
        ..Overrides::default()
    };
    assert!(!format!("{ov:?}").contains("secret"));
    let c = Config::load(&ov).unwrap();
    assert_eq!(
        c.storage.unwrap().postgres_url,
        "postgres://gh:pg-secret@db.internal/g"
    );
    let bad = Overrides {
        redis_url: Some(SecretUrl::new(
            "rediss://:r3dis-secret@cache.internal#insecure",
        )),
        ..ov
    };
    let e = Config::load(&bad).unwrap_err().to_string();
    assert!(e.contains("invalid setting `storage.redis_url`"), "{e}");
    assert!(!e.contains("r3dis-secret"), "{e}");
}
