//! The metrics client against the simulator's gzip answers (was `crates/sim/src/gzip.rs`'s
//! tests).

use axum::http::header;

/// Faults keep their meaning under gzip (the layer compresses what the fault plan
/// produced): a `cut` answer is a gzip stream that stops mid-way, and the metrics client
/// retries it, like an `html` or `empty` 200; a `stall` is only slower. Each run returns the
/// same series as a healthy server, and the bytes of the failed attempt count on the wire.
#[tokio::test]
async fn faults_on_gzip_answers_stay_transient_for_the_client() {
    use crate::config::Source;
    use crate::dialect::Dialect;
    use crate::extract::MetricsClient;
    use std::sync::atomic::Ordering;
    let (start, end) = (1_793_491_200_000, 1_793_491_200_000 + 6 * 3_600_000);
    let metric = "vscope.vm.cpu.usage.perc";
    let pipeline = "name = \"t\"\n[source]\nurl = \"sim\"\n[scope]\nstart = \"2026-11-01T00:00:00Z\"\n\
         [[table]]\nname = \"vm_metrics\"\nmetrics = [\"vscope.vm.*\"]\n[sink]\nurl = \"/tmp/x\"\n";
    let mut source: Source = crate::config::parse(pipeline, "t.toml", &|_| None)
        .unwrap()
        .source;
    source.max_attempts = 3;
    let mut results = Vec::new();
    for (fault, retries) in [
        ("none", 0),
        ("cut", 1),
        ("html", 1),
        ("empty", 1),
        ("stall:200ms", 0),
    ] {
        let cfg = crate::sim::SimConfig {
            datacenters: 1,
            vms_per_datacenter: 3,
            // `cut` fails twice: once for the look at the raw answer below, once for the
            // client.
            faults: match fault {
                "none" => Vec::new(),
                "cut" => vec!["cut@first=2".parse().unwrap()],
                f => vec![format!("{f}@first=1").parse().unwrap()],
            },
            ..crate::sim::SimConfig::default()
        };
        let sim = crate::sim::start(cfg, ([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        if fault == "cut" {
            // What the fault sends: a 200 announced as gzip whose stream stops mid-way.
            let resp = reqwest::Client::new()
                .post(format!("{}/api/query", sim.base_url()))
                .header(header::ACCEPT_ENCODING, "gzip")
                .body(format!(
                    r#"{{"start":{start},"end":{end},"queries":[{{"metric":"{metric}","aggregator":"none"}}]}}"#
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(resp.headers()[header::CONTENT_ENCODING], "gzip");
            assert!(resp.bytes().await.is_err(), "the body is cut short");
        }
        let client = MetricsClient::new(
            &source,
            url::Url::parse(&sim.base_url()).unwrap(),
            Dialect::Ovh,
        )
        .unwrap();
        let raw = client.query_raw(metric, None, start, end).await.unwrap();
        let stats = client.stats();
        assert_eq!(stats.retries.load(Ordering::Relaxed), retries, "{fault}");
        let wire = stats.bytes_on_wire.load(Ordering::Relaxed);
        let decoded = stats.bytes.load(Ordering::Relaxed);
        results.push((
            fault,
            wire,
            decoded,
            raw.series
                .into_iter()
                .map(|s| (s.tags, s.ts, s.values))
                .collect::<Vec<_>>(),
        ));
        sim.shutdown().await;
    }
    let (_, clean_wire, clean_decoded, clean_series) = &results[0];
    assert!(clean_wire * 2 < *clean_decoded);
    for (fault, wire, decoded, series) in &results[1..] {
        assert!(series == clean_series, "{fault}: same series");
        // The HTML page was read whole, then refused by the JSON decoder.
        assert!(decoded >= clean_decoded, "{fault}: the answer taken");
        if *fault == "cut" || *fault == "html" {
            assert!(
                wire > clean_wire,
                "{fault}: the failed attempt counts on the wire"
            );
        }
    }
}
