//! Discovery per dialect: `/api/search/lookup`, `/api/suggest`, aggregators and filters.

use super::*;

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
