//! Pipeline files (`pipelines/*.toml`, design §5): the serde model of what a user writes
//! (unknown keys rejected) and its validation into a [`Pipeline`] that the planner trusts.
//!
//! Everything here runs without network access, so `vscope-etl validate` can check a file in CI.
//!
//! - [`file`]: the serde model of the file and the defaults of its keys;
//! - `values`: `${VAR}` expansion, durations, sizes, the retry budget;
//! - `validate`: the checks that turn a file into a [`Pipeline`];
//! - this module: the validated model the rest of the program uses.

mod file;
mod types;
mod validate;
mod values;

use std::path::Path;
use std::time::Duration;

use crate::catalogue::Component;
use crate::dialect::Dialect;
use crate::secret::Secret;
use crate::semantics::rollup::Rollup;
use crate::semantics::time::{DAY_MS, parse_export_time};
use crate::sim::SimConfig;

pub use types::{BUDGET_FLOOR, Credentials, RetryBudget, S3Options};
pub use validate::check_server_downsampling;
pub use values::{
    DEFAULT_MAX_ANSWER_BYTES, DEFAULT_MEMORY_LIMIT_BYTES, S3_MAX_PART_SIZE, S3_MIN_PART_SIZE,
    expand_env, flag_byte_size, flag_duration_ms,
};

/// A pipeline file that cannot be used, with the key at fault and what is allowed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read pipeline file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// TOML syntax, a wrong type or an unknown key (the message names the key and the line).
    #[error("pipeline file {path} is not valid: {message}")]
    Parse {
        /// The file.
        path: String,
        /// The TOML parser's message (it names the key, line and column).
        message: String,
    },
    /// A key holds a value that is not allowed.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted key, e.g. `scope.window` or `table[1].aggregates`.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// What the user writes.

/// A validated pipeline.
#[derive(Debug, Clone)]
pub struct Pipeline {
    /// Pipeline name: names the ledger (`_state/<name>.json`) and is recorded in every file.
    pub name: String,
    /// Where the history comes from.
    pub source: Source,
    /// Which time range and metrics.
    pub scope: Scope,
    /// Output tables, in file order.
    pub tables: Vec<TableSpec>,
    /// Where files go.
    pub sink: SinkSpec,
}

/// The metrics endpoint: the built-in simulator, a real URL, or the one the token comes with.
#[derive(Debug, Clone)]
pub enum Endpoint {
    /// `url = "sim"`: start the simulator in-process on loopback.
    Sim(Box<SimConfig>),
    /// An OpenTSDB-compatible base URL, e.g. `https://opentsdb.gra1-ovh.metrics.ovh.net`.
    Url(url::Url),
    /// No `source.url`: the `opentsdbEndpoint` of the `metricsToken` answer, known once the
    /// token is fetched through API v6 at start. Only valid when the token comes from there
    /// (`[source.ovh] user_id` set, `source.token` empty), which validation checks.
    FromToken,
}

impl Pipeline {
    /// The pipeline as one of `shards` shards runs it: with `source.shard_rate = "share"` (the
    /// default) it starts at most its share of `source.requests_per_second`, so that N pods of
    /// an Indexed Job ask the endpoint, which limits the read token, no faster than one
    /// process would.
    pub fn for_shards(&self, shards: u32) -> std::borrow::Cow<'_, Pipeline> {
        let s = &self.source;
        if shards <= 1 || s.shard_rate == ShardRate::Each || s.requests_per_second == 0.0 {
            return std::borrow::Cow::Borrowed(self);
        }
        let mut shared = self.clone();
        shared.source.requests_per_second = s.requests_per_second / f64::from(shards);
        std::borrow::Cow::Owned(shared)
    }
}

/// How the dialect is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialectChoice {
    /// Probe the server (`/api/version` missing means `ovh`).
    Auto,
    /// Use this one.
    Fixed(Dialect),
}

/// Which API the points are read through (`source.protocol`). Same catalogue, work units,
/// tables, files, ledger and manifest either way: only extraction differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// OpenTSDB's `/api/query` and `/api/search/lookup` (OVH: Erlenmeyer, a translation proxy
    /// in front of Warp 10), in the configured or detected dialect.
    #[default]
    Opentsdb,
    /// Warp 10's own `/api/v0/fetch` and `/api/v0/find`, with the same read token, at the
    /// token's `warpEndpoint` (`crate::extract::warp10`).
    Warp10,
}

impl Protocol {
    /// The name used in pipeline files.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Opentsdb => "opentsdb",
            Protocol::Warp10 => "warp10",
        }
    }
}

/// How the planner learns which series exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// `/api/search/lookup` per metric; one unit per (metric, datacenter, window).
    Lookup,
    /// The live objects of API v6 (`[source.ovh]`): one unit per (metric, datacenter holding
    /// objects of the metric's component, window), with no request to the metrics server.
    Inventory,
    /// No discovery: one unit per (metric, window) fetching every series of the metric.
    None,
}

/// Whose limit `source.requests_per_second` is when the run is one shard of several
/// (`--shard I/N`, `--shard auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardRate {
    /// The read token's (the default): the N shards of a job share it, each starting at most
    /// `requests_per_second / N` requests a second, as one process would.
    Share,
    /// Each shard's own: N shards may start N times as many (tokens of their own, or a server
    /// known to take it).
    Each,
}

/// Source settings.
#[derive(Debug, Clone)]
pub struct Source {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Read token, sent as the HTTP Basic password.
    pub token: Secret,
    /// Server dialect (OpenTSDB protocol only).
    pub dialect: DialectChoice,
    /// `source.protocol`: the API the points are read through ([`Protocol`]).
    pub protocol: Protocol,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Requests started per second at most (0 = unlimited).
    pub requests_per_second: f64,
    /// `source.shard_rate`: whether shards share `requests_per_second` (default) or each
    /// has it ([`ShardRate`]).
    pub shard_rate: ShardRate,
    /// Whole-request deadline (headers and body).
    pub timeout: Duration,
    /// TCP/TLS connect deadline.
    pub connect_timeout: Duration,
    /// Attempts per request before a unit fails.
    pub max_attempts: u32,
    /// Retries the whole run may spend (`source.retry_budget`: retries per successful request
    /// such as `0.5`, or a count such as `50`; `"unlimited"`). Default: 0.5 per success plus 10.
    /// Throttled answers (429) never spend it.
    pub retry_budget: RetryBudget,
    /// The run's deadline, from its start (`source.deadline`): no request starts after it and
    /// windows not done by then are deferred to the next run. `None`: no deadline.
    pub deadline: Option<Duration>,
    /// Series discovery mode.
    pub discovery: Discovery,
    /// Smallest window a too-large answer may be split into.
    pub min_split_ms: i64,
    /// `source.memory_limit` (default 128 MiB): what the answers of a run (their decoded
    /// points, from the request until the writer took them) may hold at once; a unit that does not fit waits
    /// (`crate::run` budget). The files being written are not counted.
    pub memory_limit_bytes: usize,
    /// `source.max_answer_size`: the largest answer body read whole (default 64 MiB, at most
    /// half of `source.memory_limit` unless given). A larger
    /// `/api/query` answer is cut off and its window split, the parts written as separate files
    /// (`-s<i>of<n>`), so memory stays bounded however many points a series has.
    pub max_answer_bytes: usize,
    /// `source.query_downsample`: rollup tables are filled from downsampled queries (one per
    /// aggregate) instead of client-side rollups of the raw points, so a pipeline of rollup
    /// tables only never downloads raw points. Refused for aggregates the server computes
    /// differently ([`vscope_core::semantics::aggregator::server_exact`]).
    pub query_downsample: bool,
    /// `source.gzip` (default true): every request to the metrics endpoint and to API v6 says
    /// `Accept-Encoding: gzip`, so answers travel compressed where the server compresses them
    /// (about 4 times fewer bytes from OpenTSDB's own server and from Warp 10, level 6; OVH's
    /// OpenTSDB proxy, Erlenmeyer, answers plain whatever is asked: docs/simulator.md).
    /// `false` for a proxy that mangles compressed answers; a gzip answer is decoded either way.
    pub gzip: bool,
    /// `[source.ovh]`: OVHcloud API v6 for the live inventory and the metrics token.
    pub ovh: Option<OvhSpec>,
}

impl Source {
    /// The dialect when the pipeline fixes it; `None` for `auto` (known after detection).
    pub fn fixed_dialect(&self) -> Option<Dialect> {
        match self.dialect {
            DialectChoice::Fixed(d) => Some(d),
            DialectChoice::Auto => None,
        }
    }

    /// The endpoint as a user knows it, for messages: the URL (which never holds credentials:
    /// the token travels as the Basic password), or "the built-in simulator".
    pub fn endpoint_text(&self) -> String {
        match &self.endpoint {
            Endpoint::Url(u) => u.to_string(),
            Endpoint::Sim(_) => "the built-in simulator (source.url = \"sim\")".to_string(),
            Endpoint::FromToken => format!(
                "the endpoint of the metrics token (its {}, source.url unset)",
                values::token_endpoint(self.protocol).0
            ),
        }
    }

    /// The configuration of the in-process simulator (`url = "sim"`), `None` for a real URL.
    ///
    /// The simulator trusts the pipeline: it requires the configured token, and serves API v6
    /// with the `[source.ovh]` credentials and service name. When the token is empty and
    /// `[source.ovh]` points at the simulator with a `user_id`, the simulator requires the token
    /// it issues through `metricsToken`, so a run proves it fetched it.
    pub fn sim_config(&self) -> Option<SimConfig> {
        let Endpoint::Sim(cfg) = &self.endpoint else {
            return None;
        };
        let mut cfg = (**cfg).clone();
        if !self.token.is_empty() {
            cfg.token = Some(self.token.expose().to_string());
        }
        if let Some(o) = &self.ovh
            && o.endpoint == OvhEndpoint::Sim
        {
            cfg.service_name = o.service_name.clone();
            cfg.ovh_application_key = o.credentials.application_key.clone();
            cfg.ovh_application_secret = o.credentials.application_secret.expose().to_string();
            cfg.ovh_consumer_key = o.credentials.consumer_key.expose().to_string();
            if self.token.is_empty() && o.user_id.is_some() {
                cfg.token = Some(cfg.issued_token());
            }
        }
        Some(cfg)
    }
}

/// Where OVHcloud API v6 is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OvhEndpoint {
    /// The in-process simulator of `source.url = "sim"` (its `/1.0` API).
    Sim,
    /// A base URL: a region's (`ovh-eu` → `https://eu.api.ovh.com/1.0`) or any other.
    Url(url::Url),
}

/// `[source.ovh]`, validated: the live inventory and the metrics token through API v6.
#[derive(Debug, Clone)]
pub struct OvhSpec {
    /// Where API v6 is.
    pub endpoint: OvhEndpoint,
    /// Application key, application secret and consumer key.
    pub credentials: Credentials,
    /// The PCC's serviceName, e.g. `pcc-37-187-228-180`.
    pub service_name: String,
    /// The PCC user whose metrics token `run` fetches when `source.token` is empty.
    pub user_id: Option<i64>,
}

/// Time range and metric selection. Times are kept as written and resolved at run time, since
/// `now` and `7d-ago` move.
#[derive(Debug, Clone)]
pub struct Scope {
    /// Range start as written (RFC 3339, unix seconds or ms, OpenTSDB relative).
    pub start: String,
    /// Range end (exclusive) as written.
    pub end: String,
    /// Extraction and commit unit; divides a day or is whole days.
    pub window_ms: i64,
    /// Metric globs over the catalogue.
    pub metrics: Vec<String>,
    /// Re-fetched on every incremental run.
    pub lateness_ms: i64,
    /// Data younger than this is not fetched yet (the server may still be writing it).
    pub settle_ms: i64,
}

impl Scope {
    /// Resolves `start`/`end` against `now_ms`; neither may be before 1970
    /// ([`parse_export_time`]).
    pub fn resolve_range(&self, now_ms: i64) -> Result<(i64, i64), ConfigError> {
        let start = export_time("scope.start", &self.start, now_ms)?;
        let end = export_time("scope.end", &self.end, now_ms)?;
        if end <= start {
            return Err(invalid(
                "scope.end",
                format!(
                    "'{}' is not after scope.start '{}': the range is empty",
                    self.end, self.start
                ),
            ));
        }
        Ok((start, end))
    }
}

/// A time of the export given under `key` (`scope.start`, `--end`...): [`parse_export_time`],
/// its error naming the key.
pub fn export_time(key: &str, value: &str, now_ms: i64) -> Result<i64, ConfigError> {
    parse_export_time(value, now_ms).map_err(|e| invalid(key, e.to_string()))
}

/// One output table.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// Table name (a folder of the sink).
    pub name: String,
    /// The component all its metrics describe.
    pub component: Component,
    /// Metric names feeding it, sorted.
    pub metrics: Vec<String>,
    /// Client-side rollup, when `downsample` is set.
    pub rollup: Option<Rollup>,
}

impl TableSpec {
    /// The schema of the table's files: the component's raw columns, or its rollup's.
    pub fn file_schema(&self) -> arrow::datatypes::SchemaRef {
        match &self.rollup {
            None => crate::schema::raw_schema(self.component),
            Some(r) => crate::schema::rollup_schema(self.component, &r.aggregates),
        }
    }
}

/// Value pages in date partitions: 1 MiB, the Parquet default, so a month-wide scan of a metric
/// decodes few pages (DuckDB pays per page: 160 KiB pages made the 500-VM month's metric-wide
/// queries 16-18 % slower).
pub const VALUE_PAGE_BYTES: usize = 1 << 20;

/// Value pages in metric partitions: 64 KiB (8 Ki doubles, about six VMs' metric-day). DuckDB
/// does not skip pages by the page index: in a row group it reads the pages up to the last row
/// it wants, so with one page per column chunk it read the whole row group for one VM. With
/// 64 KiB pages one VM's month reads 4.9 % of the 500-VM month instead of 9.1 % (64 Ki-row
/// groups); the month-wide queries on lz4 files stayed faster than both default layouts
/// (docs/performance.md "For the reader").
pub const SMALL_VALUE_PAGE_BYTES: usize = 1 << 16;

/// A path partition level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKey {
    /// `metric=<name>`.
    Metric,
    /// `date=YYYY-MM-DD` (UTC date of `ts`).
    Date,
    /// `month=YYYY-MM` (UTC month of `ts`): a run writes a file per window into its month's
    /// folder, and `vscope-etl compact` merges a finished month into one file per folder, sorted
    /// by series: the layout whose files one VM's month is a small part of however few VMs the
    /// PCC has (docs/performance.md "For the reader").
    Month,
}

impl SinkSpec {
    /// `partition_by` as names (`["metric", "date"]`), as the ledger records it.
    pub fn partition_names(&self) -> Vec<String> {
        self.partition_by
            .iter()
            .map(|k| k.name().to_string())
            .collect()
    }

    /// Uncompressed bytes of a data page of the value (double) columns at most:
    /// [`VALUE_PAGE_BYTES`] in `["date"]` partitions, [`SMALL_VALUE_PAGE_BYTES`] in the layouts
    /// read by slices ([`SinkSpec::sliced`]). Not a setting: it follows the partitioning, like
    /// the row groups' default.
    pub fn value_page_bytes(&self) -> usize {
        if self.sliced() {
            SMALL_VALUE_PAGE_BYTES
        } else {
            VALUE_PAGE_BYTES
        }
    }

    /// True when a file holds one metric or a month (`metric` or `month` partitions): its row
    /// groups and value pages are then slices of the VMs, small enough for a reader to skip
    /// the rest (`file::default_row_group_rows`, [`SinkSpec::value_page_bytes`]).
    pub fn sliced(&self) -> bool {
        is_sliced(&self.partition_by)
    }

    /// The time span of a partition folder: what `compact` merges into one file.
    pub fn period(&self) -> PartitionPeriod {
        if self.partition_by.contains(&PartitionKey::Month) {
            PartitionPeriod::Month
        } else {
            PartitionPeriod::Day
        }
    }
}

/// [`SinkSpec::sliced`] for the partition levels `partition_by`: every layout but `["date"]`.
pub(crate) fn is_sliced(partition_by: &[PartitionKey]) -> bool {
    partition_by != [PartitionKey::Date]
}

/// The time span of a partition folder (`date=` or `month=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionPeriod {
    /// A UTC day.
    Day,
    /// A UTC calendar month.
    Month,
}

impl PartitionPeriod {
    /// The start (ms) of the period holding `ms` (total: no date is out of range).
    pub fn start_of(self, ms: i64) -> i64 {
        match self {
            PartitionPeriod::Day => ms.div_euclid(DAY_MS).saturating_mul(DAY_MS),
            PartitionPeriod::Month => crate::semantics::time::month_start_ms(ms),
        }
    }

    /// The end (ms, exclusive) of the period starting at `start_ms`.
    pub fn end_of(self, start_ms: i64) -> i64 {
        match self {
            PartitionPeriod::Day => start_ms.saturating_add(DAY_MS),
            // 32 days on from a month's first day is in the next month.
            PartitionPeriod::Month => self.start_of(start_ms.saturating_add(32 * DAY_MS)),
        }
    }

    /// What the period is called in messages.
    pub fn noun(self) -> &'static str {
        match self {
            PartitionPeriod::Day => "day",
            PartitionPeriod::Month => "month",
        }
    }

    /// The period's folder value: `YYYY-MM-DD` or `YYYY-MM`.
    pub fn label(self, start_ms: i64) -> String {
        let date = crate::semantics::time::date_string(start_ms);
        match self {
            PartitionPeriod::Day => date,
            PartitionPeriod::Month => date[..7].to_string(),
        }
    }
}

impl PartitionKey {
    /// The name in pipeline files and in the ledger.
    pub fn name(self) -> &'static str {
        match self {
            PartitionKey::Metric => "metric",
            PartitionKey::Date => "date",
            PartitionKey::Month => "month",
        }
    }
}

/// Sink settings.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// Path, `file://` URL or `s3://bucket/prefix`.
    pub url: String,
    /// Partition levels, ending with `date` or `month`.
    pub partition_by: Vec<PartitionKey>,
    /// How data pages are compressed (`sink.compression`, `sink.zstd_level`).
    pub compression: PageCompression,
    /// Rows per Parquet row group at most (bounds writer memory); its default depends on the
    /// partitioning (`file::default_row_group_rows`).
    pub row_group_rows: usize,
    /// How long a run's lease lasts without renewal (a crashed run blocks others this long).
    pub lease_ttl_ms: i64,
    /// How each table directory is laid out ([`TableFormat`]).
    pub table_format: TableFormat,
    /// S3 settings (`[sink.s3]`); unset ones come from the `AWS_*` environment.
    pub s3: S3Options,
}

/// The codec of the files' data pages. zstd (the default) gives the smallest files; lz4 and
/// snappy files are about 1.5x larger, and DuckDB decodes lz4 pages about twice as fast as zstd
/// ones: with metric partitions lz4 took the 10x query bench's month-wide queries from 0.84x to
/// 1.17x DuckDB's own default file (docs/performance.md "For the reader"): the choice of a
/// reader who pays for CPU more than for bytes. DuckDB, Spark and polars read lz4 files as the
/// same rows in the e2e tests (spark, report); snappy is every reader's default codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCompression {
    /// zstd at this level (1-22).
    Zstd(i32),
    /// Snappy.
    Snappy,
    /// LZ4 (Parquet's `LZ4_RAW`, the block format every current reader decodes; not the
    /// deprecated Hadoop-framed `LZ4`).
    Lz4,
}

/// `sink.table_format`: what a reader opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableFormat {
    /// Hive-partitioned Parquet files (`table/date=…/part-….parquet`), read by globbing them:
    /// a window being rewritten is replaced file by file.
    Parquet,
    /// The same files, and a Delta Lake log per table (`table/_delta_log/`): readers open one
    /// atomic snapshot per commit, with time travel ([`crate::load::delta`]).
    Delta,
}

/// Reads and validates a pipeline file, reading `${VAR}` from the process environment.
pub fn load(path: &Path) -> Result<Pipeline, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text, &path.display().to_string(), &|name| {
        std::env::var(name).ok()
    })
}

/// Parses and validates pipeline text; `env` resolves `${VAR}` references.
pub fn parse(
    text: &str,
    origin: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Pipeline, ConfigError> {
    let file: file::PipelineFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: origin.to_string(),
        message: e.to_string(),
    })?;
    validate::validate(file, env)
}

#[cfg(test)]
mod tests;
