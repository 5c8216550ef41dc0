//! Warp 10's fetch range, fetch limit and error relaying (`warp.rs`).

use super::*;

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
