//! HTTPS on the listener: a certificate made here, a collector POST and a query over a real TLS
//! connection that trusts only that certificate, plain HTTP to the TLS port refused without
//! harm, and `check-config` failing on a certificate or key that does not load.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{sqlite_config, v4_headers, TestServer, EVENT};
use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};

const BIN: &str = env!("CARGO_BIN_EXE_telem-server");
const TOKEN: &str = "query-token-0123456789";

/// A self-signed certificate for 127.0.0.1 and localhost, written as cert.pem and key.pem.
fn certificate(dir: &Path) -> (PathBuf, PathBuf) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.signing_key.serialize_pem()).unwrap();
    (cert, key)
}

/// An HTTPS client that trusts only the certificate in `ca`.
fn agent(ca: &Path) -> ureq::Agent {
    let pem = std::fs::read(ca).unwrap();
    let certs: Vec<_> = parse_pem(&pem)
        .filter_map(|i| match i.unwrap() {
            PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .tls_config(
            TlsConfig::builder()
                .root_certs(RootCerts::new_with_certs(&certs))
                .build(),
        )
        .build()
        .into()
}

fn tls_server(dir: &Path) -> (TestServer, PathBuf) {
    let (cert, key) = certificate(dir);
    let mut cfg = sqlite_config(dir);
    cfg.query_token = Some(TOKEN.into());
    cfg.tls = Some(telem_server::config::Tls {
        cert: cert.clone(),
        key,
    });
    (TestServer::start(cfg), cert)
}

#[test]
fn a_record_and_a_query_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, ca) = tls_server(dir.path());
    let https = |p: &str| format!("https://127.0.0.1:{}{p}", srv.addr.port());
    let a = agent(&ca);

    let mut req = a.post(https("/v2/collector"));
    for (k, v) in v4_headers(EVENT) {
        req = req.header(k, v);
    }
    let mut r = req.send("over TLS").unwrap();
    assert_eq!(r.status(), 201);
    let echo: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).expect("a JSON 201 body");
    assert_eq!(echo["payload"], "over TLS");

    let mut r = a
        .get(https("/api/v1/records"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: serde_json::Value =
        serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(list["records"][0]["payload"], "over TLS");
    assert_eq!(list["records"][0]["event_id"], EVENT);

    let r = a.get(https("/api/v1/records")).call().unwrap();
    assert_eq!(r.status(), 401, "the token is still required over TLS");
}

#[test]
fn plain_http_to_the_tls_port_fails_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (srv, ca) = tls_server(dir.path());
    let plain = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build();
    let plain: ureq::Agent = plain.into();
    let r = plain
        .get(format!("http://127.0.0.1:{}/healthz", srv.addr.port()))
        .call();
    assert!(
        r.is_err(),
        "plain HTTP got an answer from the TLS port: {:?}",
        r.map(|r| r.status())
    );
    // A client that trusts someone else is refused in the handshake.
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _) = certificate(other.path());
    let r = agent(&other_ca)
        .get(format!("https://127.0.0.1:{}/healthz", srv.addr.port()))
        .call();
    assert!(r.is_err(), "an untrusted certificate was accepted");

    let mut r = agent(&ca)
        .get(format!("https://127.0.0.1:{}/healthz", srv.addr.port()))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_mut().read_to_string().unwrap(), "ok\n");
}

fn check_config(cfg: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(cfg)
        .env_remove("TELEM_SERVER_CONFIG")
        .output()
        .unwrap()
}

#[test]
fn check_config_loads_the_certificate_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = certificate(dir.path());
    let other = tempfile::tempdir().unwrap();
    let (_, other_key) = certificate(other.path());
    let write = |name: &str, cert: &Path, key: &Path| {
        let p = dir.path().join(name);
        std::fs::write(
            &p,
            format!(
                "listen = \"0.0.0.0:0\"\nquery_token = \"{TOKEN}\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                cert.display(),
                key.display()
            ),
        )
        .unwrap();
        p
    };

    let out = check_config(&write("good.toml", &cert, &key));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("tls: HTTPS"), "{text}");
    assert!(!text.contains("clear text"), "{text}");

    let missing = dir.path().join("missing.pem");
    for (name, c, k, want) in [
        ("no-cert.toml", &missing, &key, "tls.cert"),
        ("no-key.toml", &cert, &missing, "tls.key"),
        ("key-is-a-cert.toml", &cert, &cert, "tls.key"),
        ("other-key.toml", &cert, &other_key, "do not make a usable"),
    ] {
        let out = check_config(&write(name, c, k));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} passed");
        assert!(err.contains(want), "{name}: {err}");
    }

    // Without TLS beyond loopback, the operator is told the token travels in clear.
    let p = dir.path().join("clear.toml");
    std::fs::write(
        &p,
        format!("listen = \"0.0.0.0:0\"\nquery_token = \"{TOKEN}\"\n"),
    )
    .unwrap();
    let out = check_config(&p);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("clear text"));
}
