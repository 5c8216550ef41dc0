//! Black-box tests of the simulator over HTTP: each starts a server on `127.0.0.1:0` and talks
//! to it with reqwest, per dialect.

use serde_json::Value;

use super::*;

mod discovery;
mod downsample;
mod opentsdb;
mod ovh;
mod warp;

/// 2026-11-01T00:00:00Z: the data exists in the future too.
const DAY0: i64 = 1_793_491_200_000;
const TOKEN: &str = "XXXXXXXXXXXX_XXXXXXXXXXXZZZZZZZZZZZ_YYYYYYYYYYYYYY-XXXXXXXXX";

fn config(dialect: Dialect, token: Option<&str>) -> SimConfig {
    SimConfig {
        dialect,
        token: token.map(str::to_owned),
        ..SimConfig::default()
    }
}

async fn sim(dialect: Dialect, token: Option<&str>) -> SimHandle {
    start(config(dialect, token), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

struct Answer {
    status: u16,
    content_type: String,
    body: String,
    allow: Option<String>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

async fn send(
    h: &SimHandle,
    method: reqwest::Method,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> Answer {
    let client = reqwest::Client::new();
    let mut req = client.request(method, format!("{}{path}", h.base_url()));
    if let Some(t) = token {
        req = req.basic_auth("read", Some(t));
    }
    if let Some(b) = body {
        req = req.body(b.to_owned());
    }
    let resp = req.send().await.unwrap();
    let header = |name: reqwest::header::HeaderName| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(reqwest::header::CONTENT_TYPE).unwrap_or_default();
    let allow = header(reqwest::header::ALLOW);
    let status = resp.status().as_u16();
    Answer {
        status,
        content_type,
        body: resp.text().await.unwrap(),
        allow,
    }
}

async fn post(h: &SimHandle, path: &str, body: &str) -> Answer {
    send(h, reqwest::Method::POST, path, Some(body), None).await
}

async fn get(h: &SimHandle, path: &str) -> Answer {
    send(h, reqwest::Method::GET, path, None, None).await
}

fn raw_query(start: i64, end: i64, metric: &str, extra: &str) -> String {
    format!(
        r#"{{"start":{start},"end":{end},"msResolution":true,"queries":[{{"metric":"{metric}","aggregator":"none"{extra}}}]}}"#
    )
}

/// The answer's series as (tags, [(ts, value)]), keys read as ms or s.
fn series_of(v: &Value, scale: i64) -> Vec<(BTreeMapS, Vec<(i64, f64)>)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let tags = s["tags"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            let mut dps: Vec<(i64, f64)> = s["dps"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.parse::<i64>().unwrap() * scale, v.as_f64().unwrap()))
                .collect();
            dps.sort_by_key(|p| p.0);
            (tags, dps)
        })
        .collect()
}

type BTreeMapS = std::collections::BTreeMap<String, String>;

/// The expected raw points of every series of `metric`, from the model.
fn expected(
    dialect: Dialect,
    metric: &str,
    start: i64,
    end: i64,
) -> Vec<(BTreeMapS, Vec<(i64, f64)>)> {
    let pcc = Pcc::new(&config(dialect, None));
    pcc.metric_series(metric)
        .unwrap()
        .map(|i| (pcc.series()[i].tags.clone(), pcc.points(i, start, end)))
        .filter(|(_, p)| !p.is_empty())
        .collect()
}

#[tokio::test]
async fn serve_until_stops_on_signal_and_drop_stops_the_handle() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(serve_until(SimConfig::default(), listener, async {
        let _ = rx.await;
    }));
    let r = reqwest::get(format!("http://{addr}/api/aggregators"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    drop(r);
    tx.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();

    let h = sim(Dialect::Ovh, None).await;
    let url = h.base_url();
    drop(h);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        reqwest::get(format!("{url}/api/aggregators"))
            .await
            .is_err()
    );
}

#[test]
fn debug_output_redacts_the_token() {
    let c = config(Dialect::Ovh, Some(TOKEN));
    let text = format!("{c:?}");
    assert!(!text.contains(TOKEN));
    assert!(text.contains("<redacted>"));
}
