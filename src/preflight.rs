//! Pre-flight: what a new user runs first (`vscope-etl check PIPELINE`), and the cheap part of it
//! that every `run` does before planning.
//!
//! Against the real OVH endpoint a wrong setting rarely says its name: a token of another PCC,
//! or an endpoint of another region, answers `200 []` everywhere (an unknown metric is not an
//! error on Erlenmeyer, `reference/api.md` §2.5), and a refused token may come back as an opaque
//! `500 invalid character 'E' looking for beginning of value` (Erlenmeyer HEAD). So the checks
//! ask questions whose answers can only mean one thing:
//!
//! 1. the endpoint answers, and which dialect it speaks (detected or configured);
//! 2. the token is accepted: one query over one second, far below any fetch limit, so an
//!    opaque 500 there can only be the token (exit 3);
//! 3. how many series each metric of the scope has: none at all means the wrong region or a
//!    token of another PCC, and a run refuses to commit anything then (exit 2,
//!    [`crate::error::Error::NothingDiscovered`]);
//! 4. how large one window's answer is for the largest unit, extrapolated from a short slice,
//!    against `source.max_answer_size` and the server's fetch limit;
//! 5. whether the answers come compressed (over a network the bytes a point set the speed);
//! 6. the sink can be listed (bucket, path and credentials).
//!
//! `run` does step 2 only (one request); steps 3 happen anyway when it plans.

use std::time::Instant;

use serde::Serialize;

use crate::config::Pipeline;
use crate::error::{EXIT_AUTH, EXIT_CONFIG, EXIT_FAILED_UNITS, EXIT_OK, Error};
use crate::extract::MetricsClient;
use crate::extract::retry::FailureClass;
use crate::run::{Connection, RunOptions, build_plan, check_token, connect, fetch_inventory};

/// Erlenmeyer's datapoint cap per sub-query (`20000000 LIMIT`, `reference/api.md` §2.3): the
/// only fetch limit of the real endpoint that is documented.
pub const WARP_FETCH_LIMIT: u64 = 20_000_000;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Fine.
    Ok,
    /// Works, but worth knowing (e.g. a metric with no series, answers that will be split).
    Warn,
    /// A run would fail or write nothing right.
    Fail,
}

/// One line of the report: what was checked, what was found, and what to do about it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckItem {
    /// What was checked (`endpoint`, `token`, `series`, `answer size`, `sink`).
    pub check: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// What to do, when something is wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// Everything `vscope-etl check` found, and the exit code it means.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// The checks, in the order they ran.
    pub items: Vec<CheckItem>,
    /// 0 when nothing failed; 3 when the token is refused; 2 for a configuration that finds no
    /// series; 1 for anything else that fails.
    pub exit_code: u8,
}

impl CheckReport {
    fn push(&mut self, check: &'static str, status: Status, detail: String, fix: Option<String>) {
        self.items.push(CheckItem {
            check,
            status,
            detail,
            fix,
        });
    }

    fn fail(&mut self, check: &'static str, e: &Error, exit_code: u8) {
        self.push(check, Status::Fail, e.to_string(), fix_for(e));
        if self.exit_code == EXIT_OK {
            self.exit_code = exit_code;
        }
    }

    /// The report as lines for a terminal.
    pub fn describe(&self) -> String {
        let mut out = String::new();
        for item in &self.items {
            let mark = match item.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            out.push_str(&format!("{mark}  {:<12} {}\n", item.check, item.detail));
            if let Some(fix) = &item.fix {
                out.push_str(&format!("      {:<12} fix: {fix}\n", ""));
            }
        }
        out
    }
}

/// What to tell the user to do about an error found by a check.
fn fix_for(e: &Error) -> Option<String> {
    match e {
        Error::Auth(_) => Some(
            "get a fresh read token (`vscope-etl token PIPELINE`, or POST \
             /dedicatedCloud/{serviceName}/user/{userId}/metricsToken) and set source.token; \
             check that it belongs to this PCC"
                .into(),
        ),
        Error::NothingDiscovered { .. } => Some(
            "use the opentsdbEndpoint the metricsToken answer names for this PCC as source.url \
             (endpoints are per region), and a token of this PCC"
                .into(),
        ),
        Error::Fetch(_) => {
            Some("check source.url (scheme, host, region) and that this machine reaches it".into())
        }
        _ => None,
    }
}

/// Runs every check of `vscope-etl check` and says what it found. Never fails itself: each
/// problem is a [`Status::Fail`] item with its fix, and later checks that need an earlier one
/// are skipped.
pub async fn check(pipeline: &Pipeline, now_ms: i64) -> CheckReport {
    let mut report = CheckReport {
        items: Vec::new(),
        exit_code: EXIT_OK,
    };
    let t0 = Instant::now();
    let conn = match connect(pipeline).await {
        Ok(c) => c,
        Err(e) => {
            let code = e.exit_code();
            report.fail("endpoint", &e, code);
            return report;
        }
    };
    let speaks = match conn.client.protocol() {
        crate::config::Protocol::Opentsdb => format!("dialect {}", conn.client.dialect()),
        crate::config::Protocol::Warp10 => "the Warp 10 protocol".to_string(),
    };
    report.push(
        "endpoint",
        Status::Ok,
        format!(
            "{} answers; {speaks} ({}), in {:.1} s",
            pipeline.source.endpoint_text(),
            conn.dialect_reason,
            t0.elapsed().as_secs_f64()
        ),
        None,
    );
    let t1 = Instant::now();
    match check_token(pipeline, &conn.client, now_ms).await {
        Ok(()) => report.push(
            "token",
            Status::Ok,
            format!(
                "a one-second query is answered ({:.2} s)",
                t1.elapsed().as_secs_f64()
            ),
            None,
        ),
        Err(e) => {
            report.fail("token", &e, EXIT_AUTH);
            finish(conn).await;
            return report;
        }
    }
    let inventory = match (&conn.ovh, pipeline.source.discovery) {
        (Some(api), crate::config::Discovery::Inventory) => {
            match fetch_inventory(pipeline, api, now_ms).await {
                Ok(inv) => Some(inv),
                Err(e) => {
                    let e = Error::Ovh(e);
                    let code = e.exit_code();
                    report.fail("inventory", &e, code);
                    finish(conn).await;
                    return report;
                }
            }
        }
        _ => None,
    };
    let opts = RunOptions {
        dry_run: true,
        now_ms: Some(now_ms),
        ..RunOptions::default()
    };
    let plan = match build_plan(
        pipeline,
        &conn.client,
        &opts,
        None,
        &Default::default(),
        now_ms,
        inventory.as_ref(),
    )
    .await
    {
        Ok(p) => p,
        Err(e) => {
            let code = match &e {
                Error::NothingDiscovered { .. } => EXIT_CONFIG,
                other => other.exit_code(),
            };
            report.fail("series", &e, code);
            finish(conn).await;
            return report;
        }
    };
    let empty: Vec<&str> = plan
        .metrics
        .iter()
        .filter(|m| m.series == Some(0))
        .map(|m| m.metric.as_str())
        .collect();
    let counts: Vec<String> = plan
        .metrics
        .iter()
        .map(|m| match (m.series, &m.datacenters) {
            (Some(n), Some(dcs)) => format!("{} {n} ({} datacenters)", m.metric, dcs.len()),
            _ => format!("{} (not discovered: source.discovery = \"none\")", m.metric),
        })
        .collect();
    report.push(
        "series",
        if empty.is_empty() {
            Status::Ok
        } else {
            Status::Warn
        },
        format!(
            "{} series in all: {}",
            plan.series_discovered(),
            counts.join(", ")
        ),
        (!empty.is_empty()).then(|| {
            format!(
                "no series for {}: nothing to export for them (undocumented metrics and \
                 components a PCC lacks are normal; otherwise check scope.metrics)",
                empty.join(", ")
            )
        }),
    );
    probe_answer_size(pipeline, &conn.client, &plan, now_ms, &mut report).await;
    check_compression(pipeline, &conn.client, &mut report);
    check_sink(pipeline, &mut report).await;
    finish(conn).await;
    report
}

/// Below this many decoded bytes an uncompressed answer says nothing: servers leave short
/// answers plain (nginx under 20 bytes, Jetty under 23) and the check's own requests are small.
const COMPRESSION_EVIDENCE_BYTES: u64 = 64 << 10;

/// Whether the answers the check received came compressed: over a network the bytes a point
/// set the export's speed, and OVH's OpenTSDB endpoint (Erlenmeyer) answers plain whatever
/// the client asks, while Warp 10 gzips its own answers (`crates/sim/src/gzip.rs` cites both),
/// about 4 times fewer bytes (docs/performance.md "Over the wire").
fn check_compression(pipeline: &Pipeline, client: &MetricsClient, report: &mut CheckReport) {
    use std::sync::atomic::Ordering::Relaxed;
    let decoded = client.stats().bytes.load(Relaxed);
    let wire = client.stats().bytes_on_wire.load(Relaxed);
    if !pipeline.source.gzip {
        report.push(
            "compression",
            Status::Ok,
            "not asked (source.gzip = false): answers travel plain".to_string(),
            None,
        );
    } else if wire < decoded {
        report.push(
            "compression",
            Status::Ok,
            format!(
                "answers come gzip: {} bytes on the wire for {decoded} decoded ({:.1}x fewer)",
                wire,
                decoded as f64 / wire.max(1) as f64
            ),
            None,
        );
    } else if decoded >= COMPRESSION_EVIDENCE_BYTES {
        let fix = match pipeline.source.protocol {
            crate::config::Protocol::Opentsdb => {
                "OVH's OpenTSDB endpoint (Erlenmeyer) does not compress its answers; Warp 10's \
                 own API does: source.protocol = \"warp10\" with the token's warpEndpoint as \
                 source.url moves about 4 times fewer bytes (README, \"OpenTSDB or Warp 10\")"
            }
            crate::config::Protocol::Warp10 => {
                "Warp 10 gzips its answers itself: something between it and this machine (a \
                 proxy) removes the compression; exports over a slow link will be about 4 \
                 times slower"
            }
        };
        report.push(
            "compression",
            Status::Warn,
            format!("the endpoint answered {decoded} bytes uncompressed although gzip was asked"),
            Some(fix.to_string()),
        );
    } else {
        report.push(
            "compression",
            Status::Ok,
            format!("too little received to tell ({decoded} bytes)"),
            None,
        );
    }
}

/// Fetches a short slice of the largest unit (the metric and datacenter with the most series)
/// and extrapolates to one window: points and bytes against `source.max_answer_size` and the
/// fetch limit, so that a user knows before a run whether windows will be split.
async fn probe_answer_size(
    pipeline: &Pipeline,
    client: &MetricsClient,
    plan: &crate::plan::Plan,
    now_ms: i64,
    report: &mut CheckReport,
) {
    let window_ms = pipeline.scope.window_ms;
    let slice_ms = window_ms.min(3_600_000);
    let end = (now_ms - pipeline.scope.settle_ms).div_euclid(1000) * 1000;
    let largest = plan
        .metrics
        .iter()
        .filter_map(|m| {
            let values = m.split_values.as_ref();
            let (dc, n) = match (&m.datacenters, values) {
                (Some(dcs), Some(v)) => dcs
                    .iter()
                    .map(|dc| {
                        (
                            Some(dc.clone()),
                            v.by_datacenter.get(dc).map_or(0, |x| x.rows.len()),
                        )
                    })
                    .max_by_key(|(_, n)| *n)?,
                _ => (None, m.series.unwrap_or(0)),
            };
            Some((m.metric.clone(), dc, n))
        })
        .max_by_key(|(_, _, n)| *n);
    let Some((metric, dc, _)) = largest else {
        return;
    };
    let requests_before = client
        .stats()
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    let bytes_before = client
        .stats()
        .bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    let answer = client
        .query_raw(&metric, dc.as_deref(), end - slice_ms, end)
        .await;
    let bytes = client
        .stats()
        .bytes
        .load(std::sync::atomic::Ordering::Relaxed)
        - bytes_before;
    let requests = client
        .stats()
        .requests
        .load(std::sync::atomic::Ordering::Relaxed)
        - requests_before;
    let unit = format!(
        "{metric}{}",
        dc.as_deref()
            .map(|d| format!(" in {d}"))
            .unwrap_or_default()
    );
    match answer {
        Ok(a) => {
            let scale = window_ms as f64 / slice_ms as f64;
            let points = (a.stats.points as f64 * scale).round() as u64;
            let window_bytes = (bytes as f64 * scale).round() as u64;
            let limit = pipeline.source.max_answer_bytes as u64;
            let parts = window_bytes
                .div_ceil(limit.max(1))
                .max(points.div_ceil(WARP_FETCH_LIMIT));
            let detail = format!(
                "largest unit {unit}: {} series, about {points} points and {} MiB per {} ms window \
                 (from {} ms: {} points, {bytes} bytes, {requests} request(s))",
                a.series.len(),
                window_bytes >> 20,
                window_ms,
                slice_ms,
                a.stats.points
            );
            if parts > 1 {
                report.push(
                    "answer size",
                    Status::Warn,
                    detail,
                    Some(format!(
                        "each window of it will be fetched in about {parts} parts or more (this \
                         works; a smaller scope.window makes fewer, larger files per part)"
                    )),
                );
            } else {
                report.push("answer size", Status::Ok, detail, None);
            }
        }
        Err(e) if matches!(e.class(), FailureClass::TooLarge | FailureClass::Opaque) => report
            .push(
            "answer size",
            Status::Warn,
            format!("even {slice_ms} ms of {unit} is too large for one answer: {e}"),
            Some(
                "the run splits such answers by time, then by series; it works, in more requests"
                    .into(),
            ),
        ),
        Err(e) => report.fail("answer size", &Error::Fetch(e), EXIT_FAILED_UNITS),
    }
}

/// Lists the sink's `_state/` folder: the bucket and path exist and the credentials read them.
async fn check_sink(pipeline: &Pipeline, report: &mut CheckReport) {
    let listed = async {
        let sink = crate::load::Sink::open_with(&pipeline.sink.url, &pipeline.sink.s3)?;
        sink.list_dir("_state").await?;
        Ok::<_, Error>(())
    }
    .await;
    match listed {
        Ok(()) => report.push(
            "sink",
            Status::Ok,
            format!("{} can be read", pipeline.sink.url),
            None,
        ),
        // A sink.url that is no usable sink (a file, a bucket that does not exist) is a
        // configuration error, exit 2, as `run` says.
        Err(e) => {
            let code = e.exit_code();
            report.fail("sink", &e, code);
        }
    }
}

async fn finish(conn: Connection) {
    if let Some(sim) = conn.sim {
        sim.shutdown().await;
    }
}
