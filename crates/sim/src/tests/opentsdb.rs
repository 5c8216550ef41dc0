//! The `opentsdb` dialect: raw queries, filters and rate, JSON errors, authentication.

use super::*;

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
