//! Reading certificate files: what is refused, and what a reload keeps.

use std::path::Path;

use super::*;
use crate::config::{CertSource, TlsConfig};

/// A self-signed certificate for `gatehouse.test` and its key, PEM.
fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["gatehouse.test".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    (cert.pem(), key.serialize_pem())
}

fn files(dir: &Path, cert: &str, key: &str) -> TlsConfig {
    std::fs::write(dir.join("c.pem"), cert).unwrap();
    std::fs::write(dir.join("k.pem"), key).unwrap();
    TlsConfig {
        certificate: CertSource::Files {
            cert: dir.join("c.pem"),
            key: dir.join("k.pem"),
        },
        http_redirect_bind: None,
    }
}

#[test]
fn a_pair_loads_and_bad_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let (_, other_key) = self_signed();
    let tls = Tls::new(&files(dir.path(), &cert, &key), dir.path()).unwrap();
    assert!(tls.certs().current().is_some());
    // The key is never in the debug output.
    let shown = format!("{tls:?} {:?}", tls.certs());
    assert!(
        !shown.contains("PRIVATE") && !shown.contains(&key[40..80]),
        "{shown}"
    );

    let e = Tls::new(&files(dir.path(), &cert, &other_key), dir.path()).unwrap_err();
    assert!(matches!(e, TlsError::Mismatch { .. }), "{e}");
    let e = Tls::new(&files(dir.path(), "", &key), dir.path()).unwrap_err();
    assert!(e.to_string().contains("no certificate"), "{e}");
    let e = Tls::new(&files(dir.path(), &cert, "junk"), dir.path()).unwrap_err();
    assert!(e.to_string().contains("no usable private key"), "{e}");
    let e = Tls::new(&files(dir.path(), &"x".repeat(2 << 20), &key), dir.path()).unwrap_err();
    assert!(matches!(e, TlsError::TooLarge { .. }), "{e}");
    let mut gone = files(dir.path(), &cert, &key);
    gone.certificate = CertSource::Files {
        cert: dir.path().join("missing.pem"),
        key: dir.path().join("k.pem"),
    };
    let e = Tls::new(&gone, dir.path()).unwrap_err();
    assert!(e.to_string().contains("missing.pem"), "{e}");
}

#[test]
fn a_failed_reload_keeps_the_certificate_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let tls = Tls::new(&files(dir.path(), &cert, &key), dir.path()).unwrap();
    let before = tls.certs().current().unwrap().cert.clone();
    let (cert2, key2) = self_signed();
    files(dir.path(), &cert2, &key);
    assert!(tls.reload(None).is_err());
    assert_eq!(tls.certs().current().unwrap().cert, before);
    files(dir.path(), &cert2, &key2);
    assert!(tls.reload(None).unwrap());
    assert_ne!(tls.certs().current().unwrap().cert, before);
}

#[test]
fn a_reload_may_name_new_paths_which_stay_once_read() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed();
    let tls = Tls::new(&files(dir.path(), &cert, &key), dir.path()).unwrap();
    let first = tls.certs().current().unwrap().cert.clone();
    let (cert2, key2) = self_signed();
    let (c2, k2) = (dir.path().join("c2.pem"), dir.path().join("k2.pem"));
    // Missing files at the new paths: the certificate and paths in force stay.
    assert!(tls.reload(Some((&c2, &k2))).is_err());
    assert_eq!(tls.certs().current().unwrap().cert, first);
    assert!(tls.reload(None).unwrap());
    assert_eq!(tls.certs().current().unwrap().cert, first);

    std::fs::write(&c2, &cert2).unwrap();
    std::fs::write(&k2, &key2).unwrap();
    assert!(tls.reload(Some((&c2, &k2))).unwrap());
    let second = tls.certs().current().unwrap().cert.clone();
    assert_ne!(second, first);
    // The new paths are the ones in force: the old files changing does
    // not matter any more, and a plain reload reads the new ones.
    let (cert3, key3) = self_signed();
    files(dir.path(), &cert3, &key3);
    assert!(tls.reload(None).unwrap());
    assert_eq!(tls.certs().current().unwrap().cert, second);
    assert!(format!("{tls:?}").contains("c2.pem"));
}
