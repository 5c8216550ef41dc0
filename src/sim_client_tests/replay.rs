//! The replay server (`vscope-etl sim --replay`) read with the client's decoders (was
//! `crates/sim/src/replay.rs`'s tests).

use std::path::Path;

use axum::http::header;
use tokio::net::TcpListener;

use crate::sim::{ReplayOptions, serve_replay_until};

fn write(dir: &Path, rel: &str, body: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, body).unwrap();
}

/// A replay server of `dir` on an ephemeral port: its base URL, and its stop (which waits for
/// the server to end cleanly).
async fn start(
    dir: &Path,
    gzip: bool,
    token_rate: Option<f64>,
) -> (String, impl std::future::Future<Output = ()>) {
    start_with(
        dir,
        ReplayOptions {
            gzip,
            token_rate,
            ..ReplayOptions::default()
        },
    )
    .await
}

/// [`start`] with any options.
async fn start_with(
    dir: &Path,
    options: ReplayOptions,
) -> (String, impl std::future::Future<Output = ()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve_replay_until(dir.into(), options, listener, async {
        let _ = rx.await;
    }));
    let stop = async move {
        let _ = tx.send(());
        server.await.unwrap().unwrap();
    };
    (base, stop)
}

/// Replayed answers go out gzip to requests that accept it (streamed, or compressed ahead
/// with `--precompress`, decoding to the recorded bytes), plain to the others, and plain to
/// all with gzip off (`--no-gzip`).
#[tokio::test]
async fn answers_are_gzip_when_accepted_unless_turned_off() {
    use crate::extract::body::{BodyDecoder, Encoding};
    let dir = tempfile::tempdir().unwrap();
    let series: Vec<String> = (0..2000)
        .map(|i| format!("\"{}\":{}.25", 1_000_000 + i * 20, i % 13))
        .collect();
    let recorded = format!(
        r#"[{{"metric":"m","tags":{{"datacenter":"dc1"}},"dps":{{{}}}}}]"#,
        series.join(",")
    );
    write(dir.path(), "query/m/dc1/0-100.json", &recorded);
    for (gzip, precompress) in [(true, false), (true, true), (false, false)] {
        let options = ReplayOptions {
            gzip,
            gzip_level: Some(6),
            precompress,
            ..ReplayOptions::default()
        };
        let (base, stop) = start_with(dir.path(), options).await;
        let url = format!("{base}/api/query");
        let body = r#"{"start":0,"end":100,"queries":[{"metric":"m"}]}"#;
        for accept in [true, false] {
            let mut rb = reqwest::Client::new().post(&url).body(body);
            if accept {
                rb = rb.header(header::ACCEPT_ENCODING, "gzip");
            }
            let resp = rb.send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let encoded = resp.headers().get(header::CONTENT_ENCODING).is_some();
            assert_eq!(encoded, gzip && accept, "gzip {gzip}, accepted {accept}");
            // Compressed ahead: sent whole, its length known; on the fly: streamed, chunked.
            let sized = resp.headers().get(header::CONTENT_LENGTH).is_some();
            assert_eq!(sized, !encoded || precompress, "{precompress} {accept}");
            let wire = resp.bytes().await.unwrap();
            let encoding = if encoded {
                Encoding::Gzip
            } else {
                Encoding::Identity
            };
            let mut d = BodyDecoder::new(encoding, 1 << 20, None);
            d.push(&wire).unwrap();
            assert_eq!(d.finish().unwrap(), recorded.as_bytes());
            if encoded {
                assert!(wire.len() * 3 < recorded.len(), "{} bytes", wire.len());
            }
        }
        stop.await;
    }
}

#[tokio::test]
async fn serves_recorded_answers_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "lookup/m.json",
        r#"{"results":[{"tags":{"datacenter":"dc1"}}]}"#,
    );
    write(
        dir.path(),
        "query/m/dc1/0-100.json",
        r#"[{"metric":"m","tags":{"datacenter":"dc1"},"dps":{"1":1}}]"#,
    );
    write(
        dir.path(),
        "query/m/dc2/0-100.json",
        r#"[{"metric":"m","tags":{"datacenter":"dc2"},"dps":{"2":2}}]"#,
    );
    let (base, stop) = start(dir.path(), true, None).await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: &str| {
        http.post(format!("{base}{path}"))
            .body(body.to_string())
            .send()
    };
    let one = post(
        "/api/query",
        r#"{"start":0,"end":100,"queries":[{"metric":"m","filters":[{"type":"literal_or","tagk":"datacenter","filter":"dc1"}]}]}"#,
    )
    .await
    .unwrap();
    assert_eq!(one.status(), 200);
    let (series, _) =
        crate::extract::stream::decode_query_response(&one.bytes().await.unwrap(), 0, 101).unwrap();
    assert_eq!(series.len(), 1);
    let all = post(
        "/api/query",
        r#"{"start":"0","end":100,"queries":[{"metric":"m"}]}"#,
    )
    .await
    .unwrap();
    let (series, _) =
        crate::extract::stream::decode_query_response(&all.bytes().await.unwrap(), 0, 101).unwrap();
    assert_eq!(series.len(), 2);
    let missing = post(
        "/api/query",
        r#"{"start":0,"end":99,"queries":[{"metric":"m"}]}"#,
    )
    .await
    .unwrap();
    assert_eq!(missing.status(), 400);
    let lookup = post("/api/search/lookup", r#"{"metric":"m"}"#)
        .await
        .unwrap();
    assert!(lookup.text().await.unwrap().contains("dc1"));
    let nope = post("/api/search/lookup", r#"{"metric":"../x"}"#)
        .await
        .unwrap();
    assert_eq!(nope.status(), 400);
    stop.await;
}

/// `--token-rate R`: R queries a second per token (a bucket R deep), then 429 with
/// `Retry-After: 1`; another token has its own budget, and the bucket refills with time.
#[tokio::test]
async fn a_token_rate_answers_429_past_the_budget_of_each_token() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "query/m/dc1/0-100.json",
        r#"[{"metric":"m","tags":{"datacenter":"dc1"},"dps":{"1":1}}]"#,
    );
    let (base, stop) = start(dir.path(), false, Some(2.0)).await;
    let url = format!("{base}/api/query");
    let http = reqwest::Client::new();
    let ask = |token: &'static str| {
        http.post(&url)
            .basic_auth("read", Some(token))
            .body(r#"{"start":0,"end":100,"queries":[{"metric":"m"}]}"#)
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(ask("a").await.unwrap().status().as_u16());
    }
    // (A token comes back every 500 ms: the three requests take far less.)
    assert_eq!(statuses, [200, 200, 429]);
    let refused = ask("a").await.unwrap();
    assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
    assert_eq!(ask("b").await.unwrap().status(), 200, "a budget per token");
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(
        ask("a").await.unwrap().status(),
        200,
        "refilled at 2 per second"
    );
    stop.await;
}

/// Compressed ahead or on the fly, the OpenTSDB answers are compressed as OpenTSDB's Netty
/// does, however short (no minimum length), and decode to the recorded bytes.
#[tokio::test]
async fn a_tiny_answer_is_compressed_as_opentsdb_does() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "query/m/dc1/0-100.json", "[]");
    for precompress in [false, true] {
        let options = ReplayOptions {
            gzip: true,
            precompress,
            ..ReplayOptions::default()
        };
        let (base, stop) = start_with(dir.path(), options).await;
        let resp = reqwest::Client::new()
            .post(format!("{base}/api/query"))
            .header(header::ACCEPT_ENCODING, "gzip")
            .body(r#"{"start":0,"end":100,"queries":[{"metric":"m"}]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.headers()[header::CONTENT_ENCODING],
            "gzip",
            "precompress {precompress}"
        );
        let wire = resp.bytes().await.unwrap();
        let mut plain = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&wire[..]), &mut plain)
            .unwrap();
        assert_eq!(plain, b"[]");
        stop.await;
    }
}
