//! HTTPS delivery: the collector serves TLS with a certificate made for this test; `cainfo`
//! names the CA that signed it. The right CA delivers; a different CA is a certificate error
//! that is retried (the record stays), never a silent send or a loss.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use telem_collector::{Collector, Options};
use telemetry::journal::Outcome;

use crate::common::*;

const T: Duration = Duration::from_secs(15);

/// A self-signed certificate for 127.0.0.1 and localhost: (certificate PEM, key PEM).
fn certificate() -> (String, String) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    (ck.cert.pem(), ck.signing_key.serialize_pem())
}

/// The test collector serving HTTPS with a fresh certificate, and that certificate (PEM).
fn tls_collector() -> (Collector, String) {
    let (cert, key) = certificate();
    let c = Collector::start_tls(
        "127.0.0.1:0",
        Options::default(),
        cert.as_bytes(),
        key.as_bytes(),
    )
    .unwrap();
    (c, cert)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    fs::write(&p, text).unwrap();
    p
}

#[test]
fn https_with_the_right_cainfo_delivers_in_both_formats() {
    let (c, cert) = tls_collector();
    assert!(c.url("/").starts_with("https://127.0.0.1:"));
    let dir = tempfile::tempdir().unwrap();
    let ca = write(dir.path(), "ca.pem", &cert);
    for (path, format) in [("/v2/collector", "headers"), ("/v3/collector", "json")] {
        let mut env = Env::new(&c.url(path), &format!("cainfo={}", ca.display()));
        let r = record(&format!("over TLS as {format}"));
        env.spool(&r, None);
        let before = c.records().len();
        let d = env.start(FAST);
        assert!(c.wait_for_records(before + 1, T), "{}", d.log_text());
        let got = c.records().pop().unwrap();
        assert_eq!(got.format, format);
        assert_eq!(got.headers["event-id"], event_id(&r));
        assert_eq!(got.payload, format!("over TLS as {format}"));
        assert!(wait_until(T, || env.spool_files().is_empty()));
        assert!(d.stop().success());
        let j = env.journal();
        assert_eq!(j.len(), 1);
        assert_eq!(j[0].outcome, Some(Outcome::Delivered));
    }
}

#[test]
fn https_with_another_ca_is_a_certificate_error_and_the_record_stays() {
    let (c, _) = tls_collector();
    let (other_ca, _) = certificate();
    let dir = tempfile::tempdir().unwrap();
    let wrong = write(dir.path(), "other-ca.pem", &other_ca);
    let mut env = Env::new(
        &c.url("/v2/collector"),
        &format!("cainfo={}", wrong.display()),
    );
    let r = record("must not be sent to an unverified server");
    let name = env.spool(&r, None);
    let d = env.start(FAST);
    // The handshake fails before any request: the collector logs nothing, the daemon retries.
    assert!(
        wait_until(T, || env.counter("failed_attempts") >= 2),
        "{}",
        d.log_text()
    );
    assert!(c.requests().is_empty());
    assert!(c.records().is_empty());
    assert_eq!(env.spool_files(), [name]);
    assert!(env.journal().is_empty());
    let err = env.status().and_then(|s| s.last_error).unwrap_or_default();
    assert!(
        err.to_lowercase().contains("certificate") || err.to_lowercase().contains("issuer"),
        "last error should name the certificate problem: {err:?}"
    );
    assert!(d.stop().success());
}
