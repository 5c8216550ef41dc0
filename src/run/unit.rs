//! Unit: what one (metric, datacenter, window) asks the server for, and its fetch as a task of
//! its own (raw points, or the parts of a split answer; server-side rollups; client rollups).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::RunCtx;
use super::task::AbortOnDrop;
use crate::extract::retry::FailureClass;
use crate::extract::server_rollup::{self, ServerRollupAnswer};
use crate::extract::split::{RawPiece, SplitRequest};
use crate::extract::{FetchError, MetricsClient, RawAnswer};
use crate::plan::{KnownSeries, Unit, Window};
use crate::schema::raw_table_decl;
use crate::semantics::rollup::{Rollup, RollupOutput};

/// What one unit asks the server for, owned so that the fetch runs as its own task.
pub(super) struct UnitRequest {
    pub(super) metric: String,
    pub(super) datacenter: Option<String>,
    pub(super) window: Window,
    /// A table of the metric needs raw points (a raw table, or a client-side rollup).
    pub(super) raw: bool,
    /// The metric's labels, the group-by of server-side downsampling.
    pub(super) labels: Vec<String>,
    /// Server-side rollup tables of the metric (`source.query_downsample`), by table index.
    pub(super) rollups: Vec<(usize, Rollup)>,
    /// Client-side rollup tables of the metric, by table index: computed by the fetch task
    /// from the raw series, on the cores that decode, not by the task that writes.
    pub(super) client_rollups: Vec<(usize, Rollup)>,
    /// Where a too-large raw answer may be cut: a multiple of every client-side rollup bucket
    /// of the metric, so each bucket is made from one part.
    pub(super) split_align_ms: i64,
    /// The series discovery found in this unit's datacenter: how series are split when even
    /// the smallest time slice is too large.
    pub(super) series: Option<Arc<KnownSeries>>,
}

/// What one unit brought: raw series for the tables that need raw points (raw tables and
/// client-side rollups), and server-computed rows per server-side rollup table.
pub(super) struct UnitAnswer {
    pub(super) raw: RawAnswer,
    pub(super) rollups: Vec<(usize, ServerRollupAnswer)>,
    /// Per client-side rollup table: the rollup of each of `raw.series`, in the same order.
    pub(super) rolled: Vec<(usize, Vec<RollupOutput>)>,
    /// The raw answer was too large to take whole (`raw` is then empty): its parts, in time
    /// order, fetched by their own task as the window takes them.
    pub(super) parts: Option<RawParts>,
}

/// A raw answer too large to take whole, to be fetched in parts
/// ([`MetricsClient::query_raw_split`]) when the writer comes to its unit ([`RawParts::start`]):
/// only the unit being written fetches parts, so however many split units are in flight,
/// memory holds two parts (the one being written and the next).
pub(super) struct RawParts {
    client: MetricsClient,
    request: SplitRequest,
    first_error: FetchError,
}

impl RawParts {
    /// Starts fetching the parts, in time order, into a channel of one: the task waits for
    /// room before fetching the next.
    pub(super) fn start(
        self,
    ) -> (
        mpsc::Receiver<std::result::Result<RawPiece, FetchError>>,
        AbortOnDrop<()>,
    ) {
        let (tx, rx) = mpsc::channel(1);
        let RawParts {
            client,
            request,
            first_error,
        } = self;
        let task = AbortOnDrop(tokio::spawn(async move {
            client.query_raw_split(request, first_error, &tx).await;
        }));
        (rx, task)
    }
}

/// The requests of one unit: the raw query when a table of its metric needs raw points, and
/// with `source.query_downsample` one downsampled query per aggregate of each rollup table.
pub(super) fn unit_request(ctx: &RunCtx<'_>, unit: &Unit, window: &Window) -> UnitRequest {
    let metric_plan = &ctx.plan.metrics[unit.metric];
    let server_side = ctx.pipeline.source.query_downsample;
    let tables = metric_plan
        .tables
        .iter()
        .map(|&t| (t, &ctx.pipeline.tables[t]));
    let rollups: Vec<(usize, Rollup)> = if server_side {
        tables
            .clone()
            .filter_map(|(t, spec)| spec.rollup.clone().map(|r| (t, r)))
            .collect()
    } else {
        Vec::new()
    };
    let labels = match crate::catalogue::Catalogue::builtin().get(&metric_plan.metric) {
        Some(def) => def.labels.clone(),
        None => raw_table_decl(metric_plan.component)
            .label_columns()
            .iter()
            .map(|l| l.to_string())
            .collect(),
    };
    let split_align_ms = tables
        .clone()
        .filter(|_| !server_side)
        .filter_map(|(_, spec)| spec.rollup.as_ref().map(|r| r.interval_ms))
        .fold(1000, lcm);
    let client_rollups = tables
        .clone()
        .filter(|_| !server_side)
        .filter_map(|(t, spec)| spec.rollup.clone().map(|r| (t, r)))
        .collect();
    let series = metric_plan.known_series(unit.datacenter.as_deref());
    UnitRequest {
        series,
        metric: metric_plan.metric.clone(),
        datacenter: unit.datacenter.clone(),
        window: *window,
        raw: tables
            .clone()
            .any(|(_, spec)| !server_side || spec.rollup.is_none()),
        labels,
        rollups,
        client_rollups,
        split_align_ms,
    }
}

/// Fetches one unit. The server-side rollup range is the window with its end rounded up to a
/// whole bucket (an open window's last bucket is partial either way and is fetched again by
/// the next run).
pub(super) async fn fetch_unit(
    client: MetricsClient,
    req: UnitRequest,
) -> std::result::Result<UnitAnswer, FetchError> {
    let (metric, dc, window) = (&req.metric, req.datacenter.as_deref(), req.window);
    let mut parts = None;
    let raw = if req.raw {
        let range = (window.start_ms, window.fetch_end_ms);
        match client.query_raw(metric, dc, range.0, range.1).await {
            Ok(raw) => raw,
            Err(e) if matches!(e.class(), FailureClass::TooLarge | FailureClass::Opaque) => {
                if e.class() == FailureClass::Opaque {
                    // An opaque `ovh` 500 may be a fetch limit or a refused token: a one-second
                    // query tells which before splitting anything.
                    client.probe_token(metric, dc, window.start_ms).await?;
                    tracing::info!(metric, datacenter = ?dc, error = %e,
                        "opaque server error while the token works: taking it for a fetch limit");
                }
                parts = Some(RawParts {
                    client: client.clone(),
                    request: SplitRequest {
                        metric: metric.clone(),
                        datacenter: req.datacenter.clone(),
                        range,
                        align_ms: req.split_align_ms,
                        series: req.series.clone(),
                    },
                    first_error: e,
                });
                RawAnswer::default()
            }
            Err(e) => return Err(e),
        }
    } else {
        RawAnswer::default()
    };
    let mut rollups = Vec::with_capacity(req.rollups.len());
    for (t, rollup) in &req.rollups {
        let bucket = rollup.interval_ms;
        let end = (window.fetch_end_ms.div_euclid(bucket)
            + i64::from(window.fetch_end_ms.rem_euclid(bucket) != 0))
            * bucket;
        let range = window.start_ms..end.min(window.end_ms);
        let answer = server_rollup::fetch(&client, metric, &req.labels, dc, rollup, range).await?;
        rollups.push((*t, answer));
    }
    let rolled = req
        .client_rollups
        .iter()
        .map(|(t, rollup)| {
            let rolled =
                crate::cpu::off_async(|| raw.series.iter().map(|s| rollup.of(s)).collect());
            (*t, rolled)
        })
        .collect();
    Ok(UnitAnswer {
        raw,
        rollups,
        rolled,
        parts,
    })
}

/// Least common multiple of two positive durations.
pub(super) fn lcm(a: i64, b: i64) -> i64 {
    fn gcd(a: i64, b: i64) -> i64 {
        if b == 0 { a } else { gcd(b, a % b) }
    }
    a / gcd(a, b) * b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_alignment_is_the_least_common_multiple() {
        assert_eq!(lcm(1000, 3_600_000), 3_600_000);
        assert_eq!(lcm(1000, 1500), 3000);
        assert_eq!(lcm(lcm(1000, 3_600_000), 86_400_000), 86_400_000);
    }
}
