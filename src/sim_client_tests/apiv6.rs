//! The API v6 client against the simulator's API v6 (was `crates/sim/src/apiv6.rs`'s tests).

use crate::extract::retry::FailureClass;
use crate::ovh::{ClientSettings, Credentials, OvhClient, OvhError};
use crate::secret::Secret;
use crate::sim::SimConfig;
use std::sync::atomic::Ordering;

fn settings() -> ClientSettings {
    ClientSettings {
        timeout: std::time::Duration::from_secs(10),
        connect_timeout: std::time::Duration::from_secs(5),
        max_attempts: 2,
        requests_per_second: 0.0,
        gzip: true,
        max_answer_bytes: 1 << 20,
    }
}

fn client(sim: &crate::sim::SimHandle, secret: &str, ck: &str) -> OvhClient {
    let d = SimConfig::default();
    OvhClient::new(
        url::Url::parse(&format!("{}/1.0", sim.base_url())).unwrap(),
        Credentials {
            application_key: d.ovh_application_key,
            application_secret: Secret::new(secret),
            consumer_key: Secret::new(ck),
        },
        &settings(),
    )
    .unwrap()
}

async fn sim(config: SimConfig) -> crate::sim::SimHandle {
    crate::sim::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn code(e: &OvhError) -> Option<&str> {
    match e {
        OvhError::Status { error_code, .. } => error_code.as_deref(),
        _ => None,
    }
}

#[tokio::test]
async fn signed_calls_succeed_and_the_time_offset_is_fetched_once() {
    let d = SimConfig::default();
    let s = sim(d.clone()).await;
    let c = client(&s, &d.ovh_application_secret, &d.ovh_consumer_key);
    let ids: Vec<i64> = c
        .get("/dc", "/dedicatedCloud/pcc-37-187-228-180/datacenter")
        .await
        .unwrap();
    assert_eq!(ids, [869, 870]);
    assert!(c.time_delta().await.unwrap().abs() <= 2);
    let before = s.stats().requests;
    let _: Vec<i64> = c
        .get("/u", "/dedicatedCloud/pcc-37-187-228-180/user?name=admin")
        .await
        .unwrap();
    assert_eq!(s.stats().requests - before, 1, "no second /auth/time");
    let u: Vec<i64> = c
        .get("/u", "/dedicatedCloud/pcc-37-187-228-180/user?name=nobody")
        .await
        .unwrap();
    assert!(u.is_empty());
    let vm: crate::ovh::model::Vm = c
        .get(
            "/vm",
            "/dedicatedCloud/pcc-37-187-228-180/datacenter/869/vm/10000",
        )
        .await
        .unwrap();
    assert_eq!(vm.mo_ref, "vm-01254");
    assert!(vm.cpu_used.is_some(), "live fields come from the series");
    let e = c
        .get::<serde_json::Value>("/x", "/dedicatedCloud/other-pcc")
        .await
        .unwrap_err();
    assert!(e.is_not_found(), "{e}");
    s.shutdown().await;
}

/// API v6 answers come back gzip (the client asks for it) and both byte counts are kept:
/// fewer bytes on the wire than decoded; equal when the server ignores the header. The
/// answers are the same either way, error pages included (a 404 is compressed too).
#[tokio::test]
async fn api_v6_answers_travel_gzip_and_both_byte_counts_are_kept() {
    let mut answers = Vec::new();
    for gzip in [true, false] {
        let d = SimConfig {
            gzip,
            ..SimConfig::default()
        };
        let s = sim(d.clone()).await;
        let c = client(&s, &d.ovh_application_secret, &d.ovh_consumer_key);
        let vm: crate::ovh::model::Vm = c
            .get(
                "/vm",
                "/dedicatedCloud/pcc-37-187-228-180/datacenter/869/vm/10000",
            )
            .await
            .unwrap();
        let (decoded, wire) = (
            c.stats().bytes.load(Ordering::Relaxed),
            c.stats().bytes_on_wire.load(Ordering::Relaxed),
        );
        if gzip {
            assert!(wire < decoded, "{wire} on the wire for {decoded} decoded");
        } else {
            assert_eq!(wire, decoded);
        }
        let e = c
            .get::<serde_json::Value>("/x", "/dedicatedCloud/other-pcc")
            .await
            .unwrap_err();
        assert!(e.is_not_found(), "{e}");
        assert!(
            c.stats().bytes_on_wire.load(Ordering::Relaxed) > wire,
            "the error page counts on the wire"
        );
        answers.push((vm.mo_ref, e.to_string()));
        s.shutdown().await;
    }
    assert_eq!(answers[0], answers[1]);
}

#[tokio::test]
async fn refusals_look_like_the_real_api() {
    let d = SimConfig {
        ovh_access_rules: vec![("GET".into(), "/dedicatedCloud".into())],
        ..SimConfig::default()
    };
    let s = sim(d.clone()).await;
    let bad = client(&s, "not-the-secret", &d.ovh_consumer_key);
    let e = bad
        .get::<Vec<String>>("/dedicatedCloud", "/dedicatedCloud")
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some("INVALID_SIGNATURE"), "{e}");
    assert!(matches!(e, OvhError::Status { status: 400, .. }), "{e}");
    assert_eq!(e.class(), FailureClass::Auth);
    assert!(!e.to_string().contains("not-the-secret"));
    let unknown_ck = client(&s, &d.ovh_application_secret, "another-consumer-key");
    let e = unknown_ck
        .get::<Vec<String>>("/dedicatedCloud", "/dedicatedCloud")
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some("INVALID_CREDENTIAL"), "{e}");
    assert!(!e.to_string().contains("another-consumer-key"));
    let good = client(&s, &d.ovh_application_secret, &d.ovh_consumer_key);
    let pccs: Vec<String> = good
        .get("/dedicatedCloud", "/dedicatedCloud")
        .await
        .unwrap();
    assert_eq!(pccs, ["pcc-37-187-228-180"]);
    // Only the exact path is granted.
    let e = good
        .get::<Vec<i64>>("/dc", "/dedicatedCloud/pcc-37-187-228-180/datacenter")
        .await
        .unwrap_err();
    assert_eq!(code(&e), Some("NOT_GRANTED_CALL"), "{e}");
    assert!(e.to_string().contains("lacks the right GET /dc"), "{e}");
    s.shutdown().await;
}

#[tokio::test]
async fn metrics_tokens_are_issued_for_known_users() {
    let d = SimConfig::default();
    let s = sim(d.clone()).await;
    let c = client(&s, &d.ovh_application_secret, &d.ovh_consumer_key);
    let (user, t) = crate::ovh::metrics_token(&c, &d.service_name, None)
        .await
        .unwrap();
    assert_eq!(user, 1, "admin");
    assert_eq!(t.token.expose(), d.issued_token());
    assert_eq!(t.opentsdb_endpoint, s.base_url());
    let e = crate::ovh::metrics_token(&c, &d.service_name, Some(99))
        .await
        .unwrap_err();
    assert!(matches!(e, OvhError::MetricsTokenUnavailable { .. }), "{e}");
    s.shutdown().await;
}
