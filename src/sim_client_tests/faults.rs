//! Injected faults as a client sees them (was `crates/sim/src/faults.rs`'s tests).

use std::time::Duration;

use axum::http::header;

use crate::sim::FaultRule;

fn rule(s: &str) -> FaultRule {
    s.parse().unwrap()
}

/// Over HTTP: a cut body arrives with a 200 head and fails mid-body; a 429 carries its
/// `Retry-After` as an HTTP-date; the invalid-token 500 is Warp 10's AUTHENTICATE error,
/// which quotes its script line, not the token; faults stop after `first=N` and the real
/// answer follows.
#[tokio::test]
async fn injected_answers_look_like_the_real_failures() {
    let cfg = crate::sim::SimConfig {
        datacenters: 1,
        faults: vec![
            rule("cut@first=1"),
            rule("429:date+30@first=2"),
            rule("bad-token@first=3"),
        ],
        ..crate::sim::SimConfig::default()
    };
    let sim = crate::sim::start(cfg, ([127, 0, 0, 1], 0).into())
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/api/query", sim.base_url());
    let body = r#"{"start":1793491200000,"end":1793494800000,"msResolution":true,
        "queries":[{"metric":"vscope.vm.cpu.usage.perc","aggregator":"none"}]}"#;
    let send = || {
        http.post(&url)
            .basic_auth("read", Some("tok-echo"))
            .body(body)
            .send()
    };
    let cut = send().await.unwrap();
    assert_eq!(cut.status(), 200);
    assert!(cut.bytes().await.is_err(), "the body is cut short");
    let limited = send().await.unwrap();
    assert_eq!(limited.status(), 429);
    let ra = limited.headers()[header::RETRY_AFTER].to_str().unwrap();
    let wait = crate::extract::retry::parse_retry_after(ra, std::time::SystemTime::now()).unwrap();
    assert!(
        wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
        "{ra}"
    );
    let refused = send().await.unwrap();
    assert_eq!(refused.status(), 500);
    let text = refused.text().await.unwrap();
    assert!(
        text.contains("'DUP =>AUTHENTICATE<= 20000000 LIMIT'") && !text.contains("tok-echo"),
        "{text}"
    );
    let ok = send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let answer = ok.bytes().await.unwrap();
    assert!(
        answer.starts_with(b"[{"),
        "the real answer after the faults"
    );
    assert_eq!(sim.stats().faults_injected, 3);
    sim.shutdown().await;
}
