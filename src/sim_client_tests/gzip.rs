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
        // OpenTSDB's own server: Erlenmeyer (`ovh`) answers plain.
        let cfg = crate::sim::SimConfig {
            dialect: Dialect::Opentsdb,
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
            Dialect::Opentsdb,
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

/// Each API is compressed by the rules of the server that answers it (`crates/sim/src/gzip.rs`):
/// Warp 10's Jetty at zlib level 6 for `/api/v0/fetch`, and not its 403 error page (Jetty
/// compresses 2xx only); OpenTSDB's own Netty at level 6 for `/api/query`, its 401 too (Netty
/// compresses every answer); Erlenmeyer (`ovh`) nothing, whatever the request accepts.
#[tokio::test]
async fn each_api_is_compressed_by_its_own_servers_rules() {
    use crate::dialect::Dialect;
    use crate::extract::body::{BodyDecoder, Encoding};
    use std::io::Write as _;
    let (start, end) = (1_793_491_200_000i64, 1_793_491_200_000i64 + 6 * 3_600_000);
    let http = reqwest::Client::new();
    let fetch = |base: String, token: &'static str| {
        let url = url::Url::parse_with_params(
            &format!("{base}/warp10/api/v0/fetch"),
            [
                ("selector", "vscope.vm.cpu.usage.perc{}".to_string()),
                ("now", (end * 1000 - 1).to_string()),
                ("timespan", ((end - start) * 1000).to_string()),
                ("format", "text".to_string()),
            ],
        )
        .unwrap();
        http.get(url)
            .header(header::ACCEPT_ENCODING, "gzip")
            .header(crate::sim::TOKEN_HEADER, token)
            .send()
    };
    let query = |base: String, token: Option<&'static str>| {
        let rb = http
            .post(format!("{base}/api/query"))
            .header(header::ACCEPT_ENCODING, "gzip");
        let rb = match token {
            Some(t) => rb.basic_auth("read", Some(t)),
            None => rb,
        };
        rb.body(format!(
                r#"{{"start":{start},"end":{end},"queries":[{{"metric":"vscope.vm.cpu.usage.perc","aggregator":"none"}}]}}"#
            ))
            .send()
    };
    let gunzip = |wire: &[u8]| {
        let mut d = BodyDecoder::new(Encoding::Gzip, 1 << 30, None);
        d.push(wire).unwrap();
        d.finish().unwrap()
    };
    let gzip_at = |plain: &[u8], level: u32| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
        e.write_all(plain).unwrap();
        e.finish().unwrap().len() as f64
    };
    for dialect in [Dialect::Opentsdb, Dialect::Ovh] {
        let cfg = crate::sim::SimConfig {
            dialect,
            datacenters: 1,
            vms_per_datacenter: 20,
            step_secs: 20,
            token: Some("good".into()),
            ..crate::sim::SimConfig::default()
        };
        let sim = crate::sim::start(cfg, ([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let base = sim.base_url();
        let mut compressed = vec![("warp10", fetch(base.clone(), "good").await.unwrap())];
        let opentsdb = query(base.clone(), Some("good")).await.unwrap();
        assert_eq!(opentsdb.status(), 200, "{dialect}");
        if dialect == Dialect::Opentsdb {
            compressed.push(("opentsdb", opentsdb));
        } else {
            assert!(
                opentsdb.headers().get(header::CONTENT_ENCODING).is_none(),
                "Erlenmeyer answers plain"
            );
            assert!(opentsdb.bytes().await.unwrap().starts_with(b"["));
        }
        for (api, resp) in compressed {
            assert_eq!(resp.status(), 200, "{api}");
            assert_eq!(resp.headers()[header::CONTENT_ENCODING], "gzip", "{api}");
            let wire = resp.bytes().await.unwrap();
            let plain = gunzip(&wire);
            assert!(plain.len() > 100_000, "{api}: {} bytes", plain.len());
            // Within 3 % of one gzip member at level 6 (the stream is flushed every 128 KiB),
            // and told apart from nginx's default level by more than that.
            let ratio = wire.len() as f64 / gzip_at(&plain, 6);
            assert!((0.99..1.03).contains(&ratio), "{api}: {ratio}");
            let nginx = gzip_at(&plain, crate::sim::GZIP_NGINX_DEFAULT_LEVEL);
            assert!(
                gzip_at(&plain, 6) / nginx < 0.96,
                "{api}: the levels differ"
            );
        }
        let refused = fetch(base.clone(), "wrong").await.unwrap();
        assert_eq!(refused.status(), 403);
        assert!(refused.headers().get(header::CONTENT_ENCODING).is_none());
        // Netty compresses error answers too; Erlenmeyer nothing.
        let refused = query(base, None).await.unwrap();
        assert_eq!(refused.status(), 401);
        assert_eq!(
            refused.headers().get(header::CONTENT_ENCODING).is_some(),
            dialect == Dialect::Opentsdb,
            "{dialect}"
        );
        sim.shutdown().await;
    }
}
