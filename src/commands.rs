//! The API v6 commands that are not a run: `vscope-etl inventory` (a snapshot of the PCC's
//! filers, hosts and VMs into the sink) and `vscope-etl token` (the metrics token). Like `run`
//! and `check`, they sit at the edge: they use the stages and turn their errors into the
//! program's [`Error`].

use crate::config::{ConfigError, OvhEndpoint, OvhSpec, Pipeline};
use crate::error::{Error, Result};
use crate::load::Sink;
use crate::load::lease::Lease;
use crate::ovh::inventory::InventoryReport;
use crate::ovh::model::MetricsToken;
use crate::ovh::{Inventory, OvhClient, build_client, metrics_token, snapshot};
use crate::semantics::time::format_window_stamp;
use crate::sim::SimHandle;

/// API v6 of a pipeline for the commands that need nothing else: the client, its settings and
/// the in-process simulator behind it when `source.url = "sim"`.
#[derive(Debug)]
pub struct ApiSession {
    /// The client.
    pub client: OvhClient,
    /// `[source.ovh]`.
    pub spec: OvhSpec,
    sim: Option<SimHandle>,
}

impl ApiSession {
    /// Starts the simulator if the pipeline uses it and builds the client. A pipeline without
    /// `[source.ovh]` is a configuration error (exit code 2).
    pub async fn open(pipeline: &Pipeline) -> Result<ApiSession> {
        let source = &pipeline.source;
        let Some(spec) = source.ovh.clone() else {
            return Err(Error::Config(ConfigError::Invalid {
                key: "source.ovh".into(),
                message: "is not set: the live inventory and the metrics token come from \
                          OVHcloud API v6; add [source.ovh] with endpoint, application_key, \
                          application_secret, consumer_key and service_name"
                    .into(),
            }));
        };
        let sim = match (&spec.endpoint, source.sim_config()) {
            (OvhEndpoint::Sim, Some(cfg)) => Some(
                crate::sim::start(cfg, ([127, 0, 0, 1], 0).into())
                    .await
                    .map_err(Error::Sim)?,
            ),
            _ => None,
        };
        let base = sim.as_ref().map(SimHandle::base_url);
        let client = build_client(source, &spec, base.as_deref()).map_err(Error::Ovh)?;
        Ok(ApiSession { client, spec, sim })
    }

    /// Stops the in-process simulator, if any.
    pub async fn close(self) {
        if let Some(sim) = self.sim {
            sim.shutdown().await;
        }
    }
}

/// `vscope-etl inventory`: takes a snapshot of the PCC and writes the `filers`, `hosts` and
/// `vms` tables to the pipeline's sink, under the pipeline's lease (so it never races a run's
/// clean-up of staged files). `now_ms` stamps the snapshot (the system clock when `None`).
pub async fn inventory_command(
    pipeline: &Pipeline,
    now_ms: Option<i64>,
) -> Result<InventoryReport> {
    let now_ms = now_ms.unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let snapshot_ms = now_ms.div_euclid(1000) * 1000;
    let sink = Sink::open_with(&pipeline.sink.url, &pipeline.sink.s3)?.for_pipeline(&pipeline.name);
    let session = ApiSession::open(pipeline).await?;
    let result = async {
        let inventory = Inventory::fetch(
            &session.client,
            &session.spec.service_name,
            pipeline
                .source
                .concurrency
                .min(crate::ovh::API_V6_MAX_IN_FLIGHT),
            snapshot_ms,
        )
        .await
        .map_err(Error::Ovh)?;
        let run_id = format!(
            "inventory-{}-{:08x}",
            format_window_stamp(now_ms),
            fastrand::u32(..)
        );
        let lease = Lease::acquire(&sink, &pipeline.name, &run_id, pipeline.sink.lease_ttl_ms)
            .await?
            .keep();
        let written = snapshot::write(
            &sink,
            &inventory,
            &crate::load::writer::FileSettings::of(pipeline),
        )
        .await;
        lease.release_or_warn().await;
        let mut report = InventoryReport::of(&inventory, &session.client);
        report.files = written?;
        Ok(report)
    }
    .await;
    session.close().await;
    result
}

/// `vscope-etl token`: the metrics token of `[source.ovh] user_id` (or of `admin`), and the
/// user id used.
pub async fn token_command(pipeline: &Pipeline) -> Result<(i64, MetricsToken)> {
    let session = ApiSession::open(pipeline).await?;
    let result = metrics_token(
        &session.client,
        &session.spec.service_name,
        session.spec.user_id,
    )
    .await
    .map_err(Error::Ovh);
    session.close().await;
    result
}
