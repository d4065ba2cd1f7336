//! The stored files: owner-only, read back with their names and dates,
//! an account kept per directory.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, UNIX_EPOCH};

use super::store::AcmeFiles;
use super::*;

/// A self-signed certificate for `names`, valid for 90 days from
/// 2030-01-01, and its key (PEM).
fn cert(names: &[&str]) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.not_before = rcgen::date_time_ymd(2030, 1, 1);
    params.not_after = rcgen::date_time_ymd(2030, 4, 1);
    (params.self_signed(&key).unwrap().pem(), key.serialize_pem())
}

#[test]
fn a_stored_certificate_is_owner_only_and_read_back_with_its_names_and_dates() {
    let dir = tempfile::tempdir().unwrap();
    let files = AcmeFiles::new(dir.path());
    assert!(files.certificate().unwrap().is_none());
    let (chain, key) = cert(&["a.example", "b.example"]);
    files.save_certificate(&chain, &key).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join(DIR)), 0o700);
    assert_eq!(mode(&dir.path().join(DIR).join(CERTIFICATE)), 0o600);
    let s = files.certificate().unwrap().unwrap();
    assert_eq!(s.names, ["a.example", "b.example"]);
    assert!(s.covers(&["b.example".into()]) && !s.covers(&["c.example".into()]));
    let start = UNIX_EPOCH + Duration::from_secs(1_893_456_000); // 2030-01-01
    assert_eq!(s.not_before, start);
    // 90 days of life: renewed after 60.
    assert_eq!(s.renew_at(), start + Duration::from_secs(60 * 86_400));
    // A chain beside another's key is refused.
    let (_, other) = cert(&["a.example"]);
    assert!(files.save_certificate(&chain, &other).is_err());
    assert_eq!(files.certificate().unwrap().unwrap().names.len(), 2);
}

#[test]
fn an_account_is_kept_per_directory_and_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let files = AcmeFiles::new(dir.path());
    assert!(files.account("https://ca.test/dir").unwrap().is_none());
    let stored = serde_json::json!({
        "id": "https://ca.test/acct/1",
        "key_pkcs8": "AAAA",
        "directory": "https://ca.test/dir",
    });
    let credentials: instant_acme::AccountCredentials = serde_json::from_value(stored).unwrap();
    files
        .save_account("https://ca.test/dir", credentials)
        .unwrap();
    let path = dir.path().join(DIR).join(ACCOUNT);
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(files.account("https://ca.test/dir").unwrap().is_some());
    assert!(files.account("https://other.test/dir").unwrap().is_none());
    std::fs::write(&path, "{").unwrap();
    assert!(files.account("https://ca.test/dir").is_err());
}

#[tokio::test]
async fn a_failed_issuance_waits_to_retry_and_the_task_ends_at_stop() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where nothing listens: the issuance fails at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = crate::config::AcmeConfig {
        domains: vec!["a.example".into()],
        directory: format!("https://127.0.0.1:{port}/dir"),
        contact: None,
        ca_file: None,
        challenge: crate::config::AcmeChallenge::TlsAlpn01,
    };
    let certs = Arc::new(Certs::default());
    let acme = Acme::new(&config, dir.path(), certs.clone());
    assert!(acme.load_stored().is_none());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(acme.run(None, async move {
        let _ = stop_rx.await;
    }));
    // Long enough for the refused connection; the retry is minutes away.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!task.is_finished());
    assert!(certs.current().is_none());
    stop_tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("the task did not end at stop")
        .unwrap();
    // Nothing was stored: no account was made.
    assert!(!dir.path().join(DIR).join(ACCOUNT).exists());
}
