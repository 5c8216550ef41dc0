//! Downsampling and group-by through the shared semantics, and inputs that must never break the
//! server.

use super::*;

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
