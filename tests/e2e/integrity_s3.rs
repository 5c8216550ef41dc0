//! Issue 16 on a real S3-compatible server (moto): a run killed while publishing, an upload
//! the store refuses, and a store that loses every object in the middle of a run. Each ends,
//! after the next run, with exactly the clean run's rows; none leaves a partial window visible
//! or a ledger claiming what is not there.

use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::ObjectStoreExt;

use crate::common::*;

const NOW: &str = "2026-11-03T00:00:00Z";
const SCOPE: &str =
    "start = \"2026-11-01T00:00:00Z\"\nend = \"2026-11-02T00:00:00Z\"\nwindow = \"6h\"";

fn source(sim_extra: &str) -> String {
    format!(
        "url = \"sim\"\nrequests_per_second = 0\n[source.sim]\ndatacenters = 1\n\
         hosts_per_datacenter = 1\nvms_per_datacenter = 3\nfilers_per_datacenter = 1\n{sim_extra}"
    )
}

/// `[sink]` for `s3://bucket/prefix` through `endpoint` (moto itself, or a proxy before it).
fn sink_toml(endpoint: &str, bucket: &str, prefix: &str) -> String {
    format!(
        "url = \"s3://{bucket}/{prefix}\"\n[sink.s3]\nendpoint = \"http://{endpoint}\"\nregion = \"us-east-1\"\nallow_http = true\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\n"
    )
}

fn run_with(p: &Path, env: &[(&str, &str)], flags: &[&str]) -> std::process::Output {
    run_pipeline_at(p, NOW, env, flags)
}

fn rows(root: &Path) -> Vec<Vec<String>> {
    rows_by_content(root, &TABLE_NAMES)
}

fn clean_rows() -> &'static Vec<Vec<String>> {
    static CLEAN: std::sync::OnceLock<Vec<Vec<String>>> = std::sync::OnceLock::new();
    CLEAN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let sink = format!("url = \"{}\"", dir.path().join("out").display());
        let p = write_pipeline_with_sink(dir.path(), "clean", &source(""), SCOPE, TABLES, &sink);
        let out = run_with(&p, &[], &[]);
        assert!(out.status.success(), "{}", describe(&out));
        rows(&dir.path().join("out"))
    })
}

fn assert_clean_on_s3(moto: &MotoServer, prefix: &str, what: &str) {
    let dir = tempfile::tempdir().unwrap();
    moto.download(prefix, dir.path());
    let got = rows(dir.path());
    for (i, (g, w)) in got.iter().zip(clean_rows()).enumerate() {
        assert!(
            g == w,
            "{what}: {} has {} rows, the clean run {}",
            TABLE_NAMES[i],
            g.len(),
            w.len()
        );
    }
    let keys = moto.keys();
    let stray: Vec<&String> = keys
        .iter()
        .filter(|k| k.starts_with(&format!("{prefix}/_tmp/")) || k.ends_with(".publish.json"))
        .collect();
    assert!(
        stray.is_empty(),
        "{what}: left staged or journaled: {stray:?}"
    );
    assert!(
        moto.pending_uploads(&format!("{prefix}/")).is_empty(),
        "{what}"
    );
}

/// Item 3 on S3 (where a move is a copy then a delete): runs killed at points of their
/// publications, after a fetch-limit split re-cut committed windows or on fresh windows; the
/// next incremental run (no `--force`) ends with the clean rows each time.
#[test]
fn runs_killed_while_publishing_on_s3_are_repaired_by_the_next_run() {
    let moto = MotoServer::start("crash");
    let mut rng = fastrand::Rng::with_seed(3);
    let mut cases: Vec<(u32, bool)> = vec![(1, true), (2, false)];
    cases.extend((0..4).map(|i| (rng.u32(3..80), i % 2 == 0)));
    for (n, (crash_after, recut)) in cases.into_iter().enumerate() {
        let prefix = format!("c{n}");
        let dir = tempfile::tempdir().unwrap();
        let p = |sim: &str| {
            let sink = sink_toml(&moto.endpoint, &moto.bucket, &prefix);
            write_pipeline_with_sink(dir.path(), "crash", &source(sim), SCOPE, TABLES, &sink)
        };
        let what = format!(
            "S3, {}",
            kill_while_publishing_then_rerun(&p, crash_after, recut, "2026-11-01T00:00:00Z", NOW)
        );
        assert_clean_on_s3(&moto, &prefix, &what);
    }
}

/// A proxy before moto that refuses (403 AccessDenied, not retried) every write of a key
/// holding `needle`, as a store refusing one table's uploads would.
struct RefusingProxy {
    endpoint: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RefusingProxy {
    fn start(upstream: &str, needle: &'static str) -> RefusingProxy {
        let upstream = upstream.to_string();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                let client = reqwest::Client::new();
                let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
                    let (client, upstream) = (client.clone(), upstream.clone());
                    async move { forward(&client, &upstream, needle, req).await }
                });
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        RefusingProxy {
            endpoint: addr.to_string(),
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for RefusingProxy {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    needle: &str,
    req: axum::extract::Request,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let writes = !matches!(parts.method.as_str(), "GET" | "HEAD" | "DELETE");
    if writes && path.contains(needle) {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code>\
                   <Message>Access Denied</Message></Error>";
        return (axum::http::StatusCode::FORBIDDEN, xml).into_response();
    }
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let method = reqwest::Method::from_bytes(parts.method.as_str().as_bytes()).unwrap();
    let mut rb = client.request(method, format!("http://{upstream}{path}"));
    for (k, v) in &parts.headers {
        if k.as_str() != "host" {
            rb = rb.header(k.as_str(), v.as_bytes());
        }
    }
    let resp = rb.body(body.to_vec()).send().await.unwrap();
    let status = axum::http::StatusCode::from_u16(resp.status().as_u16()).unwrap();
    let headers: Vec<(String, Vec<u8>)> = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.as_bytes().to_vec()))
        .collect();
    let bytes = resp.bytes().await.unwrap();
    let mut out = (status, bytes.to_vec()).into_response();
    for (k, v) in headers {
        if k != "content-length" && k != "transfer-encoding" {
            out.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                axum::http::HeaderValue::from_bytes(&v).unwrap(),
            );
        }
    }
    out
}

/// Item 4: the store refuses the `vm_metrics_1h` uploads of every window: the run fails its
/// windows, and not one object of any table becomes visible (every file is staged, and
/// published only when the whole window is); nothing stays staged. The next run, on a store
/// that accepts, writes the clean rows.
#[test]
fn a_refused_upload_on_s3_leaves_no_table_visible() {
    let moto = MotoServer::start("refused");
    // The last table a window finishes: the others are complete by then.
    let proxy = RefusingProxy::start(&moto.endpoint, "vm_metrics_1h");
    let dir = tempfile::tempdir().unwrap();
    let p = |endpoint: &str| {
        let sink = sink_toml(endpoint, &moto.bucket, "x");
        write_pipeline_with_sink(dir.path(), "refused", &source(""), SCOPE, TABLES, &sink)
    };
    let out = run_with(&p(&proxy.endpoint), &[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let visible: Vec<String> = moto
        .keys()
        .into_iter()
        .filter(|k| {
            TABLE_NAMES
                .iter()
                .any(|t| k.starts_with(&format!("x/{t}/")))
        })
        .collect();
    assert!(
        visible.is_empty(),
        "visible after a failed upload: {visible:?}"
    );
    assert!(
        moto.keys().iter().all(|k| !k.starts_with("x/_tmp/")),
        "staged files discarded"
    );
    drop(proxy);
    let out = run_with(&p(&moto.endpoint), &[], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_clean_on_s3(&moto, "x", "after a refused upload");
}

/// Item 5: every object of the bucket is lost while the run is in its second window (the S3
/// server restarted empty). The run must not write a ledger claiming windows whose files are
/// gone (it stops, exit non-zero); the next run, without `--force`, ends with the clean rows:
/// no window missing for good.
#[test]
fn a_store_that_loses_its_objects_mid_run_leaves_no_hole() {
    let moto = MotoServer::start("lossy");
    let dir = tempfile::tempdir().unwrap();
    let p = |sim: &str| {
        let sink = sink_toml(&moto.endpoint, &moto.bucket, "l");
        write_pipeline_with_sink(dir.path(), "lossy", &source(sim), SCOPE, TABLES, &sink)
    };
    // Request 1 is the token check, then 23 units a window: request 30 is in the second.
    let path = p("faults = [\"stall:4s@requests=30\"]");
    let child = bin()
        .args(["run", path.to_str().unwrap(), "--json", "--now", NOW])
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !moto.keys().iter().any(|k| k == "l/_state/lossy.json") {
        assert!(
            Instant::now() < deadline,
            "the first window was never committed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Every object lost, as a server restarted empty would have it.
    let sink = moto.sink("l");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let keys: Vec<_> = sink
                .store
                .list(Some(&sink.key("")))
                .map(|m| m.unwrap().location)
                .collect()
                .await;
            for key in keys {
                sink.store.delete(&key).await.unwrap();
            }
        });
    assert!(moto.keys().is_empty(), "{:?}", moto.keys());
    let out = child.wait_with_output().unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("changed or disappeared"), "{err}");
    let out = run_with(&p(""), &[], &[]);
    assert!(out.status.success(), "{}", describe(&out));
    assert_clean_on_s3(&moto, "l", "after the store lost its objects");
}
