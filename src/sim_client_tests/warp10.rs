//! The metrics client through Warp 10's own API (`source.protocol = "warp10"`) against the
//! simulator: the same series and points as the OpenTSDB path, boundaries included, and Warp's
//! failures classified as the run needs them.

use crate::config::{Protocol, Source};
use crate::dialect::Dialect;
use crate::extract::MetricsClient;
use crate::extract::retry::FailureClass;
use crate::sim::{SimConfig, SimHandle};

const METRIC: &str = "vscope.vm.cpu.usage.perc";
/// 2026-11-01T00:00:00Z.
const DAY: i64 = 1_793_491_200_000;

fn source(protocol: Protocol, token: &str) -> Source {
    let pipeline = format!(
        "name = \"t\"\n[source]\nurl = \"sim\"\ntoken = \"{token}\"\nmax_attempts = 3\n\
         [scope]\nstart = \"2026-11-01T00:00:00Z\"\n\
         [[table]]\nname = \"vm_metrics\"\nmetrics = [\"vscope.vm.*\"]\n[sink]\nurl = \"/tmp/x\"\n"
    );
    let mut source = crate::config::parse(&pipeline, "t.toml", &|_| None)
        .unwrap()
        .source;
    source.protocol = protocol;
    source
}

fn client(sim: &SimHandle, protocol: Protocol, token: &str) -> MetricsClient {
    let path = match protocol {
        Protocol::Opentsdb => "",
        Protocol::Warp10 => "/warp10",
    };
    let base = url::Url::parse(&format!("{}{path}", sim.base_url())).unwrap();
    MetricsClient::new(&source(protocol, token), base, Dialect::Ovh).unwrap()
}

async fn start_sim(step_secs: i64, faults: &[&str]) -> SimHandle {
    let cfg = SimConfig {
        datacenters: 2,
        vms_per_datacenter: 3,
        step_secs,
        token: Some("good".into()),
        faults: faults.iter().map(|f| f.parse().unwrap()).collect(),
        ..SimConfig::default()
    };
    crate::sim::start(cfg, ([127, 0, 0, 1], 0).into())
        .await
        .unwrap()
}

/// Every series of a window, through each protocol: same tags, same timestamps, same values.
/// With one point a second, points are stamped exactly on the bounds, which shows that both
/// keep `[start, end)`.
#[tokio::test]
async fn both_protocols_bring_the_same_points_boundaries_included() {
    let sim = start_sim(1, &[]).await;
    let otsdb = client(&sim, Protocol::Opentsdb, "good");
    let warp = client(&sim, Protocol::Warp10, "good");
    for (start, end, dc) in [
        (DAY, DAY + 3_600_000, None),
        (
            DAY + 60_000,
            DAY + 180_000,
            Some("pcc-37-187-228-180_datacenter870"),
        ),
        (DAY - 86_400_000, DAY, None),
    ] {
        let a = otsdb.query_raw(METRIC, dc, start, end).await.unwrap();
        let b = warp.query_raw(METRIC, dc, start, end).await.unwrap();
        let key = |r: crate::extract::RawAnswer| {
            let mut v: Vec<_> = r
                .series
                .into_iter()
                .map(|s| (s.tags, s.ts, s.values))
                .collect();
            v.sort_by(|x, y| x.0.cmp(&y.0));
            v
        };
        let (a, b) = (key(a), key(b));
        assert!(!a.is_empty());
        assert_eq!(a, b, "{start}..{end} {dc:?}");
        // One point a second: every series has a point on the start (kept) and on the end
        // (left to the next window), gaps aside.
        assert!(a.iter().any(|s| s.1.first() == Some(&start)));
        assert!(a.iter().any(|s| s.1.last() == Some(&(end - 1000))));
        assert!(a.iter().all(|s| s.1.iter().all(|&t| t >= start && t < end)));
    }
    // Series groups (how a unit too large at the smallest time slice is split): the same
    // series through each protocol's filters (`regexp` there, a `~` selector here), and the
    // two halves cover every series once.
    let known: Vec<Vec<String>> = otsdb
        .lookup(METRIC)
        .await
        .unwrap()
        .iter()
        .map(|t| vec![t["vm"].clone()])
        .collect();
    let all = crate::extract::series_group::SeriesGroup::all(&["vm".to_string()]);
    let (inside, outside) = all.split(&known).expect("6 VMs split");
    let mut covered = 0;
    for g in [&inside, &outside] {
        let (s, e) = (DAY, DAY + 600_000);
        let a = otsdb
            .query_raw_group(METRIC, None, Some(g), s, e)
            .await
            .unwrap();
        let b = warp
            .query_raw_group(METRIC, None, Some(g), s, e)
            .await
            .unwrap();
        let tags = |r: &crate::extract::RawAnswer| {
            let mut t: Vec<_> = r.series.iter().map(|x| x.tags.clone()).collect();
            t.sort();
            t
        };
        assert!(!a.series.is_empty(), "{:?}", g.filters());
        assert_eq!(tags(&a), tags(&b), "{:?}", g.filters());
        covered += b.series.len();
    }
    assert_eq!(covered, 6);
    // Discovery: find and lookup know the same series.
    let mut l = otsdb.lookup(METRIC).await.unwrap();
    let mut f = warp.lookup(METRIC).await.unwrap();
    l.sort();
    f.sort();
    assert_eq!(l.len(), 6);
    assert_eq!(l, f);
    sim.shutdown().await;
}

/// A refused token is an authentication failure (403 from Warp), and the token is nowhere in
/// the error; 429 and 503 are retried; a cut body is retried; a fetch-limit answer is too
/// large (split by the caller).
#[tokio::test]
async fn warp_failures_are_classified_like_the_opentsdb_ones() {
    let sim = start_sim(60, &[]).await;
    let bad = client(&sim, Protocol::Warp10, "s3cret-wrong");
    let e = bad
        .query_raw(METRIC, None, DAY, DAY + 60_000)
        .await
        .unwrap_err();
    assert_eq!(e.class(), FailureClass::Auth, "{e}");
    assert!(e.to_string().contains("Invalid token"), "{e}");
    assert!(!e.to_string().contains("s3cret-wrong"), "{e}");
    let e = bad.lookup(METRIC).await.unwrap_err();
    assert_eq!(e.class(), FailureClass::Auth, "{e}");
    sim.shutdown().await;

    for (fault, retries) in [("429:0@first=1", 1), ("503@first=2", 2), ("cut@first=1", 1)] {
        let sim = start_sim(60, &[fault]).await;
        let warp = client(&sim, Protocol::Warp10, "good");
        let got = warp
            .query_raw(METRIC, None, DAY, DAY + 3_600_000)
            .await
            .unwrap_or_else(|e| panic!("{fault}: {e}"));
        assert_eq!(got.series.len(), 6, "{fault}");
        assert_eq!(sim.stats().faults_injected, retries, "{fault}");
        sim.shutdown().await;
    }

    let sim = start_sim(60, &["fetch-limit"]).await;
    let warp = client(&sim, Protocol::Warp10, "good");
    let e = warp
        .query_raw(METRIC, None, DAY, DAY + 3_600_000)
        .await
        .unwrap_err();
    assert_eq!(e.class(), FailureClass::TooLarge, "{e}");
    sim.shutdown().await;
}

/// The simulator's `/api/v0/exec` (the alternative the benchmark measures) holds the same
/// points as `/api/v0/fetch` for one `FETCH`, refuses a script over WarpScript's default fetch
/// limit unless it raises it with `LIMIT`, and refuses an unknown token in `AUTHENTICATE`.
#[tokio::test]
async fn exec_fetches_what_fetch_streams_under_warpscripts_limits() {
    let sim = start_sim(60, &[]).await;
    let http = reqwest::Client::new();
    let (end_us, span_us) = ((DAY + 3_600_000) * 1000 - 1, 3_600_000_000i64);
    let script = |auth: &str, limit: &str| {
        format!(
            "{auth}\n[ 'good' '{METRIC}' {{ 'datacenter' 'pcc-37-187-228-180_datacenter869' }} {end_us} {span_us} ] FETCH{limit}"
        )
    };
    let exec = |body: String| {
        let http = http.clone();
        let url = format!("{}/warp10/api/v0/exec", sim.base_url());
        async move {
            let r = http.post(url).body(body).send().await.unwrap();
            let status = r.status().as_u16();
            let msg = r
                .headers()
                .get("X-Warp10-Error-Message")
                .map(|v| v.to_str().unwrap().to_string());
            (status, msg, r.text().await.unwrap())
        }
    };
    let (status, _, body) = exec(script("'good' AUTHENTICATE 20000000 LIMIT", "")).await;
    assert_eq!(status, 200, "{body}");
    let stack: serde_json::Value = serde_json::from_str(&body).unwrap();
    let gts = stack[0].as_array().unwrap();
    assert_eq!(gts.len(), 3);
    let exec_points: usize = gts.iter().map(|g| g["v"].as_array().unwrap().len()).sum();
    let fetched = client(&sim, Protocol::Warp10, "good")
        .query_raw(
            METRIC,
            Some("pcc-37-187-228-180_datacenter869"),
            DAY,
            DAY + 3_600_000,
        )
        .await
        .unwrap();
    assert_eq!(exec_points as u64, fetched.stats.points);
    // 30 days of 6 series at one point a minute: over 100 000 points without LIMIT.
    let big = format!(
        "[ 'good' '{METRIC}' {{ }} {end_us} {} ] FETCH",
        30 * 86_400_000_000i64
    );
    let (status, msg, _) = exec(big).await;
    assert_eq!(status, 500);
    assert!(
        msg.unwrap()
            .contains("FETCH exceeded limit of 100000 datapoints")
    );
    let (status, msg, _) = exec(script("'nope' AUTHENTICATE", "")).await;
    assert_eq!(status, 500);
    assert!(msg.unwrap().contains("Invalid token"));
    let (status, _, body) = exec(script("", " SIZE")).await;
    assert_eq!(status, 400, "a script the simulator does not run: {body}");
    sim.shutdown().await;
}
