//! Session: the clients of a run, made once (the simulator started when the pipeline asks for
//! it, the metrics token fetched through API v6 when configured, the dialect decided), and the
//! live inventory snapshot.

use std::sync::Arc;

use super::RunOptions;
use crate::config::{DialectChoice, Discovery, Endpoint, Pipeline, Protocol};
use crate::error::{Error, Result};
use crate::extract::retry::FailureClass;
use crate::extract::{FetchError, MetricsClient};
use crate::load::Sink;
use crate::ovh::inventory::InventoryReport;
use crate::ovh::{Inventory, OvhClient};
use crate::plan::pipeline_metrics;
use crate::sim::SimHandle;

/// A client connected to the configured endpoint (and the simulator behind it, when built in).
pub struct Connection {
    /// The metrics client, dialect decided.
    pub client: MetricsClient,
    /// The in-process simulator, kept alive as long as the connection.
    pub sim: Option<SimHandle>,
    /// The OVHcloud API v6 client, when `[source.ovh]` is configured.
    pub ovh: Option<OvhClient>,
    /// Why the client speaks its dialect (configured, or what detection saw).
    pub dialect_reason: String,
}

/// Starts the simulator if the pipeline asks for it, builds the clients and decides the dialect.
/// With an empty `source.token` and `[source.ovh] user_id`, the read token is fetched through
/// API v6 first (`POST .../metricsToken`).
pub async fn connect(pipeline: &Pipeline) -> Result<Connection> {
    let source = &pipeline.source;
    // `None`: the endpoint comes with the token (`source.url` left out).
    let (mut base, sim) = match &source.endpoint {
        Endpoint::Url(u) => (Some(u.clone()), None),
        Endpoint::FromToken => (None, None),
        Endpoint::Sim(_) => {
            let cfg = source.sim_config().unwrap_or_default();
            let handle = crate::sim::start(cfg, ([127, 0, 0, 1], 0).into())
                .await
                .map_err(Error::Sim)?;
            // Warp 10 is served under `/warp10`, as the `warpEndpoint` API v6 hands out.
            let path = match source.protocol {
                Protocol::Opentsdb => "",
                Protocol::Warp10 => "/warp10",
            };
            let base = url::Url::parse(&format!("{}{path}", handle.base_url()))
                .expect("simulator URL is valid");
            (Some(base), Some(handle))
        }
    };
    let initial = match source.dialect {
        DialectChoice::Fixed(d) => d,
        DialectChoice::Auto => crate::dialect::Dialect::Ovh,
    };
    let sim_base = sim.as_ref().map(SimHandle::base_url);
    // One retry budget and deadline for the run, whichever API the requests go to.
    let limits = Arc::new(crate::extract::retry::RunLimits::new(
        source.retry_budget,
        source.deadline,
    ));
    let ovh = match &source.ovh {
        Some(spec) => Some(
            crate::ovh::build_client(source, spec, sim_base.as_deref())
                .map_err(Error::Ovh)?
                .with_limits(limits.clone()),
        ),
        None => None,
    };
    let mut effective = source.clone();
    if let (true, Some(api), Some(spec)) = (source.token.is_empty(), &ovh, &source.ovh)
        && spec.user_id.is_some()
    {
        let (user_id, mut token) = crate::ovh::metrics_token(api, &spec.service_name, spec.user_id)
            .await
            .map_err(Error::Ovh)?;
        if source.protocol == Protocol::Warp10 {
            // The same token reads Warp 10 directly at its `warpEndpoint`.
            token.opentsdb_endpoint = token.warp_endpoint.clone();
        }
        tracing::info!(user_id, endpoint = %token.opentsdb_endpoint,
            "fetched the metrics read token through OVHcloud API v6");
        base = Some(crate::ovh::metrics_endpoint(base.as_ref(), &token).map_err(Error::Ovh)?);
        effective.token = token.token;
    }
    let Some(base) = base else {
        return Err(Error::Config(crate::config::ConfigError::Invalid {
            key: "source.url".into(),
            message: "is not set and no token was fetched through OVHcloud API v6 to take \
                      the endpoint from: set source.url"
                .into(),
        }));
    };
    let mut client = MetricsClient::new(&effective, base, initial)
        .map_err(Error::Fetch)?
        .with_limits(limits);
    let mut dialect_reason = "source.dialect".to_string();
    if source.protocol == Protocol::Warp10 {
        dialect_reason = "source.protocol = \"warp10\"".into();
    } else if source.dialect == DialectChoice::Auto {
        let probe = pipeline_metrics(pipeline).first().map_or_else(
            || "vscope.host.cpu.usage.perc".to_string(),
            |m| m.metric.clone(),
        );
        let (d, why) = client.detect_dialect(&probe).await.map_err(fatal_fetch)?;
        tracing::info!(dialect = %d, reason = why, "detected server dialect (source.dialect = \"auto\")");
        crate::config::check_server_downsampling(source, d, &pipeline.tables)?;
        client.set_dialect(d);
        dialect_reason = format!("detected: {why}");
    }
    Ok(Connection {
        client,
        sim,
        ovh,
        dialect_reason,
    })
}

/// Takes a snapshot of the live inventory through `api` (`[source.ovh]` must be set), stamped
/// `now_ms` to the second.
pub async fn fetch_inventory(
    pipeline: &Pipeline,
    api: &OvhClient,
    now_ms: i64,
) -> std::result::Result<Inventory, crate::ovh::OvhError> {
    let service_name = pipeline
        .source
        .ovh
        .as_ref()
        .map_or("", |o| o.service_name.as_str());
    Inventory::fetch(
        api,
        service_name,
        pipeline
            .source
            .concurrency
            .min(crate::ovh::API_V6_MAX_IN_FLIGHT),
        now_ms.div_euclid(1000) * 1000,
    )
    .await
}

pub(super) fn fatal_fetch(e: FetchError) -> Error {
    if e.class() == FailureClass::Auth {
        Error::Auth(e)
    } else {
        Error::Fetch(e)
    }
}

/// Takes the inventory snapshot of a run when `[source.ovh]` is configured and writes its
/// tables (not in a dry run, which fetches it only when discovery needs it). A failure other
/// than refused credentials only ends the run when discovery needs the inventory; otherwise
/// the run goes on and the manifest records why there is no snapshot.
pub(super) async fn refresh_inventory(
    pipeline: &Pipeline,
    conn: &Connection,
    sink: &Sink,
    opts: &RunOptions,
    now_ms: i64,
) -> Result<(Option<Inventory>, Option<InventoryReport>)> {
    let needed = pipeline.source.discovery == Discovery::Inventory;
    let Some(api) = conn.ovh.as_ref().filter(|_| needed || !opts.dry_run) else {
        return Ok((None, None));
    };
    match fetch_inventory(pipeline, api, now_ms).await {
        Ok(inventory) => {
            let mut report = InventoryReport::of(&inventory, api);
            // One snapshot per run: of a sharded run, shard 0 writes it.
            let writes = opts.shard.is_none_or(|s| s.index == 0);
            if !opts.dry_run && writes {
                report.files = crate::ovh::snapshot::write(
                    sink,
                    &inventory,
                    &crate::load::writer::FileSettings::of(pipeline),
                )
                .await?;
            }
            Ok((Some(inventory), Some(report)))
        }
        Err(e) if !needed && e.class() != FailureClass::Auth => {
            tracing::warn!(error = %e, "could not refresh the live inventory; the run goes on without it");
            let report = InventoryReport {
                error: Some(e.to_string()),
                ..InventoryReport::default()
            };
            Ok((None, Some(report)))
        }
        Err(e) => Err(Error::Ovh(e)),
    }
}

/// The cheap pre-flight every run does: one query over one second of the first metric of the
/// scope, just before `now - scope.settle`, to learn whether the token is accepted before any
/// discovery or extraction. A refusal (401/403, the bad-token text, or an opaque `ovh` 500 even
/// for this query) is [`Error::Auth`]; any other failure is only logged here (the run meets it
/// again, with retries, where it matters).
pub async fn check_token(
    pipeline: &Pipeline,
    client: &MetricsClient,
    now_ms: i64,
) -> Result<(), Error> {
    let Some(metric) = pipeline_metrics(pipeline).into_iter().next() else {
        return Ok(());
    };
    let at = now_ms - pipeline.scope.settle_ms - 1000;
    match client.probe_token(&metric.metric, None, at).await {
        Ok(()) => Ok(()),
        Err(e) if e.class() == FailureClass::Auth => Err(Error::Auth(e)),
        Err(e) => {
            tracing::warn!(error = %e, metric = %metric.metric, "the token check query failed; going on");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metrics client and the API v6 client of a run spend from one retry budget.
    #[tokio::test]
    async fn both_clients_of_a_run_share_its_limits() {
        let text = "name = \"t\"\n[source]\nurl = \"sim\"\nrequests_per_second = 0\n\
                    [source.ovh]\nservice_name = \"pcc-37-187-228-180\"\n\
                    [scope]\nstart = \"2026-11-01T00:00:00Z\"\nend = \"2026-11-01T01:00:00Z\"\n\
                    [[table]]\nname = \"vm\"\nmetrics = [\"vscope.vm.cpu.usage.perc\"]\n\
                    [sink]\nurl = \"./unused\"\n";
        let pipeline = crate::config::parse(text, "t.toml", &|_| None).unwrap();
        let conn = connect(&pipeline).await.unwrap();
        let ovh = conn.ovh.as_ref().expect("[source.ovh] configured");
        assert!(std::ptr::eq(conn.client.limits(), ovh.limits()));
    }
}
