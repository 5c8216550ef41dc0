//! The command line (design §6): what the user typed, validated by clap. The work itself is in
//! the library; `main.rs` dispatches.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::dialect::Dialect;
use crate::plan::Shard;

/// Exports OVHcloud vScope monitoring history (OpenTSDB API) to Hive-partitioned Parquet.
#[derive(Debug, Parser)]
#[command(name = "vscope-etl", version, about, long_about = None)]
pub struct Cli {
    /// Log filter (overridden by RUST_LOG), e.g. `info` or `vscope_etl=debug`.
    #[arg(long, global = true, default_value = "warn")]
    pub log: String,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Extract, transform and load a pipeline's range; continues from the ledger on reruns.
    Run(RunArgs),
    /// Show the work units (windows, metrics, datacenters) a run would do, without fetching data.
    Plan(PlanArgs),
    /// Check pipeline files without any network access.
    Validate(ValidateArgs),
    /// Pre-flight against the real server: endpoint, token, series per metric, answer size, sink.
    Check(CheckArgs),
    /// Snapshot the live filers, hosts and VMs (OVHcloud API v6, [source.ovh]) into the sink.
    Inventory(InventoryArgs),
    /// What the sink holds for a pipeline's range: per window (and shard) committed, open or
    /// missing, the watermark, who holds the lease. Reads the sink only.
    Status(StatusArgs),
    /// Merge the window, shard and part files of each (table, day or month) partition into
    /// sorted files of a target size (same rows); Delta readers never see it half done.
    Compact(CompactArgs),
    /// Delta tables: delete the data files no longer listed by a table's latest version and
    /// older than the retention period (time travel within it keeps working).
    Vacuum(VacuumArgs),
    /// Get the vScope read token and endpoints through OVHcloud API v6 ([source.ovh]).
    Token(TokenArgs),
    /// List the vScope metric catalogue.
    Metrics(MetricsArgs),
    /// Serve the vScope API simulator on a port (for trying pipelines and for tests).
    Sim(SimArgs),
    /// Capacity-planning report (hosts, VMs, datastores) from a dataset: HTML, Markdown, CSV, JSON.
    #[cfg(feature = "report")]
    Report(ReportArgs),
}

/// Range and sharding flags shared by `run` and `plan`.
#[derive(Debug, Args)]
pub struct RangeArgs {
    /// Range start, overriding scope.start (RFC 3339, unix time, or e.g. 2h-ago).
    #[arg(long)]
    pub start: Option<String>,
    /// Range end (exclusive), overriding scope.end.
    #[arg(long)]
    pub end: Option<String>,
    /// Only handle shard I of N (its share of every window's units, dealt by a stable hash;
    /// the last shard to stage a window publishes it), e.g. 0/4; `auto`: I (and N where
    /// the scheduler gives it) from a Kubernetes Indexed Job, an AWS Batch array job or a Cloud
    /// Run job (docs/operations.md).
    #[arg(long, value_name = "I/N|auto")]
    pub shard: Option<ShardArg>,
    /// Number of shards for `--shard auto` where the scheduler does not pass it (Kubernetes: the
    /// Job's `completions`).
    #[arg(long, env = "VSCOPE_SHARDS", value_name = "N")]
    pub shards: Option<u32>,
    /// Pretend the clock says this (RFC 3339 or unix time): reproducible runs and tests.
    #[arg(long, hide = true)]
    pub now: Option<String>,
}

/// `run` flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Pipeline file (TOML).
    pub pipeline: PathBuf,
    /// Range and shard.
    #[command(flatten)]
    pub range: RangeArgs,
    /// Plan and print what would be done; fetch no data, write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print a one-line JSON summary on stdout instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Re-fetch windows the ledger already holds as committed (normally skipped).
    #[arg(long)]
    pub force: bool,
    /// Month layouts (`partition_by` with `month`): leave the months this run finished as
    /// window files instead of compacting them (`vscope-etl compact` does it later).
    #[arg(long)]
    pub no_compact: bool,
}

/// `plan` flags.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Pipeline file (TOML).
    pub pipeline: PathBuf,
    /// Range and shard.
    #[command(flatten)]
    pub range: RangeArgs,
}

/// `check` flags.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Pipeline file (TOML).
    pub pipeline: PathBuf,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Pretend the clock says this (RFC 3339 or unix time), for tests.
    #[arg(long, hide = true)]
    pub now: Option<String>,
}

/// `compact` flags.
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Pipeline file (TOML).
    pub pipeline: PathBuf,
    /// Only this table.
    #[arg(long)]
    pub table: Option<String>,
    /// Only days or months ending by this time (a date or time; default: the ledger's
    /// watermark minus scope.lateness, so that no run rewrites a compacted period by itself).
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// About this many bytes per merged file.
    #[arg(long, default_value = "128MiB", value_name = "SIZE")]
    pub target_size: String,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `vacuum` flags.
#[derive(Debug, Args)]
pub struct VacuumArgs {
    /// Pipeline file (TOML).
    pub pipeline: PathBuf,
    /// Keep unreferenced files younger than this (time travel and readers of older versions
    /// need them), e.g. 7d (Delta's default), 24h, 0.
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    pub retain: String,
    /// Only list what would be deleted.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `status` flags.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Pipeline file (TOML).
    pub pipeline: PathBuf,
    /// Range start, overriding scope.start (RFC 3339, unix time, or e.g. 2h-ago).
    #[arg(long)]
    pub start: Option<String>,
    /// Range end (exclusive), overriding scope.end.
    #[arg(long)]
    pub end: Option<String>,
    /// The shard count of the sharded runs (`run --shard I/N`) whose missing shards are listed
    /// per window (default: the count found in the shards' marks).
    #[arg(long, env = "VSCOPE_SHARDS", value_name = "N")]
    pub shards: Option<u32>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Pretend the clock says this (RFC 3339 or unix time), for tests.
    #[arg(long, hide = true)]
    pub now: Option<String>,
}

/// `inventory` flags.
#[derive(Debug, Args)]
pub struct InventoryArgs {
    /// Pipeline file (TOML) with a [source.ovh] section.
    pub pipeline: PathBuf,
    /// Print a one-line JSON summary on stdout instead of the human summary.
    #[arg(long)]
    pub json: bool,
    /// Pretend the clock says this (RFC 3339 or unix time): the snapshot stamp, for tests.
    #[arg(long, hide = true)]
    pub now: Option<String>,
}

/// `token` flags.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Pipeline file (TOML) with a [source.ovh] section (user_id, or the `admin` user is used).
    pub pipeline: PathBuf,
    /// Print shell `export` lines (VSCOPE_METRICS_TOKEN, VSCOPE_OPENTSDB_ENDPOINT,
    /// VSCOPE_WARP_ENDPOINT), token included, for `eval "$(vscope-etl token P --export)"`.
    #[arg(long)]
    pub export: bool,
}

/// `validate` flags.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Pipeline files (TOML).
    #[arg(required = true)]
    pub pipelines: Vec<PathBuf>,
}

/// `metrics` flags.
#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `sim` flags.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port, printed at start).
    #[arg(long, default_value = "127.0.0.1:4242")]
    pub listen: SocketAddr,
    /// Server dialect to imitate.
    #[arg(long, default_value = "ovh")]
    pub dialect: Dialect,
    /// Require this read token (HTTP Basic password); default: no authentication.
    #[arg(long, env = "VSCOPE_SIM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Datacenters in the synthetic PCC.
    #[arg(long, default_value_t = 2)]
    pub datacenters: usize,
    /// Hosts per datacenter.
    #[arg(long, default_value_t = 3)]
    pub hosts: usize,
    /// Virtual machines per datacenter.
    #[arg(long, default_value_t = 12)]
    pub vms: usize,
    /// Datastores (filers) per datacenter.
    #[arg(long, default_value_t = 2)]
    pub filers: usize,
    /// Seconds between two points of a series.
    #[arg(long, default_value_t = 60)]
    pub step: i64,
    /// Seed of the synthetic data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// API v6 application key the simulator accepts (default: a fixed test key).
    #[arg(long)]
    pub ovh_application_key: Option<String>,
    /// API v6 application secret the simulator verifies signatures with.
    #[arg(
        long,
        env = "VSCOPE_SIM_OVH_APPLICATION_SECRET",
        hide_env_values = true
    )]
    pub ovh_application_secret: Option<String>,
    /// API v6 consumer key the simulator accepts.
    #[arg(long, env = "VSCOPE_SIM_OVH_CONSUMER_KEY", hide_env_values = true)]
    pub ovh_consumer_key: Option<String>,
    /// An access rule of that consumer key, "METHOD /path/glob" (repeat; default: GET
    /// /dedicatedCloud/* and POST /dedicatedCloud/*/user/*/metricsToken).
    #[arg(long = "ovh-rule", value_name = "RULE")]
    pub ovh_rules: Vec<String>,
    /// Per datacenter, N VMs missing from API v6 and N API-only VMs with no series.
    #[arg(long, default_value_t = 0)]
    pub inventory_drift: usize,
    /// Inject failures on /api/query and /api/v0/fetch, KIND[:ARG][@WHEN] (repeat), e.g. 503@first=2,
    /// 429:7@every=5, cut@first=1, fetch-limit:1h, bad-token, transient=0.1 (docs/reliability.md).
    #[arg(long = "fault", value_name = "FAULT")]
    // The doc comment is the flag's help text: `KIND[:ARG][@WHEN]` is syntax, not a link.
    #[allow(rustdoc::broken_intra_doc_links)]
    pub faults: Vec<crate::sim::FaultRule>,
    /// Seed of the fault draws (transient=P, @rate=P).
    #[arg(long, default_value_t = 0)]
    pub fault_seed: u64,
    /// How an ovh query's Warp 10 errors (fetch limit, bad token, timeout) are relayed: "text"
    /// (Warp's message) or "head" (Erlenmeyer HEAD's opaque "invalid character 'E' looking for
    /// beginning of value").
    #[arg(long, default_value = "text", value_name = "MODE")]
    pub errors: crate::sim::ErrorMode,
    /// Datapoints one sub-query may fetch (matched series x points in range) before the server
    /// refuses it (ovh: Warp's FETCH limit 500; opentsdb: 413).
    #[arg(long, default_value_t = crate::sim::ERLENMEYER_FETCH_LIMIT, value_name = "N")]
    pub max_fetch_points: u64,
    /// Whether an ovh FETCH keeps a point stamped exactly on the query start: "excluded" (Warp
    /// 10 up to 2.2) or "included" (Warp 10 2.3 and later).
    #[arg(long, default_value = "excluded", value_name = "WHICH")]
    pub fetch_start: crate::sim::FetchStart,
    /// Answer plain even to requests that accept gzip (default: gzip them, each API as its
    /// real server does: Warp 10's Jetty, OpenTSDB's Netty in the opentsdb dialect; the ovh
    /// dialect is plain anyway, as Erlenmeyer sends). Applies to --replay too.
    #[arg(long)]
    pub no_gzip: bool,
    /// Serve the pre-rendered answers of this directory instead of simulating (benchmarks;
    /// see `benches/gen_answers.py`). Other data flags are ignored.
    #[arg(long, value_name = "DIR")]
    pub replay: Option<std::path::PathBuf>,
    /// With --replay: answer 429 (Retry-After: 1) past R queries per second and token, a
    /// request budget for benchmarks of sharded runs (OVH documents no limit).
    #[arg(long, value_name = "R", requires = "replay")]
    pub token_rate: Option<f64>,
    /// With --replay: compress at this zlib level (1-9) instead of each API's server's (level
    /// 6 for both OpenTSDB's Netty and Warp 10's Jetty): what a looser or tighter server gives;
    /// nginx's default `gzip_comp_level 1` is this backend's level 2.
    #[arg(long, value_name = "N", requires = "replay", value_parser = clap::value_parser!(u32).range(1..=9))]
    pub gzip_level: Option<u32>,
    /// With --replay: compress every recorded answer once, before listening, and send those
    /// bytes (as nginx's gzip_static): a remote endpoint compresses on its own CPUs, so a
    /// benchmark on one machine must not charge the client's CPUs for it (benches/wire.sh).
    #[arg(long, requires = "replay", conflicts_with = "no_gzip")]
    pub precompress: bool,
    /// With --replay: send the answers through a link of this rate (e.g. 100Mbit), shared by
    /// all connections (benches/wire.sh; this machine cannot use tc netem).
    #[arg(long, value_name = "RATE", requires = "replay")]
    pub link_rate: Option<String>,
    /// With --link-rate: the round-trip time each request waits before its answer starts.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "20ms",
        requires = "link_rate"
    )]
    pub link_rtt: String,
}

/// `report` flags.
#[cfg(feature = "report")]
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The dataset: a sink directory, file:// URL or s3://bucket/prefix (default: the
    /// --pipeline file's sink).
    #[arg(long, value_name = "URL")]
    pub data: Option<String>,
    /// Take the sink URL and its [sink.s3] settings (endpoint, region, keys) from this pipeline.
    #[arg(long, value_name = "FILE")]
    pub pipeline: Option<PathBuf>,
    /// Period start (RFC 3339, unix time or e.g. 7d-ago); default: the first point.
    #[arg(long)]
    pub from: Option<String>,
    /// Period end, exclusive; default: after the last point (whole hours).
    #[arg(long)]
    pub to: Option<String>,
    /// Output directory.
    #[arg(long, default_value = "report")]
    pub out: PathBuf,
    /// Output formats: html, md, csv, json or all (repeat or comma-separate; default html,csv,json).
    #[arg(long = "format", value_delimiter = ',')]
    pub formats: Vec<String>,
    /// Usage threshold in percent (hours above it; under-provisioned VMs; hot hosts).
    #[arg(long, default_value_t = 80.0)]
    pub threshold: f64,
    /// A VM is over-provisioned when its CPU p95 is below this percent...
    #[arg(long, default_value_t = 20.0)]
    pub over_cpu: f64,
    /// ...and its RAM p95 below this percent.
    #[arg(long, default_value_t = 30.0)]
    pub over_ram: f64,
    /// A VM is under-provisioned when its CPU ready p95 reaches this many ms.
    #[arg(long, default_value_t = 1000.0)]
    pub ready_ms: f64,
    /// Datastore capacity (e.g. 10TB, 500GB) for every datastore, overriding the filers
    /// inventory.
    #[arg(long)]
    pub capacity: Option<String>,
    /// Read the raw tables even where rollup tables exist.
    #[arg(long)]
    pub raw: bool,
    /// Usable CPU of a datacenter, percent (time remaining, N+1 headroom, rightsizing target).
    #[arg(long, default_value_t = 80.0)]
    pub usable_cpu: f64,
    /// Usable RAM of a datacenter, percent (as --usable-cpu).
    #[arg(long, default_value_t = 80.0)]
    pub usable_ram: f64,
    /// Usable fill of a datastore, percent (its time remaining).
    #[arg(long, default_value_t = 90.0)]
    pub usable_datastore: f64,
    /// Rightsize VMs on their usage p95 or their peak.
    #[arg(long, default_value = "p95", value_parser = ["p95", "peak"])]
    pub rightsize_on: String,
    /// A VM is idle (reclaimable) when its CPU p95 is below this percent...
    #[arg(long, default_value_t = 5.0)]
    pub idle_cpu: f64,
    /// ...and its network rx and tx p95 below this (vScope units).
    #[arg(long, default_value_t = 1.0)]
    pub idle_net: f64,
    /// Print what the report's passes read (files, row groups kept by statistics, columns) on
    /// stderr.
    #[arg(long)]
    pub explain: bool,
}

/// `--shard`: a fixed share, or `auto` to take it from the batch scheduler running this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardArg {
    /// `I/N` as typed.
    Fixed(Shard),
    /// Resolved by [`RangeArgs::resolve_shard`] from the scheduler's environment variables.
    Auto,
}

impl std::str::FromStr for ShardArg {
    type Err = String;

    fn from_str(s: &str) -> Result<ShardArg, String> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(ShardArg::Auto);
        }
        s.parse()
            .map(ShardArg::Fixed)
            .map_err(|e: String| format!("{e}, or auto"))
    }
}

/// Where a scheduler puts a task's index and, when it does, the number of tasks. Kubernetes
/// sets `JOB_COMPLETION_INDEX` in the pods of an Indexed Job (kubernetes.io, "Indexed Job for
/// Parallel Processing with Static Work Assignment") but not the number of completions; AWS
/// Batch sets `AWS_BATCH_JOB_ARRAY_INDEX` and `AWS_BATCH_JOB_ARRAY_SIZE` in array jobs
/// (AWS Batch user guide, "job environment variables"); Cloud Run jobs set
/// `CLOUD_RUN_TASK_INDEX` and `CLOUD_RUN_TASK_COUNT`.
const SCHEDULERS: [(&str, &str, Option<&str>); 3] = [
    ("a Kubernetes Indexed Job", "JOB_COMPLETION_INDEX", None),
    (
        "an AWS Batch array job",
        "AWS_BATCH_JOB_ARRAY_INDEX",
        Some("AWS_BATCH_JOB_ARRAY_SIZE"),
    ),
    (
        "a Cloud Run job",
        "CLOUD_RUN_TASK_INDEX",
        Some("CLOUD_RUN_TASK_COUNT"),
    ),
];

impl RangeArgs {
    /// The share of the work this process does: `--shard I/N` as given, `--shard auto` from
    /// the first scheduler variable set (Kubernetes, AWS Batch, Cloud Run), the count from the
    /// scheduler or else `--shards` / `VSCOPE_SHARDS`. `env` reads a variable (`std::env::var`
    /// in the binary). `Err` is the message for a configuration error (exit 2), naming the fix.
    pub fn resolve_shard(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Shard>, String> {
        let shard = match self.shard {
            None => return Ok(None),
            Some(ShardArg::Fixed(shard)) => shard,
            Some(ShardArg::Auto) => {
                let Some((scheduler, index_var, count_var)) = SCHEDULERS
                    .iter()
                    .find(|(_, index_var, _)| env(index_var).is_some())
                else {
                    return Err(format!(
                        "--shard auto: none of {} is set, so this is not a task of an indexed \
                         job; run it as one, or give --shard I/N",
                        SCHEDULERS.map(|s| s.1).join(", ")
                    ));
                };
                let index = number(index_var, env(index_var))?;
                let count = match count_var {
                    Some(var) => number(var, env(var))?,
                    None => self.shards.ok_or_else(|| {
                        format!(
                            "--shard auto: {scheduler} gives this task's index ({index_var}) \
                             but not the number of tasks: set VSCOPE_SHARDS (or --shards) to \
                             the job's completions"
                        )
                    })?,
                };
                if count == 0 || index >= count {
                    return Err(format!(
                        "--shard auto: index {index} ({index_var}) is not below the number of \
                         tasks, {count}: check the job's completions and VSCOPE_SHARDS"
                    ));
                }
                Shard { index, count }
            }
        };
        match self.shards {
            Some(n) if n != shard.count => Err(format!(
                "the shard is {}/{} but VSCOPE_SHARDS (or --shards) says {n} shards: make them \
                 agree",
                shard.index, shard.count
            )),
            _ => Ok(Some(shard)),
        }
    }
}

/// A scheduler variable as a number.
fn number(var: &str, value: Option<String>) -> Result<u32, String> {
    let value = value.unwrap_or_default();
    value
        .trim()
        .parse()
        .map_err(|_| format!("--shard auto: {var} = '{value}' is not a task number"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn range(shard: &str, shards: Option<u32>) -> RangeArgs {
        RangeArgs {
            start: None,
            end: None,
            shard: Some(shard.parse().unwrap()),
            shards,
            now: None,
        }
    }

    fn resolve(args: &RangeArgs, vars: &[(&str, &str)]) -> Result<Option<Shard>, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        args.resolve_shard(|k| vars.get(k).cloned())
    }

    fn shard(index: u32, count: u32) -> Option<Shard> {
        Some(Shard { index, count })
    }

    #[test]
    fn auto_reads_each_schedulers_variables() {
        let auto = range("auto", Some(4));
        assert_eq!(
            resolve(&auto, &[("JOB_COMPLETION_INDEX", "3")]),
            Ok(shard(3, 4))
        );
        let auto = range("AUTO", None);
        assert_eq!(
            resolve(
                &auto,
                &[
                    ("AWS_BATCH_JOB_ARRAY_INDEX", "1"),
                    ("AWS_BATCH_JOB_ARRAY_SIZE", "2")
                ]
            ),
            Ok(shard(1, 2))
        );
        assert_eq!(
            resolve(
                &auto,
                &[("CLOUD_RUN_TASK_INDEX", "0"), ("CLOUD_RUN_TASK_COUNT", "5")]
            ),
            Ok(shard(0, 5))
        );
    }

    #[test]
    fn auto_refuses_what_it_cannot_resolve_and_names_the_fix() {
        let err = resolve(&range("auto", None), &[("JOB_COMPLETION_INDEX", "0")]).unwrap_err();
        assert!(err.contains("VSCOPE_SHARDS"), "{err}");
        let err = resolve(&range("auto", Some(2)), &[]).unwrap_err();
        assert!(
            err.contains("JOB_COMPLETION_INDEX") && err.contains("--shard I/N"),
            "{err}"
        );
        let err = resolve(&range("auto", Some(2)), &[("JOB_COMPLETION_INDEX", "2")]).unwrap_err();
        assert!(err.contains("not below"), "{err}");
        let err = resolve(&range("auto", Some(2)), &[("JOB_COMPLETION_INDEX", "x")]).unwrap_err();
        assert!(err.contains("'x'"), "{err}");
        let vars = [("CLOUD_RUN_TASK_INDEX", "0"), ("CLOUD_RUN_TASK_COUNT", "3")];
        let err = resolve(&range("auto", Some(2)), &vars).unwrap_err();
        assert!(err.contains("make them agree"), "{err}");
    }

    #[test]
    fn a_fixed_shard_ignores_the_scheduler_but_not_a_disagreeing_count() {
        let vars = [("JOB_COMPLETION_INDEX", "3")];
        assert_eq!(resolve(&range("1/2", None), &vars), Ok(shard(1, 2)));
        assert_eq!(resolve(&range("1/2", Some(2)), &vars), Ok(shard(1, 2)));
        assert!(resolve(&range("1/2", Some(3)), &vars).is_err());
        assert!("2/2".parse::<ShardArg>().unwrap_err().ends_with("or auto"));
        let none = RangeArgs {
            shard: None,
            ..range("auto", Some(2))
        };
        assert_eq!(resolve(&none, &vars), Ok(None));
    }
}
