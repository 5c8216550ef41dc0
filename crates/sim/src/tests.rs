//! Black-box tests of the simulator over HTTP: each starts a server on `127.0.0.1:0` and talks
//! to it with reqwest, per dialect.

use serde_json::Value;

use super::*;

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
async fn ovh_raw_query_returns_the_model_points_start_excluded() {
    let h = sim(Dialect::Ovh, None).await;
    let pcc = Pcc::new(&SimConfig::default());
    let metric = "vscope.host.mem.usage.perc";
    let first = pcc.metric_series(metric).unwrap().start;
    // A range whose both ends fall exactly on points of the first series.
    let pts = pcc.points(first, DAY0, DAY0 + 3_600_000);
    let (start, end) = (pts[2].0, pts[40].0);
    let a = post(
        &h,
        "/api/query",
        &raw_query(start / 1000, end / 1000, metric, ""),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.content_type, "application/json");
    assert!(a.body.ends_with("]\n"));
    let v = a.json();
    let got = series_of(&v, 1);
    // Warp 10's FETCH keeps (start, end].
    assert_eq!(got, expected(Dialect::Ovh, metric, start + 1, end));
    let s0 = &v[0];
    assert_eq!(s0["metric"], metric);
    assert_eq!(s0["query"]["index"], 0);
    assert_eq!(s0["aggregateTags"], serde_json::json!([]));
    assert_eq!(s0["tags"]["servicetype"], "vscope");
    assert_eq!(s0["tags"]["env"], "prod");
    // The end is in, the start is not.
    let dps = &got
        .iter()
        .find(|(t, _)| *t == pcc.series()[first].tags)
        .unwrap()
        .1;
    assert_eq!(dps.first().unwrap().0, pts[3].0);
    assert_eq!(dps.last().unwrap().0, end);
    // Values are Go floats: never a trailing ".0".
    assert!(!a.body.contains(".0,") && !a.body.contains(".0}"));
    let stats = h.stats();
    assert_eq!(stats.requests, 1);
    assert_eq!(stats.query_requests, 1);
    assert_eq!(stats.series_returned, 6);
    assert_eq!(
        stats.points_returned,
        got.iter().map(|s| s.1.len() as u64).sum::<u64>()
    );
    h.shutdown().await;
}

#[tokio::test]
async fn ovh_seconds_keys_are_sorted_strings_and_tags_group_by() {
    let h = sim(Dialect::Ovh, None).await;
    let body = format!(
        r#"{{"start":"{}","end":{},"queries":[{{"metric":"vscope.host.net.rx","aggregator":"none","downsample":"bogus","rate":true,
            "tags":{{"host":"172.17.86.51|172.17.86.52","nicname":"*","datacenter":"pcc-37-187-228-180_datacenter869"}}}}]}}"#,
        "2026/11/01-00:00",
        DAY0 / 1000 + 600
    );
    let a = post(&h, "/api/query", &body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    // 2 hosts x 4 NICs, raw values (rate and downsample are ignored with none).
    assert_eq!(v.as_array().unwrap().len(), 8);
    assert_eq!(
        v[0]["aggregateTags"],
        serde_json::json!(["host", "nicname"])
    );
    let got = series_of(&v, 1000);
    let want: Vec<_> = expected(Dialect::Ovh, "vscope.host.net.rx", DAY0, DAY0 + 600_000)
        .into_iter()
        .filter(|(t, _)| {
            t["datacenter"].ends_with("869")
                && ["172.17.86.51", "172.17.86.52"].contains(&t["host"].as_str())
        })
        .collect();
    assert_eq!(got, want);
    let keys: Vec<&String> = v[0]["dps"].as_object().unwrap().keys().collect();
    let text_start = a.body.find("\"dps\":{\"").unwrap() + 8;
    assert!(a.body[text_start..].starts_with(keys[0].as_str()));
}

#[tokio::test]
async fn ovh_applies_only_three_filter_types() {
    let h = sim(Dialect::Ovh, None).await;
    let metric = "vscope.vm.cpu.usage.perc";
    let q = |filters: &str| {
        raw_query(
            DAY0 / 1000,
            DAY0 / 1000 + 300,
            metric,
            &format!(r#","filters":{filters}"#),
        )
    };
    let count = |a: &Answer| a.json().as_array().unwrap().len();
    // iliteral_or is silently ignored: all 24 VMs come back.
    let a = post(
        &h,
        "/api/query",
        &q(r#"[{"type":"iliteral_or","tagk":"vm","filter":"vm-01254","groupBy":false}]"#),
    )
    .await;
    assert_eq!(count(&a), 24);
    let a = post(
        &h,
        "/api/query",
        &q(r#"[{"type":"literal_or","tagk":"vm","filter":"vm-01254|vm-01257","groupBy":true}]"#),
    )
    .await;
    assert_eq!(count(&a), 2);
    assert_eq!(a.json()[0]["aggregateTags"], serde_json::json!(["vm"]));
    let a = post(
        &h,
        "/api/query",
        &q(r#"[{"type":"wildcard","tagk":"datacenter","filter":"*870","groupBy":false}]"#),
    )
    .await;
    assert_eq!(count(&a), 12);
    // Regexps are full matches in Warp 10.
    let a = post(
        &h,
        "/api/query",
        &q(r#"[{"type":"regexp","tagk":"vm","filter":"vm-0125.","groupBy":false}]"#),
    )
    .await;
    assert_eq!(count(&a), 2);
    let a = post(
        &h,
        "/api/query",
        &q(r#"[{"type":"regexp","tagk":"vm","filter":"0125","groupBy":false}]"#),
    )
    .await;
    assert_eq!(a.body, "[]\n");
    // explicitTags with only datacenter: vScope series carry more labels, nothing matches.
    let a = post(
        &h,
        "/api/query",
        &raw_query(
            DAY0 / 1000,
            DAY0 / 1000 + 300,
            metric,
            r#","explicitTags":true,"tags":{"datacenter":"*"}"#,
        ),
    )
    .await;
    assert_eq!(a.body, "[]\n");
    // Unsupported regexp construct: a clear 400.
    let a = post(
        &h,
        "/api/query",
        &q(r#"[{"type":"regexp","tagk":"vm","filter":"(?=vm)","groupBy":false}]"#),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(a.body.contains("does not support"), "{}", a.body);
    // A regex class selector on the metric (Warp 10 passes it through).
    let a = post(
        &h,
        "/api/query",
        &raw_query(
            DAY0 / 1000,
            DAY0 / 1000 + 60,
            "~vscope\\\\.filer\\\\..*",
            "",
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(count(&a), 8);
}

#[tokio::test]
async fn ovh_errors_are_plain_text_with_erlenmeyer_messages() {
    let h = sim(Dialect::Ovh, None).await;
    let a = get(&h, "/api/query?start=1h-ago&m=none:vscope.vm.cpu.ready").await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (501, "Please use the POST version of queries\n")
    );
    assert_eq!(a.content_type, "text/plain; charset=utf-8");
    let a = send(&h, reqwest::Method::PUT, "/api/query", Some("{}"), None).await;
    assert_eq!(a.status, 405);
    assert_eq!(a.body, "Method 'PUT' is not allowed\n");
    assert_eq!(a.allow.as_deref(), Some("POST, DELETE"));
    let cases = [
        ("{", "can't parse query"),
        (r#"{"start":"now","queries":[]}"#, "can't parse query"),
        (r#"{"start":1,"msResolution":"true"}"#, "can't parse query"),
        (
            r#"{"start":1,"queries":[{"metric":"m","aggregator":"none","rate":"true"}]}"#,
            "can't parse query",
        ),
        (
            r#"{"start":2,"end":1,"queries":[]}"#,
            "Invalid query: Start date is after end date",
        ),
        (
            r#"{"start":1,"queries":[{"aggregator":"none"}]}"#,
            "Invalid query: missing metric name",
        ),
        (
            r#"{"start":1,"queries":[{"metric":"m","aggregator":"median"}]}"#,
            "Invalid query: invalid aggregator median",
        ),
        (
            r#"{"start":1,"queries":[{"metric":"m","aggregator":"avg","downsample":"1dc-avg"}]}"#,
            "Wrong downsampling value: 1dc-avg",
        ),
        (
            r#"{"start":1,"queries":[{"metric":"m","aggregator":"avg","downsample":"1h-avg-null"}]}"#,
            "Downsampling fill policy 'null' is not available",
        ),
    ];
    for (body, message) in cases {
        let a = post(&h, "/api/query", body).await;
        assert_eq!(a.status, 400, "{body}");
        assert_eq!(a.body, format!("{message}\n"), "{body}");
    }
    // Functions OVH's endpoint refuses are refused.
    let a = post(
        &h,
        "/api/query",
        r#"{"start":1,"queries":[{"metric":"m","aggregator":"avg","downsample":"1h-median"}]}"#,
    )
    .await;
    assert_eq!(a.body, "Downsampling operator 'median' is not available\n");
    // Unknown metric: 200 [].
    let a = post(
        &h,
        "/api/query",
        &raw_query(DAY0 / 1000, DAY0 / 1000 + 60, "vscope.nope", ""),
    )
    .await;
    assert_eq!((a.status, a.body.as_str()), (200, "[]\n"));
    // Too many points: Warp 10's FETCH limit, a 500.
    let a = post(
        &h,
        "/api/query",
        &raw_query(0, DAY0 / 1000, "vscope.vm.cpu.ready", ""),
    )
    .await;
    assert_eq!(a.status, 500);
    assert!(
        a.body.starts_with(
            "Exception at '5 ->LIST =>FETCHDOUBLE<=' in section [TOP] (FETCHDOUBLE exceeded \
             limit of 20000000 datapoints, current count is "
        ),
        "{}",
        a.body
    );
    // No /api/version on Erlenmeyer.
    let a = get(&h, "/api/version").await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (404, "{\"message\":\"Not Found\"}\n")
    );
}

#[tokio::test]
async fn ovh_authentication() {
    let h = sim(Dialect::Ovh, Some(TOKEN)).await;
    let body = raw_query(DAY0 / 1000, DAY0 / 1000 + 600, "vscope.vm.cpu.ready", "");
    let a = post(&h, "/api/query", &body).await;
    assert_eq!((a.status, a.body.as_str()), (401, "Not authorized\n"));
    let a = send(
        &h,
        reqwest::Method::POST,
        "/api/query",
        Some(&body),
        Some("wrong-token"),
    )
    .await;
    // Warp 10's AUTHENTICATE error quotes its own script line, not the token's.
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            500,
            "Exception at 'DUP =>AUTHENTICATE<= 20000000 LIMIT' in section [TOP] \
             (AUTHENTICATE given an invalid read token. (Invalid token.))\n"
        )
    );
    let a = send(
        &h,
        reqwest::Method::POST,
        "/api/query",
        Some(&body),
        Some(TOKEN),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json().as_array().unwrap().len(), 24);
    // The InfluxDB-style `p` parameter works too.
    let a = post(&h, &format!("/api/query?p={TOKEN}"), &body).await;
    assert_eq!(a.status, 200);
    // A wrong token only shows when Warp 10 runs something: aggregators still answer.
    let a = send(
        &h,
        reqwest::Method::GET,
        "/api/aggregators",
        None,
        Some("wrong"),
    )
    .await;
    assert_eq!(a.status, 200);
    let a = get(&h, "/api/aggregators").await;
    assert_eq!(a.status, 401);
    let a = send(
        &h,
        reqwest::Method::GET,
        "/api/search/lookup?m=vscope.vm.cpu.ready",
        None,
        Some("wrong"),
    )
    .await;
    assert_eq!(a.status, 500);
}

#[tokio::test]
async fn opentsdb_raw_query_prints_integers_and_java_doubles() {
    let h = sim(Dialect::Opentsdb, None).await;
    let metric = "vscope.vm.net.packetsrx";
    let (start, end) = (DAY0, DAY0 + 1_800_000);
    let a = post(&h, "/api/query", &raw_query(start, end, metric, "")).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.content_type, "application/json; charset=UTF-8");
    let v = a.json();
    assert!(v[0].get("query").is_none());
    assert_eq!(v[0]["aggregateTags"], serde_json::json!([]));
    // Packet counts are JSON integers.
    for s in v.as_array().unwrap() {
        for (_, x) in s["dps"].as_object().unwrap() {
            assert!(x.is_u64(), "{x}");
        }
    }
    let got = series_of(&v, 1);
    assert_eq!(got, expected(Dialect::Opentsdb, metric, start, end));
    // Percentages are doubles, whole ones with ".0".
    let a = post(
        &h,
        "/api/query",
        &raw_query(start, end, "vscope.vm.cpu.usage.perc", ""),
    )
    .await;
    for s in a.json().as_array().unwrap() {
        for (_, x) in s["dps"].as_object().unwrap() {
            assert!(x.is_f64(), "{x}");
        }
    }
    // Seconds keys without msResolution, dps as arrays with ?arrays.
    let body = format!(
        r#"{{"start":"{}","end":"{}","queries":[{{"metric":"{metric}","aggregator":"none","tags":{{"vm":"vm-01254"}}}}]}}"#,
        "2026/11/01-00:00", "2026/11/01-00:10"
    );
    let a = post(&h, "/api/query?arrays=true", &body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    let first = &v[0]["dps"][0];
    assert!(first[0].as_i64().unwrap() < 10_000_000_000);
    // GET works in this dialect, with the m= syntax.
    let a = get(
        &h,
        &format!(
            "/api/query?start={}&end={}&m=none:{metric}{{vm=vm-01254|vm-01257}}&ms",
            start, end
        ),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json().as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn opentsdb_filters_and_rate() {
    let h = sim(Dialect::Opentsdb, None).await;
    let metric = "vscope.vm.cpu.usage.perc";
    let q = |extra: &str| raw_query(DAY0, DAY0 + 300_000, metric, extra);
    let count = |a: &Answer| a.json().as_array().unwrap().len();
    let a = post(&h, "/api/query", &q(r#","filters":[{"type":"iliteral_or","tagk":"vm","filter":"VM-01254","groupBy":false}]"#)).await;
    assert_eq!(count(&a), 1);
    let a = post(&h, "/api/query", &q(r#","filters":[{"type":"not_literal_or","tagk":"vm","filter":"vm-01254","groupBy":false}]"#)).await;
    assert_eq!(count(&a), 23);
    // regexp is find(): a substring is enough.
    let a = post(
        &h,
        "/api/query",
        &q(r#","filters":[{"type":"regexp","tagk":"vm","filter":"0125","groupBy":false}]"#),
    )
    .await;
    assert_eq!(count(&a), 2);
    let a = post(
        &h,
        "/api/query",
        &q(r#","filters":[{"type":"not_key","tagk":"vm","filter":"","groupBy":false}]"#),
    )
    .await;
    assert_eq!(a.body, "[]");
    let a = post(&h, "/api/query", &q(r#","tags":{"datacenter":"*869"}"#)).await;
    assert_eq!(count(&a), 12);
    let a = post(&h, "/api/query", &q(r#","tags":{"vm":"vm-99999"}"#)).await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.json()["error"]["message"],
        "No such name for 'tagv': 'vm-99999'"
    );
    let a = post(&h, "/api/query", &q(r#","tags":{"cluster":"*"}"#)).await;
    assert_eq!(
        a.json()["error"]["message"],
        "No such name for 'tagk': 'cluster'"
    );
    // Rate per series with aggregator none; "true" as a string is fine for Jackson. The scan
    // starts on the hour, so the first rate in range uses the stored point before `start`.
    let start = DAY0 + 1_800_000;
    let body = raw_query(
        start,
        start + 300_000,
        metric,
        r#","rate":"true","tags":{"vm":"vm-01254"}"#,
    );
    let a = post(&h, "/api/query", &body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let pcc = Pcc::new(&SimConfig::default());
    let idx = pcc
        .metric_series(metric)
        .unwrap()
        .find(|&i| {
            pcc.series()[i].tags["vm"] == "vm-01254"
                && pcc.series()[i].tags["datacenter"].ends_with("869")
        })
        .unwrap();
    let raw = pcc.points(idx, DAY0, start + 300_000);
    let rates: Vec<(i64, f64)> = raw
        .windows(2)
        .map(|w| {
            (
                w[1].0,
                (w[1].1 - w[0].1) / ((w[1].0 - w[0].0) as f64 / 1000.0),
            )
        })
        .filter(|p| p.0 >= start)
        .collect();
    assert_eq!(rates.len(), 5);
    let got = &series_of(&a.json(), 1)[0].1;
    assert_eq!(got.len(), rates.len());
    for (g, w) in got.iter().zip(&rates) {
        assert_eq!(g.0, w.0);
        assert!((g.1 - w.1).abs() < 1e-12, "{g:?} {w:?}");
    }
}

#[tokio::test]
async fn opentsdb_errors_are_json() {
    let h = sim(Dialect::Opentsdb, None).await;
    let err = |a: &Answer| {
        (
            a.status,
            a.json()["error"]["message"].as_str().unwrap().to_owned(),
        )
    };
    let a = post(
        &h,
        "/api/query",
        &raw_query(DAY0, DAY0 + 60_000, "vscope.nope", ""),
    )
    .await;
    assert_eq!(
        err(&a),
        (400, "No such name for 'metrics': 'vscope.nope'".to_owned())
    );
    assert_eq!(a.json()["error"]["code"], 400);
    let a = post(&h, "/api/query", "{not json").await;
    assert_eq!(err(&a), (400, "Unable to parse the given JSON".to_owned()));
    let a = post(&h, "/api/query", r#"{"queries":[]}"#).await;
    assert_eq!(err(&a).1, "Missing start time");
    let a = post(&h, "/api/query", r#"{"start":10,"end":5,"queries":[]}"#).await;
    assert_eq!(
        err(&a).1,
        "End time [5000] must be greater than the start time [10000]"
    );
    let a = post(&h, "/api/query", r#"{"start":"1h-ago","queries":[]}"#).await;
    assert_eq!(err(&a).1, "Missing queries");
    let a = post(
        &h,
        "/api/query",
        r#"{"start":"1h-ago","queries":[{"metric":"m","aggregator":"nope"}]}"#,
    )
    .await;
    assert_eq!(err(&a).1, "No such aggregation function: nope");
    // Every OpenTSDB 2.4.1 aggregator is computed (vscope_core::semantics), `median` included.
    let a = post(
        &h,
        "/api/query",
        r#"{"start":"1h-ago","queries":[{"metric":"vscope.vm.cpu.ready","aggregator":"median","downsample":"10m-squareSum"}]}"#,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.json().is_array(), "{}", a.body);
    let a = post(&h, "/api/query", r#"{"start":"1h-ago","queries":[{"metric":"vscope.vm.cpu.ready","aggregator":"sum","downsample":"1h-SUM"}]}"#).await;
    assert_eq!(err(&a).1, "No such downsampling function: SUM");
    let a = post(
        &h,
        "/api/query",
        &raw_query(
            DAY0,
            DAY0 + 60_000,
            "vscope.vm.cpu.ready",
            r#","filters":[{"type":"wildcard","tagk":"vm","filter":"vm-01254"}]"#,
        ),
    )
    .await;
    assert_eq!(err(&a).1, "Filter must contain an asterisk");
    let a = send(&h, reqwest::Method::PUT, "/api/query", Some("{}"), None).await;
    assert_eq!(err(&a), (405, "Method not allowed".to_owned()));
    let a = post(
        &h,
        "/api/query",
        &raw_query(0, DAY0, "vscope.vm.cpu.ready", ""),
    )
    .await;
    assert_eq!(a.status, 413);
    let a = get(&h, "/nope").await;
    assert_eq!(a.status, 404);
    let a = get(&h, "/api/version").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["version"], "2.4.1");
}

#[tokio::test]
async fn opentsdb_authentication() {
    let h = sim(Dialect::Opentsdb, Some(TOKEN)).await;
    let body = raw_query(DAY0, DAY0 + 60_000, "vscope.vm.cpu.ready", "");
    let a = post(&h, "/api/query", &body).await;
    assert_eq!(a.status, 401);
    assert_eq!(a.json()["error"]["code"], 401);
    let a = send(
        &h,
        reqwest::Method::POST,
        "/api/query",
        Some(&body),
        Some("bad"),
    )
    .await;
    assert_eq!(a.status, 401);
    assert!(!a.body.contains("bad\""));
    let a = send(
        &h,
        reqwest::Method::POST,
        "/api/query",
        Some(&body),
        Some(TOKEN),
    )
    .await;
    assert_eq!(a.status, 200);
}

#[tokio::test]
async fn lookup_per_dialect() {
    let o = sim(Dialect::Opentsdb, None).await;
    let a = get(&o, "/api/search/lookup?m=vscope.vm.cpu.ready{datacenter=*}").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["type"], "LOOKUP");
    assert_eq!(v["limit"], 25);
    // 24 VMs fit in the default limit of 25.
    assert_eq!(v["results"].as_array().unwrap().len(), 24);
    let tsuid = v["results"][0]["tsuid"].as_str().unwrap();
    assert!(tsuid.chars().all(|c| c.is_ascii_hexdigit()));
    // Without a metric, all 458 series match: cut at the default limit, or at `limit`.
    let a = get(&o, "/api/search/lookup?m={servicetype=vscope}").await;
    assert_eq!(a.json()["results"].as_array().unwrap().len(), 25);
    assert_eq!(a.json()["totalResults"], 25);
    let a = get(&o, "/api/search/lookup?m=vscope.host.net.rx&limit=10").await;
    assert_eq!(a.json()["results"].as_array().unwrap().len(), 10);
    let a = post(&o, "/api/search/lookup", r#"{"metric":"vscope.host.net.rx","tags":[{"key":"nicname","value":"vmnic0"}],"limit":100}"#).await;
    assert_eq!(a.json()["results"].as_array().unwrap().len(), 6);
    assert_eq!(a.json()["totalResults"], 6);
    let a = get(&o, "/api/search/lookup?m=vscope.nope").await;
    assert_eq!(a.status, 400);

    let w = sim(Dialect::Ovh, None).await;
    let a = get(&w, "/api/search/lookup?m=vscope.host.net.rx{datacenter=*}").await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["limit"], 25);
    assert_eq!(v["results"].as_array().unwrap().len(), 24);
    assert_eq!(v["results"][0]["tsuid"], 0);
    assert!(v["time"].is_u64());
    // The same key twice is an OR.
    let a = get(
        &w,
        "/api/search/lookup?m=vscope.host.cpu.usage.perc{host=172.17.86.51,host=172.17.86.52}",
    )
    .await;
    assert_eq!(a.json()["totalResults"], 2);
    // Erlenmeyer ignores limit: all 458 series.
    let a = get(&w, "/api/search/lookup?m=*{servicetype=vscope}").await;
    assert_eq!(a.json()["totalResults"], 458);
    let a = post(
        &w,
        "/api/search/lookup",
        r#"{"metric":"vscope.vm.cpu.ready","limit":3}"#,
    )
    .await;
    assert_eq!(a.json()["tags"], Value::Null);
    assert_eq!(a.json()["totalResults"], 24);
    let a = get(&w, "/api/search/lookup?m=bad metric").await;
    assert_eq!(a.status, 400);
    let a = get(&w, "/api/search/lookup?m=vscope.nope").await;
    assert_eq!(a.json()["totalResults"], 0);
}

#[tokio::test]
async fn suggest_per_dialect() {
    let o = sim(Dialect::Opentsdb, None).await;
    let a = get(&o, "/api/suggest?type=metrics&q=vscope.host").await;
    let names: Vec<String> = serde_json::from_str(&a.body).unwrap();
    assert_eq!(names.len(), 7);
    assert!(names.windows(2).all(|w| w[0] < w[1]));
    let a = get(&o, "/api/suggest?type=metrics&q=cpu").await;
    assert_eq!(a.body, "[]");
    let a = get(&o, "/api/suggest?type=tagv&q=pcc-37&max=1").await;
    assert_eq!(a.body, "[\"pcc-37-187-228-180\"]");
    let a = get(&o, "/api/suggest?type=bogus").await;
    assert_eq!(a.status, 400);
    assert_eq!(
        a.json()["error"]["message"],
        "Invalid 'type' parameter:bogus"
    );

    let w = sim(Dialect::Ovh, None).await;
    let a = get(&w, "/api/suggest?type=metrics&q=cpu").await;
    let names: Vec<String> = serde_json::from_str(&a.body).unwrap();
    assert_eq!(
        names,
        [
            "vscope.host.cpu.usage.perc",
            "vscope.vm.cpu.ready",
            "vscope.vm.cpu.usage.perc"
        ]
    );
    let a = post(&w, "/api/suggest", r#"{"type":"tagk","q":"n"}"#).await;
    assert_eq!(a.body, "[\"nicname\"]\n");
    let a = get(&w, "/api/suggest?type=bogus").await;
    assert_eq!(a.status, 500);
    assert_eq!(
        a.body,
        "Invalid type value (must be 'metrics', 'tagk' or 'tagv')\n"
    );
}

#[tokio::test]
async fn aggregators_and_filters() {
    let o = sim(Dialect::Opentsdb, None).await;
    let names: Vec<String> = serde_json::from_str(&get(&o, "/api/aggregators").await.body).unwrap();
    assert!(names.iter().any(|n| n == "squareSum"));
    let w = sim(Dialect::Ovh, None).await;
    let names: Vec<String> = serde_json::from_str(&get(&w, "/api/aggregators").await.body).unwrap();
    assert!(names.iter().any(|n| n == "first") && !names.iter().any(|n| n == "median"));
    let f = get(&w, "/api/config/filters").await.json();
    assert_eq!(f.as_object().unwrap().len(), 3);
    let f = get(&o, "/api/config/filters").await.json();
    assert_eq!(f.as_object().unwrap().len(), 8);
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

/// Mean of the raw points of series `i` with `lo <= ts < hi`.
fn bucket_avg(pcc: &Pcc, i: usize, lo: i64, hi: i64) -> Option<f64> {
    let pts = pcc.points(i, lo, hi - 1);
    (!pts.is_empty()).then(|| pts.iter().map(|p| p.1).sum::<f64>() / pts.len() as f64)
}

#[tokio::test]
async fn opentsdb_downsample_and_group_by_use_the_semantics() {
    let h = sim(Dialect::Opentsdb, None).await;
    let pcc = Pcc::new(&SimConfig::default());
    let metric = "vscope.vm.cpu.usage.perc";
    let vm = pcc
        .metric_series(metric)
        .unwrap()
        .find(|&i| pcc.series()[i].tags["vm"] == "vm-01254")
        .unwrap();
    // none + 1h-avg: per series, epoch-aligned buckets stamped with their start.
    let (start, end) = (DAY0, DAY0 + 6 * 3_600_000);
    let body = raw_query(
        start,
        end,
        metric,
        r#","downsample":"1h-avg","tags":{"vm":"vm-01254"}"#,
    );
    let a = post(&h, "/api/query", &body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let got = &series_of(&a.json(), 1)[0].1;
    let want: Vec<(i64, f64)> = (0..=6)
        .filter_map(|k| {
            let lo = DAY0 + k * 3_600_000;
            bucket_avg(&pcc, vm, lo, lo + 3_600_000).map(|v| (lo, v))
        })
        .collect();
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.0, w.0);
        assert!((g.1 - w.1).abs() < 1e-9, "{g:?} {w:?}");
    }
    // sum grouped by datacenter: one answer per datacenter, vm aggregated away.
    let body = raw_query(
        start,
        start + 600_000,
        metric,
        r#","downsample":"5m-sum","tags":{"datacenter":"*"}"#,
    )
    .replace(r#""aggregator":"none""#, r#""aggregator":"sum""#);
    let a = post(&h, "/api/query", &body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert_eq!(v[0]["aggregateTags"], serde_json::json!(["vm"]));
    assert!(v[0]["tags"].get("vm").is_none());
    assert_eq!(v[0]["tags"]["servicetype"], "vscope");
    let first_bucket: f64 = pcc
        .metric_series(metric)
        .unwrap()
        .filter(|&i| pcc.series()[i].tags["datacenter"].ends_with("869"))
        .filter_map(|i| {
            let pts = pcc.points(i, start, start + 299_999);
            (!pts.is_empty()).then(|| pts.iter().map(|p| p.1).sum::<f64>())
        })
        .sum();
    let dps = series_of(&v, 1)
        .into_iter()
        .find(|(t, _)| t["datacenter"].ends_with("869"))
        .unwrap()
        .1;
    assert_eq!(dps[0].0, start);
    assert!(
        (dps[0].1 - first_bucket).abs() < 1e-6,
        "{} vs {first_bucket}",
        dps[0].1
    );
}

#[tokio::test]
async fn ovh_downsample_is_end_aligned_like_the_guide_example() {
    let h = sim(Dialect::Ovh, None).await;
    // The vScope guide's query: sum, 20m-max-zero, one host; end not on a bucket boundary.
    let end = DAY0 / 1000 + 86_400 - 9;
    let body = format!(
        r#"{{"start":{},"end":{end},"queries":[{{"metric":"vscope.host.mem.usage.perc","aggregator":"sum","downsample":"20m-max-zero",
            "tags":{{"datacenter":"pcc-37-187-228-180_datacenter869","host":"172.17.86.51"}}}}]}}"#,
        DAY0 / 1000
    );
    let a = post(&h, "/api/query", &body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["aggregateTags"], serde_json::json!([]));
    assert_eq!(v[0]["tags"]["host"], "172.17.86.51");
    let keys: Vec<i64> = v[0]["dps"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.parse().unwrap())
        .collect();
    // floor(86391 / 1200) = 71 buckets, stamped end, end - 1200, ...
    assert_eq!(keys.len(), 71);
    assert!(keys.iter().all(|k| (end - k) % 1200 == 0));
    assert_eq!(*keys.last().unwrap(), end);
    // Each bucket is the max of (t - 1200 s, t].
    let pcc = Pcc::new(&SimConfig::default());
    let i = pcc
        .metric_series("vscope.host.mem.usage.perc")
        .unwrap()
        .find(|&i| pcc.series()[i].tags["host"] == "172.17.86.51")
        .unwrap();
    let last = end * 1000;
    let want = pcc
        .points(i, last - 1_199_999, last)
        .iter()
        .map(|p| p.1)
        .fold(f64::MIN, f64::max);
    assert_eq!(v[0]["dps"][end.to_string()].as_f64().unwrap(), want);
    // No downsample: Erlenmeyer averages over an automatic span (1 day -> 10 min).
    let body = format!(
        r#"{{"start":{},"end":{},"queries":[{{"metric":"vscope.vm.cpu.ready","aggregator":"avg","tags":{{"vm":"vm-01254"}}}}]}}"#,
        DAY0 / 1000,
        DAY0 / 1000 + 86_400
    );
    let a = post(&h, "/api/query", &body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()[0]["dps"].as_object().unwrap().len(), 144);
    // Group-by with a `*` tag: one answer per host, the key in aggregateTags.
    let body = format!(
        r#"{{"start":{},"end":{},"queries":[{{"metric":"vscope.host.net.rx","aggregator":"sum","downsample":"10m-avg-nan","tags":{{"host":"*"}}}}]}}"#,
        DAY0 / 1000,
        DAY0 / 1000 + 3_600
    );
    let a = post(&h, "/api/query", &body).await;
    let v = a.json();
    assert_eq!(v.as_array().unwrap().len(), 6);
    assert_eq!(v[0]["aggregateTags"], serde_json::json!(["host"]));
    assert!(v[0]["tags"].get("nicname").is_none());
    assert_eq!(v[0]["dps"].as_object().unwrap().len(), 6);
}

#[tokio::test]
async fn odd_inputs_never_break_the_server() {
    let bodies = [
        "",
        "null",
        "[]",
        "{}",
        "\"x\"",
        "{\"start\":{}}",
        "{\"start\":-5,\"queries\":[null]}",
        "{\"start\":\"99999999999999999999y-ago\",\"queries\":[{\"metric\":\"vscope.vm.cpu.ready\",\"aggregator\":\"none\"}]}",
        "{\"start\":1,\"end\":9223372036854775807,\"queries\":[{\"metric\":\"~(\",\"aggregator\":\"sum\"}]}",
        "{\"start\":\"1h-ago\",\"queries\":[{\"metric\":\"vscope.vm.cpu.ready\",\"aggregator\":\"sum\",\"downsample\":\"0all-sum\",\"rate\":true,\"rateOptions\":{\"counter\":true,\"counterMax\":5,\"resetValue\":3}}]}",
        "{\"start\":\"1h-ago\",\"queries\":[{\"metric\":\"vscope.vm.cpu.ready\",\"aggregator\":\"none\",\"filters\":[{\"type\":\"regexp\",\"tagk\":\"vm\",\"filter\":\"(a|a)*(a|a)*(a|a)*(a|a)*b\"}]}]}",
        "{\"metric\":\"*\",\"tags\":[{\"key\":\"*\",\"value\":\"*\"}],\"limit\":-1}",
        "{\"type\":\"tagv\",\"max\":-3}",
    ];
    let paths = [
        "/api/query",
        "/api/query?arrays&m=none:x{a=b&start=1",
        "/api/search/lookup?m=%7B%7D",
        "/api/search/lookup?m={a=b,}",
        "/api/suggest?type=metrics&max=x",
        "/api/config/filters",
        "/api/query/last",
    ];
    for dialect in [Dialect::Ovh, Dialect::Opentsdb] {
        let h = sim(dialect, None).await;
        for path in paths {
            for method in [
                reqwest::Method::GET,
                reqwest::Method::POST,
                reqwest::Method::PATCH,
            ] {
                for body in bodies {
                    let a = send(&h, method.clone(), path, Some(body), None).await;
                    assert!(a.status >= 200, "{dialect} {method} {path} {body}");
                }
            }
        }
        // Still serving.
        assert_eq!(get(&h, "/api/aggregators").await.status, 200);
    }
}

// ---------------------------------------------------------------------------------------------
// Warp 10's fetch range, fetch limit and error relaying (`warp.rs`).

async fn sim_with(config: SimConfig) -> SimHandle {
    start(config, "127.0.0.1:0".parse().unwrap()).await.unwrap()
}

/// The first and last timestamps (ms) of the one series a query answers, `None` without data.
async fn first_and_last(h: &SimHandle, body: &str) -> Option<(i64, i64)> {
    let a = post(h, "/api/query", body).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let got = series_of(&a.json(), 1);
    assert!(got.len() <= 1, "one series expected: {}", a.body);
    let dps = &got.first()?.1;
    Some((dps.first()?.0, dps.last()?.0))
}

/// A `literal_or` filter on `vm` (one value, or several joined with `|`).
fn vm_filter(vms: &[&str]) -> String {
    format!(
        r#","filters":[{{"type":"literal_or","tagk":"vm","filter":"{}","groupBy":false}}]"#,
        vms.join("|")
    )
}

/// The `vm` label of every `vscope.vm.cpu.ready` series, in the simulator's order.
fn vm_names(pcc: &Pcc) -> Vec<String> {
    pcc.metric_series("vscope.vm.cpu.ready")
        .unwrap()
        .map(|i| pcc.series()[i].tags["vm"].clone())
        .collect()
}

/// A point stamped exactly on `start` is absent in `ovh` (Warp 10's FETCH keeps (start, end]),
/// present in `opentsdb` and with `fetch_start = included`; the point on `end` is in everywhere;
/// asking from one millisecond before brings it back in `ovh` (Erlenmeyer's times have second
/// precision, so `S*1000 - 1` ms is the instant `S - 1` s).
#[tokio::test]
async fn the_point_on_start_follows_each_servers_fetch_range() {
    let pcc = Pcc::new(&SimConfig::default());
    let metric = "vscope.vm.cpu.ready";
    let first = pcc.metric_series(metric).unwrap().start;
    let vm = pcc.series()[first].tags["vm"].clone();
    let pts = pcc.points(first, DAY0, DAY0 + 3_600_000);
    let (s, e) = (pts[5].0, pts[20].0);
    assert_eq!(s % 1000, 0, "stored points are on whole seconds");
    let filter = vm_filter(&[&vm]);
    let query = |from: i64| raw_query(from, e, metric, &filter);

    let ovh = sim(Dialect::Ovh, None).await;
    assert_eq!(first_and_last(&ovh, &query(s)).await, Some((pts[6].0, e)));
    assert_eq!(first_and_last(&ovh, &query(s - 1)).await, Some((s, e)));
    // The same instants written in seconds.
    let in_secs = raw_query(s / 1000, e / 1000, metric, &filter);
    assert_eq!(first_and_last(&ovh, &in_secs).await, Some((pts[6].0, e)));
    // A one-point range (start == end) on a point: nothing, as (S, S] is empty.
    assert_eq!(
        first_and_last(&ovh, &raw_query(e, e, metric, &filter)).await,
        None
    );

    let opentsdb = sim(Dialect::Opentsdb, None).await;
    assert_eq!(first_and_last(&opentsdb, &query(s)).await, Some((s, e)));

    let included = sim_with(SimConfig {
        fetch_start: FetchStart::Included,
        ..SimConfig::default()
    })
    .await;
    assert_eq!(first_and_last(&included, &query(s)).await, Some((s, e)));
    assert_eq!(
        first_and_last(&included, &raw_query(e, e, metric, &filter)).await,
        Some((e, e))
    );
}

/// The fetch limit counts what the FETCH selects, before any BUCKETIZE: over `(s, s + n steps]`
/// one series has exactly n points, so a limit of n passes with the start excluded and fails
/// with it included, for raw and downsampled queries alike.
#[tokio::test]
async fn the_fetch_limit_counts_the_fetch_range_of_raw_and_downsampled_queries() {
    let pcc = Pcc::new(&SimConfig::default());
    let metric = "vscope.vm.cpu.ready";
    let first = pcc.metric_series(metric).unwrap().start;
    let vm = pcc.series()[first].tags["vm"].clone();
    let s = pcc.points(first, DAY0, DAY0 + 3_600_000)[5].0;
    let steps: u64 = 30;
    let e = s + steps as i64 * pcc.step_secs() * 1000;
    let raw = raw_query(s, e, metric, &vm_filter(&[&vm]));
    let downsampled = raw.replace(
        r#""aggregator":"none""#,
        r#""aggregator":"sum","downsample":"5m-avg""#,
    );
    for (fetch_start, status) in [(FetchStart::Excluded, 200), (FetchStart::Included, 500)] {
        let h = sim_with(SimConfig {
            fetch_start,
            max_fetch_points: steps,
            ..SimConfig::default()
        })
        .await;
        for body in [&raw, &downsampled] {
            let a = post(&h, "/api/query", body).await;
            assert_eq!(a.status, status, "{fetch_start}: {body}\n{}", a.body);
        }
    }
}

/// Over the limit, each dialect answers its too-large error naming the limit; the count drops
/// with every series a `literal_or` filter leaves out, so splitting by series ends in answers,
/// and a query that passes once passes every time.
#[tokio::test]
async fn the_fetch_limit_is_per_sub_query_and_shrinks_with_the_series_selected() {
    let pcc = Pcc::new(&SimConfig::default());
    let vms = vm_names(&pcc);
    let metric = "vscope.vm.cpu.ready";
    // A half-open hour holds exactly 60 one-minute steps of every series.
    let (s, e) = (DAY0, DAY0 + 3_600_000);
    let limit = 150;
    let config = |dialect, errors| SimConfig {
        dialect,
        errors,
        max_fetch_points: limit,
        ..SimConfig::default()
    };
    let all = raw_query(s, e, metric, "");
    let two = raw_query(s, e, metric, &vm_filter(&[&vms[0], &vms[7]]));
    let three = raw_query(s, e, metric, &vm_filter(&[&vms[0], &vms[7], &vms[13]]));

    let ovh = sim_with(config(Dialect::Ovh, ErrorMode::Text)).await;
    let warp = "Exception at '5 ->LIST =>FETCHDOUBLE<=' in section [TOP] (FETCHDOUBLE exceeded \
                limit of 150 datapoints, current count is 180)\n";
    for body in [&all, &three] {
        let a = post(&ovh, "/api/query", body).await;
        assert_eq!((a.status, a.body.as_str()), (500, warp));
        assert_eq!(a.content_type, "text/plain; charset=utf-8");
    }
    for _ in 0..3 {
        let a = post(&ovh, "/api/query", &two).await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.json().as_array().unwrap().len(), 2);
    }
    // Two sub-queries of two series each: the limit is per sub-query, as each runs alone.
    let sub = format!(
        r#"{{"metric":"{metric}","aggregator":"none"{}}}"#,
        vm_filter(&[&vms[0], &vms[7]])
    );
    let pair = format!(r#"{{"start":{s},"end":{e},"queries":[{sub},{sub}]}}"#);
    let a = post(&ovh, "/api/query", &pair).await;
    assert_eq!(a.status, 200, "{pair}\n{}", a.body);

    let head = sim_with(config(Dialect::Ovh, ErrorMode::Head)).await;
    let a = post(&head, "/api/query", &all).await;
    assert_eq!(
        (a.status, a.body.as_str()),
        (
            500,
            "invalid character 'E' looking for beginning of value\n"
        )
    );
    assert_eq!(post(&head, "/api/query", &two).await.status, 200);

    // OpenTSDB's 413; the error mode is an Erlenmeyer matter and changes nothing here.
    for errors in [ErrorMode::Text, ErrorMode::Head] {
        let tsdb = sim_with(config(Dialect::Opentsdb, errors)).await;
        let a = post(&tsdb, "/api/query", &all).await;
        assert_eq!(a.status, 413, "{}", a.body);
        assert_eq!(
            a.json()["error"]["message"],
            "Sorry, you have attempted to fetch more than our limit of 150 data points. Please \
             try filtering using more tags or decrease your time range."
        );
        assert_eq!(post(&tsdb, "/api/query", &two).await.status, 200);
    }
}

/// `errors = head`: every 500 that comes from Warp 10 (refused token on query and lookup, an
/// invalid selector regex, the `500` and `fetch-limit` faults) reaches an `ovh` client as Go's
/// decoder error and nothing else; what Erlenmeyer answers itself (400, 401, 405, 501) is
/// unchanged. `errors = text` sends Warp's own message for the same failures.
#[tokio::test]
async fn head_mode_makes_every_warp_error_opaque_and_leaves_erlenmeyers_own() {
    let opaque = "invalid character 'E' looking for beginning of value\n";
    let body = raw_query(DAY0, DAY0 + 600_000, "vscope.vm.cpu.ready", "");
    let bad_regex = raw_query(
        DAY0,
        DAY0 + 600_000,
        "vscope.vm.cpu.ready",
        r#","filters":[{"type":"regexp","tagk":"vm","filter":"(vm","groupBy":false}]"#,
    );
    for (errors, expect_warp) in [(ErrorMode::Head, false), (ErrorMode::Text, true)] {
        let h = sim_with(SimConfig {
            errors,
            token: Some(TOKEN.to_owned()),
            ..SimConfig::default()
        })
        .await;
        let (get, post) = (reqwest::Method::GET, reqwest::Method::POST);
        let refused = send(&h, post.clone(), "/api/query", Some(&body), Some("wrong")).await;
        let lookup_path = "/api/search/lookup?m=vscope.vm.cpu.ready";
        let lookup = send(&h, get.clone(), lookup_path, None, Some("wrong")).await;
        let regex = send(
            &h,
            post.clone(),
            "/api/query",
            Some(&bad_regex),
            Some(TOKEN),
        )
        .await;
        for (what, a, warp_text) in [
            (
                "bad token",
                &refused,
                "(AUTHENTICATE given an invalid read token.",
            ),
            ("lookup", &lookup, "(FIND given an invalid token."),
            ("regex", &regex, "PatternSyntaxException"),
        ] {
            assert_eq!(a.status, 500, "{errors} {what}: {}", a.body);
            if expect_warp {
                assert!(a.body.starts_with("Exception at '"), "{what}: {}", a.body);
                assert!(a.body.contains(warp_text), "{what}: {}", a.body);
            } else {
                assert_eq!(a.body, opaque, "{what}");
            }
        }
        // Erlenmeyer's own answers.
        let a = send(&h, post.clone(), "/api/query", Some(&body), None).await;
        assert_eq!((a.status, a.body.as_str()), (401, "Not authorized\n"));
        let reversed = Some(r#"{"start":2,"end":1}"#);
        let a = send(&h, post, "/api/query", reversed, Some(TOKEN)).await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (400, "Invalid query: Start date is after end date\n")
        );
        let a = send(&h, get, "/api/query", None, Some(TOKEN)).await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (501, "Please use the POST version of queries\n")
        );
        let a = send(
            &h,
            reqwest::Method::PUT,
            "/api/query",
            Some("{}"),
            Some(TOKEN),
        )
        .await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (405, "Method 'PUT' is not allowed\n")
        );
    }
    // The injected Warp failures, in both modes.
    for (errors, timeout, limit) in [
        (ErrorMode::Head, opaque.to_owned(), opaque.to_owned()),
        (
            ErrorMode::Text,
            "Exception at '5 ->LIST =>FETCHDOUBLE<=' in section [TOP] (FETCHDOUBLE failed. \
             (java.net.SocketTimeoutException: Read timed out))\n"
                .to_owned(),
            "Exception at '5 ->LIST =>FETCHDOUBLE<=' in section [TOP] (FETCHDOUBLE exceeded \
             limit of 20000000 datapoints, current count is 20000001)\n"
                .to_owned(),
        ),
    ] {
        let h = sim_with(SimConfig {
            errors,
            faults: vec![
                "500@first=1".parse().unwrap(),
                "fetch-limit@first=2".parse().unwrap(),
                "bad-token@first=3".parse().unwrap(),
            ],
            ..SimConfig::default()
        })
        .await;
        let a = post(&h, "/api/query", &body).await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (500, timeout.as_str()),
            "{errors}"
        );
        let a = post(&h, "/api/query", &body).await;
        assert_eq!(
            (a.status, a.body.as_str()),
            (500, limit.as_str()),
            "{errors}"
        );
        let a = post(&h, "/api/query", &body).await;
        assert_eq!(a.status, 500, "{errors}");
        assert_eq!(
            a.body == opaque,
            errors == ErrorMode::Head,
            "{errors}: {}",
            a.body
        );
        assert_eq!(post(&h, "/api/query", &body).await.status, 200);
    }
}
