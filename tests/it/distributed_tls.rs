//! A node on the distributed store over TLS to both services (`rediss://`
//! with `[storage] redis_ca_file`, PostgreSQL with `sslmode=verify-full`
//! and `sslrootcert`), the TLS listeners and CA of `.ci/services`: it
//! serves as over plain TCP, and the same URLs without the CA (the
//! system's roots, which do not hold the test CA) stop the start. The same
//! Redis behind a Sentinel that speaks only TLS (`rediss+sentinel://`).

use reqwest::StatusCode;

use crate::harness::*;

/// The services' TLS URLs and CA, or `None` (skipped) without them.
async fn tls_services() -> Option<(String, String, String, String)> {
    let (_, prefix) = gatehouse::store::outbox::testing::fresh_prefix()?;
    let pg = gatehouse::store::postgres::testing::fresh_database().await?;
    let (Ok(redis), Ok(ca)) = (
        std::env::var("GATEHOUSE_TEST_REDIS_TLS_URL"),
        std::env::var("GATEHOUSE_TEST_SERVICES_CA"),
    ) else {
        assert!(
            std::env::var("GATEHOUSE_REQUIRE_SERVICES").is_err(),
            "the services run without TLS (GATEHOUSE_TEST_REDIS_TLS_URL, \
             GATEHOUSE_TEST_SERVICES_CA): is openssl installed?"
        );
        eprintln!("skipped: the services have no TLS listeners");
        return None;
    };
    Some((redis, pg, prefix, ca))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_reaches_both_services_over_verified_tls() {
    let Some((redis, pg, prefix, ca)) = tls_services().await else {
        return;
    };
    let pg_tls = format!("{pg}?sslmode=verify-full&sslrootcert={ca}");

    // The connector gatehouse builds for this URL really speaks TLS.
    let target = gatehouse::store::tls::pg_target(&pg_tls).unwrap();
    let (pg_client, conn) = target
        .config
        .connect(target.tls.expect("TLS for verify-full"))
        .await
        .unwrap();
    tokio::spawn(conn);
    let ssl: bool = pg_client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the PostgreSQL session is not over TLS");

    let storage = format!(
        "[storage]\nbackend = \"distributed\"\nredis_url = \"{redis}\"\n\
         redis_ca_file = \"{ca}\"\npostgres_url = \"{pg_tls}\"\nprefix = \"{prefix}\"\n"
    );
    let s = TestServer::start(&config_text("", &storage)).await;
    let c = client();
    let r = login(&c, &s, "alice", ALICE_PW, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let token = token_of(&r).expect("a session cookie");
    let verified = reqwest::Client::new()
        .get(s.at("/auth/verify"))
        .header("cookie", format!("gatehouse_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), StatusCode::OK);
    // The sign-in's events reach the chain in PostgreSQL over TLS (the
    // chainer moves them from the outbox within moments).
    let chained = async {
        loop {
            let page =
                crate::api::get_json(&c, &s, "/api/v1/audit?user=alice&kind=login.success").await;
            if !page["events"].as_array().unwrap().is_empty() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), chained)
        .await
        .expect("the sign-in is chained in PostgreSQL");
    let keys = tempfile::tempdir().unwrap();
    share_key(&s.dir, keys.path());
    s.stop().await;

    // Without the CA, the system's roots do not vouch for the services:
    // the start stops, naming the certificate.
    for (without, field) in [
        (
            storage.replace(&format!("redis_ca_file = \"{ca}\"\n"), ""),
            "Redis",
        ),
        (
            storage.replace(&format!("&sslrootcert={ca}"), ""),
            "PostgreSQL",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        share_key(keys.path(), dir.path());
        let message = refused_start(dir.path(), &config_text("", &without)).await;
        assert!(
            message.to_lowercase().contains("certificate"),
            "{field} without its CA: {message}"
        );
    }
}

/// A Sentinel of the test's own, on TLS only, watching the services' TLS
/// Redis: a node finds the master through it (`rediss+sentinel://`), both
/// verified against the CA, and signs in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_finds_its_master_through_a_sentinel_over_tls() {
    let Some((redis, pg, prefix, ca)) = tls_services().await else {
        return;
    };
    let master_port = redis.rsplit(':').next().unwrap().trim_end_matches('/');
    let tls_dir = std::path::Path::new(&ca).parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = crate::proxy::free_port();
    let _sentinel = crate::distributed_sentinel::OwnSentinel::with_conf(
        dir.path(),
        &format!(
            "port 0\ntls-port {port}\nbind 127.0.0.1\ndir {d}\n\
             tls-cert-file {t}/server.pem\ntls-key-file {t}/server.key\n\
             tls-ca-cert-file {ca}\ntls-auth-clients no\ntls-replication yes\n\
             sentinel monitor gh 127.0.0.1 {master_port} 1\n",
            d = dir.path().display(),
            t = tls_dir.display(),
        ),
    );
    let storage = format!(
        "[storage]\nbackend = \"distributed\"\n\
         redis_url = \"rediss+sentinel://127.0.0.1:{port}/gh\"\n\
         redis_ca_file = \"{ca}\"\npostgres_url = \"{pg}\"\nprefix = \"{prefix}\"\n"
    );
    // The Sentinel may take a moment to listen and to learn its master:
    // asked as a node asks it, until it names one.
    let pem = std::fs::read(&ca).unwrap();
    let target = gatehouse::store::redis::Target::from_url(
        &format!("rediss+sentinel://127.0.0.1:{port}/gh"),
        Some(&pem),
    )
    .unwrap();
    let named = async {
        while target.client().await.is_err() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(60), named)
        .await
        .expect("the TLS Sentinel names the master");
    let s = TestServer::start(&config_text("", &storage)).await;
    let r = login(&client(), &s, "alice", ALICE_PW, &[]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let token = token_of(&r).expect("a session cookie");
    assert_eq!(crate::distributed::verify(&s, &token).await, StatusCode::OK);
    s.stop().await;
}
