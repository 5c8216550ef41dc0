//! The `ovh` dialect (Erlenmeyer in front of Warp 10): raw queries, filters, errors, tokens.

use super::*;

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
