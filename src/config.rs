//! Pipeline files (`pipelines/*.toml`, design §5): the serde model of what a user writes
//! (unknown keys rejected) and its validation into a [`Pipeline`] that the planner trusts.
//!
//! Everything here runs without network access, so `vscope-etl validate` can check a file in CI.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::catalogue::{Catalogue, Component};
use crate::dialect::Dialect;
use crate::secret::Secret;
use crate::semantics::aggregator::{Aggregator, DOWNSAMPLING_FUNCTIONS};
use crate::semantics::rollup::Rollup;
use crate::semantics::time::{parse_duration, parse_export_time};
use crate::sim::SimConfig;

const DAY_MS: i64 = 86_400_000;

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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    name: String,
    source: SourceFile,
    scope: ScopeFile,
    #[serde(rename = "table", default)]
    tables: Vec<TableFile>,
    sink: SinkFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceFile {
    /// Absent (or empty): the `opentsdbEndpoint` of the token API v6 issues, which is only
    /// possible when the token comes from there.
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    token: String,
    #[serde(default = "default_dialect")]
    dialect: String,
    #[serde(default = "default_concurrency")]
    concurrency: usize,
    #[serde(default = "default_rps")]
    requests_per_second: f64,
    #[serde(default = "default_timeout")]
    timeout: String,
    #[serde(default = "default_connect_timeout")]
    connect_timeout: String,
    #[serde(default = "default_max_attempts")]
    max_attempts: u32,
    retry_budget: Option<toml::Value>,
    deadline: Option<String>,
    #[serde(default = "default_discovery")]
    discovery: String,
    #[serde(default = "default_min_split")]
    min_split: String,
    max_answer_size: Option<String>,
    #[serde(default)]
    query_downsample: bool,
    #[serde(default = "default_gzip")]
    gzip: bool,
    sim: Option<SimFile>,
    ovh: Option<OvhFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SimFile {
    dialect: Option<String>,
    datacenters: Option<usize>,
    hosts_per_datacenter: Option<usize>,
    vms_per_datacenter: Option<usize>,
    filers_per_datacenter: Option<usize>,
    step: Option<String>,
    seed: Option<u64>,
    inventory_drift: Option<usize>,
    faults: Option<Vec<String>>,
    fault_seed: Option<u64>,
    errors: Option<String>,
    max_fetch_points: Option<u64>,
    fetch_start: Option<String>,
    gzip: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OvhFile {
    endpoint: Option<String>,
    application_key: Option<String>,
    application_secret: Option<String>,
    consumer_key: Option<String>,
    service_name: Option<String>,
    user_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeFile {
    start: String,
    #[serde(default = "default_end")]
    end: String,
    #[serde(default = "default_window")]
    window: String,
    #[serde(default = "default_metrics")]
    metrics: Vec<String>,
    #[serde(default = "default_lateness")]
    lateness: String,
    #[serde(default = "default_settle")]
    settle: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    name: String,
    metrics: Vec<String>,
    downsample: Option<String>,
    aggregates: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkFile {
    url: String,
    #[serde(default = "default_partition_by")]
    partition_by: Vec<String>,
    #[serde(default = "default_zstd_level")]
    zstd_level: i32,
    #[serde(default = "default_row_group_rows")]
    row_group_rows: usize,
    #[serde(default = "default_lease_ttl")]
    lease_ttl: String,
    s3: Option<S3File>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct S3File {
    endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    allow_http: Option<bool>,
    virtual_hosted_style: Option<bool>,
    #[serde(default = "default_checksum")]
    checksum: String,
    #[serde(default)]
    unsigned_payload: bool,
    part_size: Option<String>,
    #[serde(default)]
    allow_small_parts: bool,
}

fn default_dialect() -> String {
    "auto".into()
}
fn default_concurrency() -> usize {
    8
}
fn default_rps() -> f64 {
    20.0
}
fn default_timeout() -> String {
    "120s".into()
}
fn default_connect_timeout() -> String {
    "10s".into()
}
fn default_max_attempts() -> u32 {
    // Against a server failing a fifth of its answers, 4 attempts lose a unit now and then
    // (0.2^4 per request); the run-wide retry budget, not this cap, stops a server that is down.
    10
}
fn default_gzip() -> bool {
    true
}
fn default_discovery() -> String {
    "lookup".into()
}
fn default_min_split() -> String {
    "1m".into()
}
fn default_end() -> String {
    "now".into()
}
fn default_window() -> String {
    "1d".into()
}
fn default_metrics() -> Vec<String> {
    vec!["vscope.*".into()]
}
fn default_lateness() -> String {
    "2h".into()
}
fn default_settle() -> String {
    "1m".into()
}
fn default_partition_by() -> Vec<String> {
    vec!["date".into()]
}
fn default_zstd_level() -> i32 {
    1
}
fn default_row_group_rows() -> usize {
    1 << 20
}
fn default_lease_ttl() -> String {
    "30m".into()
}
fn default_checksum() -> String {
    "none".into()
}

// ---------------------------------------------------------------------------------------------
// What the rest of the program uses.

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

/// How the dialect is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialectChoice {
    /// Probe the server (`/api/version` missing means `ovh`).
    Auto,
    /// Use this one.
    Fixed(Dialect),
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

/// Source settings.
#[derive(Debug, Clone)]
pub struct Source {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Read token, sent as the HTTP Basic password.
    pub token: Secret,
    /// Server dialect.
    pub dialect: DialectChoice,
    /// Requests in flight at most.
    pub concurrency: usize,
    /// Requests started per second at most (0 = unlimited).
    pub requests_per_second: f64,
    /// Whole-request deadline (headers and body).
    pub timeout: Duration,
    /// TCP/TLS connect deadline.
    pub connect_timeout: Duration,
    /// Attempts per request before a unit fails.
    pub max_attempts: u32,
    /// Retries the whole run may spend (`source.retry_budget`: retries per successful request
    /// such as `0.5`, or a count such as `50`; `"unlimited"`). Default: 0.5 per success plus 10.
    /// Throttled answers (429) never spend it.
    pub retry_budget: crate::extract::retry::RetryBudget,
    /// The run's deadline, from its start (`source.deadline`): no request starts after it and
    /// windows not done by then are deferred to the next run. `None`: no deadline.
    pub deadline: Option<Duration>,
    /// Series discovery mode.
    pub discovery: Discovery,
    /// Smallest window a too-large answer may be split into.
    pub min_split_ms: i64,
    /// `source.max_answer_size`: the largest answer body read whole (default 64 MiB). A larger
    /// `/api/query` answer is cut off and its window split, the parts written as separate files
    /// (`-s<i>of<n>`), so memory stays bounded however many points a series has.
    pub max_answer_bytes: usize,
    /// `source.query_downsample`: rollup tables are filled from downsampled queries (one per
    /// aggregate) instead of client-side rollups of the raw points, so a pipeline of rollup
    /// tables only never downloads raw points. Refused for aggregates the server computes
    /// differently ([`crate::extract::server_rollup::server_exact`]).
    pub query_downsample: bool,
    /// `source.gzip` (default true): every request to the metrics endpoint and to API v6 says
    /// `Accept-Encoding: gzip`, so JSON answers travel compressed (3.5 times fewer bytes on the
    /// demo day with nginx's default compression level).
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
            Endpoint::FromToken => {
                "the endpoint of the metrics token (its opentsdbEndpoint, source.url unset)"
                    .to_string()
            }
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
    pub credentials: crate::ovh::Credentials,
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

/// A path partition level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKey {
    /// `metric=<name>`.
    Metric,
    /// `date=YYYY-MM-DD` (UTC date of `ts`).
    Date,
}

impl SinkSpec {
    /// `partition_by` as names (`["metric", "date"]`), as the ledger records it.
    pub fn partition_names(&self) -> Vec<String> {
        self.partition_by
            .iter()
            .map(|k| k.name().to_string())
            .collect()
    }
}

impl PartitionKey {
    /// The name in pipeline files and in the ledger.
    pub fn name(self) -> &'static str {
        match self {
            PartitionKey::Metric => "metric",
            PartitionKey::Date => "date",
        }
    }
}

/// Sink settings.
#[derive(Debug, Clone)]
pub struct SinkSpec {
    /// Path, `file://` URL or `s3://bucket/prefix`.
    pub url: String,
    /// Partition levels, ending with `date`.
    pub partition_by: Vec<PartitionKey>,
    /// ZSTD level for data pages.
    pub zstd_level: i32,
    /// Rows per Parquet row group at most (bounds writer memory).
    pub row_group_rows: usize,
    /// How long a run's lease lasts without renewal (a crashed run blocks others this long).
    pub lease_ttl_ms: i64,
    /// S3 settings (`[sink.s3]`); unset ones come from the `AWS_*` environment.
    pub s3: crate::load::store::S3Options,
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
    let file: PipelineFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: origin.to_string(),
        message: e.to_string(),
    })?;
    validate(file, env)
}

/// Replaces `${NAME}` in a value with the environment variable `NAME`; an unset variable is an
/// error naming the key that uses it, so a cron job never runs with an empty token.
pub fn expand_env(
    value: &str,
    key: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    expand(value, env).map_err(|e| e.into_config(value, key, ""))
}

/// Why [`expand`] failed; turned into a [`ConfigError`] naming the key by
/// [`EnvError::into_config`], with a hint that depends on the key.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EnvError {
    /// `${` without its `}`.
    Unterminated,
    /// `${...}` whose content is not a variable name.
    BadName(String),
    /// The variable is not set.
    Unset(String),
}

impl EnvError {
    /// The error for `key`, whose value as written is `value`. `unset_hint` is appended to
    /// the message of an unset variable (empty: the generic advice).
    fn into_config(self, value: &str, key: &str, unset_hint: &str) -> ConfigError {
        match self {
            EnvError::Unterminated => invalid(
                key,
                format!("unterminated '${{' in '{value}': write ${{NAME}}"),
            ),
            EnvError::BadName(name) => invalid(
                key,
                format!("'${{{name}}}' is not a valid environment variable name"),
            ),
            EnvError::Unset(name) if unset_hint.is_empty() => invalid(
                key,
                format!(
                    "environment variable {name} is not set (export {name}=... before running)"
                ),
            ),
            EnvError::Unset(name) => invalid(
                key,
                format!("environment variable {name} is not set: {unset_hint}"),
            ),
        }
    }
}

/// [`expand_env`] without the key: the expanded value or why it could not be expanded.
fn expand(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, EnvError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(pos) = rest.find("${") {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 2..];
        let Some(close) = after.find('}') else {
            return Err(EnvError::Unterminated);
        };
        let name = &after[..close];
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(EnvError::BadName(name.to_string()));
        }
        match env(name) {
            Some(v) => out.push_str(&v),
            None => return Err(EnvError::Unset(name.to_string())),
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// What to do when the variable `source.url` reads is not set: the two ways to give the
/// endpoint. Used by [`validate_source`].
const URL_UNSET_HINT: &str = "export it to your metrics endpoint, the opentsdbEndpoint of your \
     read token (e.g. https://opentsdb.gra1-ovh.metrics.ovh.net; `vscope-etl token PIPELINE` \
     prints it), or leave source.url out when [source.ovh] user_id fetches the token, which \
     comes with its endpoint";

fn duration_ms(key: &str, value: &str) -> Result<i64, ConfigError> {
    parse_duration(value).map_err(|e| invalid(key, e.to_string()))
}

/// Like [`duration_ms`] but also accepts `"0"` (OpenTSDB durations cannot be zero).
fn parse_duration_or_zero(key: &str, value: &str) -> Result<i64, ConfigError> {
    if value.trim() == "0" {
        Ok(0)
    } else {
        duration_ms(key, value)
    }
}

/// Default `source.max_answer_size`: 64 MiB of JSON, about 2.7 M points.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 64 << 20;

/// Smallest byte size accepted (`source.max_answer_size`, and `sink.s3.part_size` with
/// `sink.s3.allow_small_parts`).
const MIN_PART_SIZE: usize = 64 * 1024;

/// S3's smallest part of a multipart upload (all but the last): AWS S3, OVHcloud Object Storage,
/// MinIO and Ceph refuse smaller ones with `EntityTooSmall` when the upload is completed.
pub const S3_MIN_PART_SIZE: usize = 5 << 20;

/// S3's largest part of a multipart upload.
pub const S3_MAX_PART_SIZE: usize = 5 << 30;

/// `sink.s3.part_size`: a [`byte_size`] within S3's limits, 5 MiB to 5 GiB. A smaller part
/// would pass here and fail only once a file grows past one part, at the end of a long run
/// (`EntityTooSmall` when the upload is completed), so it is refused before any I/O; with
/// `allow_small_parts` (a test server configured to accept them, e.g. moto with
/// `S3_UPLOAD_PART_MIN_SIZE`) down to 64 KiB.
fn part_size(value: &str, allow_small_parts: bool) -> Result<usize, ConfigError> {
    const KEY: &str = "sink.s3.part_size";
    let bytes = byte_size(KEY, value)?;
    if bytes < S3_MIN_PART_SIZE && !allow_small_parts {
        return Err(invalid(
            KEY,
            format!(
                "'{value}' is below S3's minimum part size of 5MiB: S3 refuses smaller parts (all \
                 but the last) with EntityTooSmall, so every file larger than one part would fail \
                 to upload; use at least \"5MiB\" (the default is 10MiB), or set \
                 sink.s3.allow_small_parts = true for a test server that accepts smaller parts"
            ),
        ));
    }
    if bytes > S3_MAX_PART_SIZE {
        return Err(invalid(
            KEY,
            format!(
                "'{value}' is above S3's maximum part size of 5GiB; use at most \"5GiB\" (the \
                 default is 10MiB: a part is held in memory while it is sent)"
            ),
        ));
    }
    Ok(bytes)
}

/// A byte size: a whole number with an optional unit `B`, `KiB`, `MiB`, `GiB` (or `KB`,
/// `MB`, `GB` as powers of 1000), e.g. `"16MiB"`.
fn byte_size(key: &str, value: &str) -> Result<usize, ConfigError> {
    let v = value.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let factor: usize = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(invalid(
                key,
                format!("'{value}': unknown unit '{other}' (use B, KiB, MiB, GiB, KB, MB or GB)"),
            ));
        }
    };
    let n: usize = digits
        .parse()
        .map_err(|_| invalid(key, format!("'{value}' is not a size such as \"16MiB\"")))?;
    let bytes = n
        .checked_mul(factor)
        .ok_or_else(|| invalid(key, format!("'{value}' is too large")))?;
    if bytes < MIN_PART_SIZE {
        return Err(invalid(
            key,
            format!(
                "'{value}' is below the 64KiB minimum{}",
                if key.ends_with("part_size") {
                    " (S3 itself wants at least 5MiB)"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok(bytes)
}

/// `source.retry_budget`: retries per successful request (a number in (0, 10], e.g. 0.5), a
/// whole count of retries (0 turns retries off run-wide), or `"unlimited"`.
fn retry_budget(
    value: Option<&toml::Value>,
) -> Result<crate::extract::retry::RetryBudget, ConfigError> {
    use crate::extract::retry::RetryBudget;
    let bad = || {
        invalid(
            "source.retry_budget",
            "must be retries per successful request within 0..10 (e.g. 0.5), a count of retries \
             (e.g. 50) or \"unlimited\"",
        )
    };
    match value {
        None => Ok(RetryBudget::default()),
        Some(toml::Value::Integer(n)) => {
            u64::try_from(*n).map(RetryBudget::Count).map_err(|_| bad())
        }
        Some(toml::Value::Float(f)) if *f > 0.0 && *f <= 10.0 => Ok(RetryBudget::Ratio(*f)),
        Some(toml::Value::String(s)) if s == "unlimited" => Ok(RetryBudget::Unlimited),
        Some(_) => Err(bad()),
    }
}

fn std_duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    Ok(Duration::from_millis(duration_ms(key, value)? as u64))
}

fn validate(
    file: PipelineFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Pipeline, ConfigError> {
    let name = file.name.trim().to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(invalid(
            "name",
            format!(
                "'{}' must be non-empty letters, digits, '-' or '_'",
                file.name
            ),
        ));
    }
    let source = validate_source(file.source, env)?;
    let scope = validate_scope(file.scope)?;
    let tables = validate_tables(file.tables, &scope)?;
    let sink = validate_sink(file.sink, env)?;
    if let Some(dialect) = source.fixed_dialect() {
        check_server_downsampling(&source, dialect, &tables)?;
    }
    Ok(Pipeline {
        name,
        source,
        scope,
        tables,
        sink,
    })
}

/// With `source.query_downsample`, refuses a rollup aggregate that `dialect` computes otherwise
/// than our rollups, naming the table, the aggregate and the two ways out. Called at load time
/// for a fixed dialect and after detection for `auto`.
pub fn check_server_downsampling(
    source: &Source,
    dialect: Dialect,
    tables: &[TableSpec],
) -> Result<(), ConfigError> {
    if !source.query_downsample {
        return Ok(());
    }
    for table in tables {
        let Some(rollup) = &table.rollup else {
            continue;
        };
        for &aggregate in &rollup.aggregates {
            if let Err(why) = crate::extract::server_rollup::server_exact(dialect, aggregate) {
                return Err(invalid(
                    "source.query_downsample",
                    format!(
                        "table '{}' asks for '{aggregate}', which the {dialect} server cannot downsample exactly: {why}; \
                         remove '{aggregate}' from the table or set query_downsample = false to compute it client-side",
                        table.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn validate_source(
    src: SourceFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Source, ConfigError> {
    let url = match &src.url {
        None => String::new(),
        Some(u) => expand(u.trim(), env)
            .map_err(|e| e.into_config(u, "source.url", URL_UNSET_HINT))?
            .trim()
            .to_string(),
    };
    let dialect = match src.dialect.as_str() {
        "auto" => DialectChoice::Auto,
        other => DialectChoice::Fixed(other.parse::<Dialect>().map_err(|_| {
            invalid(
                "source.dialect",
                format!("'{other}' is not one of auto, opentsdb, ovh"),
            )
        })?),
    };
    let token = Secret::new(expand_env(&src.token, "source.token", env)?);
    let ovh = match src.ovh {
        None => None,
        Some(o) => Some(validate_ovh(o, url == "sim", env)?),
    };
    // The token is fetched through API v6 at start (`run::connect`).
    let token_from_api = token.is_empty() && ovh.as_ref().is_some_and(|o| o.user_id.is_some());
    if src.sim.is_some() && url != "sim" {
        return Err(invalid(
            "source.sim",
            "only allowed with source.url = \"sim\"",
        ));
    }
    let endpoint = if url.is_empty() {
        if !token_from_api {
            return Err(invalid(
                "source.url",
                "is not set: write your metrics endpoint, the opentsdbEndpoint of your read token \
                 (e.g. url = \"https://opentsdb.gra1-ovh.metrics.ovh.net\" or \"${VSCOPE_OPENTSDB_ENDPOINT}\"), \
                 or \"sim\"; it may be left out only when the token comes from OVHcloud API v6 \
                 ([source.ovh] user_id set and source.token empty), which gives the endpoint too",
            ));
        }
        Endpoint::FromToken
    } else if url == "sim" {
        let mut sim = SimConfig::default();
        if let Some(s) = src.sim {
            if let Some(d) = s.dialect {
                sim.dialect = d
                    .parse::<Dialect>()
                    .map_err(|e| invalid("source.sim.dialect", e))?;
            }
            sim.datacenters = s.datacenters.unwrap_or(sim.datacenters);
            sim.hosts_per_datacenter = s.hosts_per_datacenter.unwrap_or(sim.hosts_per_datacenter);
            sim.vms_per_datacenter = s.vms_per_datacenter.unwrap_or(sim.vms_per_datacenter);
            sim.filers_per_datacenter =
                s.filers_per_datacenter.unwrap_or(sim.filers_per_datacenter);
            if let Some(step) = s.step {
                let ms = duration_ms("source.sim.step", &step)?;
                if ms % 1000 != 0 {
                    return Err(invalid("source.sim.step", "must be whole seconds"));
                }
                sim.step_secs = ms / 1000;
            }
            sim.seed = s.seed.unwrap_or(sim.seed);
            sim.inventory_drift = s.inventory_drift.unwrap_or(sim.inventory_drift);
            for f in s.faults.unwrap_or_default() {
                sim.faults
                    .push(f.parse().map_err(|e: crate::sim::FaultParseError| {
                        invalid("source.sim.faults", e.to_string())
                    })?);
            }
            sim.fault_seed = s.fault_seed.unwrap_or(sim.fault_seed);
            if let Some(e) = s.errors {
                sim.errors = e.parse().map_err(|e| invalid("source.sim.errors", e))?;
            }
            sim.max_fetch_points = s.max_fetch_points.unwrap_or(sim.max_fetch_points);
            if let Some(f) = s.fetch_start {
                sim.fetch_start = f
                    .parse()
                    .map_err(|e| invalid("source.sim.fetch_start", e))?;
            }
            sim.gzip = s.gzip.unwrap_or(sim.gzip);
        }
        Endpoint::Sim(Box::new(sim))
    } else {
        let parsed = url::Url::parse(&url).map_err(|e| {
            invalid(
                "source.url",
                format!("'{url}' is not a URL ({e}); use https://host[:port] or \"sim\""),
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(
                "source.url",
                format!("scheme '{}' is not http or https", parsed.scheme()),
            ));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(invalid(
                "source.url",
                "must not carry credentials (user:token@host): put the token in source.token, \
                 it is sent in an Authorization header and never logged",
            ));
        }
        Endpoint::Url(parsed)
    };
    if token.is_empty()
        && matches!(endpoint, Endpoint::Url(_))
        && dialect != DialectChoice::Fixed(Dialect::Opentsdb)
        && !token_from_api
    {
        return Err(invalid(
            "source.token",
            "is empty: set it to your vScope read token, e.g. token = \"${VSCOPE_METRICS_TOKEN}\", \
             or set [source.ovh] user_id to fetch it through OVHcloud API v6 at start \
             (only a plain OpenTSDB server with dialect = \"opentsdb\" may run without one)",
        ));
    }
    if src.concurrency == 0 || src.concurrency > 256 {
        return Err(invalid(
            "source.concurrency",
            format!("{} is not within 1..=256", src.concurrency),
        ));
    }
    if !(src.requests_per_second >= 0.0 && src.requests_per_second.is_finite()) {
        return Err(invalid(
            "source.requests_per_second",
            "must be a number >= 0 (0 = unlimited)",
        ));
    }
    if src.max_attempts == 0 || src.max_attempts > 20 {
        return Err(invalid(
            "source.max_attempts",
            format!("{} is not within 1..=20", src.max_attempts),
        ));
    }
    let discovery = match src.discovery.as_str() {
        "lookup" => Discovery::Lookup,
        "none" => Discovery::None,
        "inventory" if ovh.is_some() => Discovery::Inventory,
        "inventory" => {
            return Err(invalid(
                "source.discovery",
                "'inventory' builds the series from the live objects of OVHcloud API v6: it needs \
                 a [source.ovh] section",
            ));
        }
        other => {
            return Err(invalid(
                "source.discovery",
                format!("'{other}' is not one of lookup, inventory, none"),
            ));
        }
    };
    Ok(Source {
        endpoint,
        token,
        dialect,
        concurrency: src.concurrency,
        requests_per_second: src.requests_per_second,
        timeout: std_duration("source.timeout", &src.timeout)?,
        connect_timeout: std_duration("source.connect_timeout", &src.connect_timeout)?,
        max_attempts: src.max_attempts,
        retry_budget: retry_budget(src.retry_budget.as_ref())?,
        deadline: match &src.deadline {
            None => None,
            Some(d) => Some(std_duration("source.deadline", d)?),
        },
        discovery,
        min_split_ms: duration_ms("source.min_split", &src.min_split)?,
        max_answer_bytes: match &src.max_answer_size {
            None => DEFAULT_MAX_ANSWER_BYTES,
            Some(v) => byte_size("source.max_answer_size", v)?,
        },
        query_downsample: src.query_downsample,
        gzip: src.gzip,
        ovh,
    })
}

/// Validates `[source.ovh]`. Each key may use `${VAR}`; a key left out is read from the
/// standard variable the official OVHcloud clients use (`OVH_ENDPOINT`, `OVH_APPLICATION_KEY`,
/// `OVH_APPLICATION_SECRET`, `OVH_CONSUMER_KEY`). With `source.url = "sim"` and no `endpoint`,
/// API v6 is the in-process simulator: the `OVH_*` variables are then ignored (a developer's
/// real keys never go to the simulator) and keys left out take the simulator's defaults.
fn validate_ovh(
    o: OvhFile,
    sim: bool,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<OvhSpec, ConfigError> {
    let explicit = |key: &str, value: Option<String>| -> Result<Option<String>, ConfigError> {
        value
            .map(|v| expand_env(v.trim(), &format!("source.ovh.{key}"), env))
            .transpose()
    };
    let endpoint = match explicit("endpoint", o.endpoint)? {
        Some(e) => OvhEndpoint::Url(
            crate::ovh::sign::resolve_endpoint(&e)
                .map_err(|m| invalid("source.ovh.endpoint", m))?,
        ),
        None if sim => OvhEndpoint::Sim,
        None => match env("OVH_ENDPOINT").filter(|v| !v.trim().is_empty()) {
            Some(e) => OvhEndpoint::Url(
                crate::ovh::sign::resolve_endpoint(&e)
                    .map_err(|m| invalid("source.ovh.endpoint", format!("OVH_ENDPOINT: {m}")))?,
            ),
            None => {
                return Err(invalid(
                    "source.ovh.endpoint",
                    "is not set: write endpoint = \"ovh-eu\" (or ovh-ca, ovh-us, a URL), or \
                     export OVH_ENDPOINT",
                ));
            }
        },
    };
    let defaults = SimConfig::default();
    let in_sim = endpoint == OvhEndpoint::Sim;
    let key = |name: &str, value: Option<String>, var: &str, sim_default: &str| {
        let v = match explicit(name, value)? {
            Some(v) => v,
            None if in_sim => sim_default.to_string(),
            None => env(var).unwrap_or_default(),
        };
        if v.trim().is_empty() {
            return Err(invalid(
                format!("source.ovh.{name}"),
                format!("is not set: write {name} = \"${{{var}}}\" or export {var}"),
            ));
        }
        Ok(v.trim().to_string())
    };
    let credentials = crate::ovh::Credentials {
        application_key: key(
            "application_key",
            o.application_key,
            "OVH_APPLICATION_KEY",
            &defaults.ovh_application_key,
        )?,
        application_secret: Secret::new(key(
            "application_secret",
            o.application_secret,
            "OVH_APPLICATION_SECRET",
            &defaults.ovh_application_secret,
        )?),
        consumer_key: Secret::new(key(
            "consumer_key",
            o.consumer_key,
            "OVH_CONSUMER_KEY",
            &defaults.ovh_consumer_key,
        )?),
    };
    let service_name = match explicit("service_name", o.service_name)? {
        Some(s) => s,
        None if in_sim => defaults.service_name.clone(),
        None => {
            return Err(invalid(
                "source.ovh.service_name",
                "is not set: write the PCC's serviceName, e.g. service_name = \"pcc-37-187-228-180\" \
                 (GET /dedicatedCloud lists them)",
            ));
        }
    };
    let valid = !service_name.is_empty()
        && service_name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !valid {
        return Err(invalid(
            "source.ovh.service_name",
            format!(
                "'{service_name}' is not a serviceName (letters, digits, '-', '_', '.'), e.g. pcc-37-187-228-180"
            ),
        ));
    }
    if let Some(id) = o.user_id
        && id <= 0
    {
        return Err(invalid(
            "source.ovh.user_id",
            format!("{id} is not a user id (GET /dedicatedCloud/{service_name}/user lists them)"),
        ));
    }
    Ok(OvhSpec {
        endpoint,
        credentials,
        service_name,
        user_id: o.user_id,
    })
}

fn validate_scope(scope: ScopeFile) -> Result<Scope, ConfigError> {
    let window_ms = duration_ms("scope.window", &scope.window)?;
    if !(DAY_MS % window_ms == 0 || window_ms % DAY_MS == 0) {
        return Err(invalid(
            "scope.window",
            format!(
                "'{}' must divide a day (e.g. 1h, 6h, 30m) or be whole days (1d, 7d)",
                scope.window
            ),
        ));
    }
    if window_ms < 60_000 {
        return Err(invalid(
            "scope.window",
            format!("'{}' is shorter than one minute", scope.window),
        ));
    }
    let lateness_ms = duration_ms("scope.lateness", &scope.lateness)?;
    let settle_ms = parse_duration_or_zero("scope.settle", &scope.settle)?;
    if scope.metrics.is_empty() {
        return Err(invalid(
            "scope.metrics",
            "is empty: list metric globs such as \"vscope.*\"",
        ));
    }
    let catalogue = Catalogue::builtin();
    for (i, glob) in scope.metrics.iter().enumerate() {
        if catalogue.matching(std::slice::from_ref(glob)).is_empty() {
            return Err(invalid(
                format!("scope.metrics[{i}]"),
                format!("'{glob}' matches no catalogue metric (see `vscope-etl metrics`)"),
            ));
        }
    }
    let s = Scope {
        start: scope.start,
        end: scope.end,
        window_ms,
        metrics: scope.metrics,
        lateness_ms,
        settle_ms,
    };
    // Check the times parse now, so `validate` catches typos; they are resolved again at run time.
    s.resolve_range(chrono::Utc::now().timestamp_millis())?;
    Ok(s)
}

fn validate_tables(tables: Vec<TableFile>, scope: &Scope) -> Result<Vec<TableSpec>, ConfigError> {
    if tables.is_empty() {
        return Err(invalid(
            "table",
            "no [[table]] defined: add at least one, e.g. name = \"vm_metrics\"",
        ));
    }
    let catalogue = Catalogue::builtin();
    let in_scope: BTreeSet<&str> = catalogue
        .matching(&scope.metrics)
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    let mut names = BTreeSet::new();
    let mut out = Vec::with_capacity(tables.len());
    for (i, t) in tables.into_iter().enumerate() {
        let key = format!("table[{i}]");
        let valid_name = !t.name.is_empty()
            && !t.name.starts_with('_')
            && t.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid_name {
            return Err(invalid(
                format!("{key}.name"),
                format!(
                    "'{}' must be lower-case letters, digits and '_', not starting with '_'",
                    t.name
                ),
            ));
        }
        if !names.insert(t.name.clone()) {
            return Err(invalid(
                format!("{key}.name"),
                format!("table '{}' is defined twice", t.name),
            ));
        }
        let matched: Vec<_> = catalogue
            .matching(&t.metrics)
            .into_iter()
            .filter(|m| in_scope.contains(m.name.as_str()))
            .collect();
        if matched.is_empty() {
            return Err(invalid(
                format!("{key}.metrics"),
                format!(
                    "{:?} matches no metric within scope.metrics {:?}",
                    t.metrics, scope.metrics
                ),
            ));
        }
        let components: BTreeSet<Component> = matched.iter().map(|m| m.component).collect();
        if components.len() > 1 {
            return Err(invalid(
                format!("{key}.metrics"),
                format!(
                    "mixes components {:?}: a table holds one of vscope.filer.*, vscope.host.* or vscope.vm.*",
                    components.iter().map(|c| c.as_str()).collect::<Vec<_>>()
                ),
            ));
        }
        let component = matched[0].component;
        let mut metrics: Vec<String> = matched.iter().map(|m| m.name.clone()).collect();
        metrics.sort();
        let rollup = match (&t.downsample, &t.aggregates) {
            (None, None) => None,
            (None, Some(_)) => {
                return Err(invalid(
                    format!("{key}.aggregates"),
                    "needs downsample = \"<interval>\" (e.g. \"1h\")",
                ));
            }
            (Some(ds), aggs) => {
                let interval = duration_ms(&format!("{key}.downsample"), ds)?;
                if scope.window_ms % interval != 0 {
                    return Err(invalid(
                        format!("{key}.downsample"),
                        format!(
                            "'{ds}' does not divide scope.window: a bucket would straddle two windows \
                             and its value would depend on paging; pick a bucket that divides the window"
                        ),
                    ));
                }
                let names = aggs.clone().unwrap_or_else(|| {
                    vec!["avg".into(), "min".into(), "max".into(), "count".into()]
                });
                if names.is_empty() {
                    return Err(invalid(format!("{key}.aggregates"), "is empty"));
                }
                let mut parsed = Vec::with_capacity(names.len());
                for n in &names {
                    let agg = n.parse::<Aggregator>().map_err(|_| {
                        invalid(
                            format!("{key}.aggregates"),
                            format!(
                                "'{n}' is not an OpenTSDB downsampling function (names are \
                                 case-sensitive); use one of {DOWNSAMPLING_FUNCTIONS}"
                            ),
                        )
                    })?;
                    if parsed.contains(&agg) {
                        return Err(invalid(
                            format!("{key}.aggregates"),
                            format!("'{n}' is listed twice"),
                        ));
                    }
                    parsed.push(agg);
                }
                Some(
                    Rollup::new(interval, parsed)
                        .map_err(|e| invalid(format!("{key}.aggregates"), e.to_string()))?,
                )
            }
        };
        out.push(TableSpec {
            name: t.name,
            component,
            metrics,
            rollup,
        });
    }
    Ok(out)
}

fn validate_sink(
    sink: SinkFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SinkSpec, ConfigError> {
    let url = expand_env(sink.url.trim(), "sink.url", env)?;
    if url.is_empty() {
        return Err(invalid(
            "sink.url",
            "is empty: use a path, file:///abs/path or s3://bucket/prefix",
        ));
    }
    let mut partition_by = Vec::new();
    for p in &sink.partition_by {
        partition_by.push(match p.as_str() {
            "metric" => PartitionKey::Metric,
            "date" => PartitionKey::Date,
            other => {
                return Err(invalid(
                    "sink.partition_by",
                    format!("'{other}' is not one of metric, date"),
                ));
            }
        });
    }
    if partition_by != [PartitionKey::Date]
        && partition_by != [PartitionKey::Metric, PartitionKey::Date]
    {
        return Err(invalid(
            "sink.partition_by",
            "must be [\"date\"] or [\"metric\", \"date\"]",
        ));
    }
    if !(1..=22).contains(&sink.zstd_level) {
        return Err(invalid(
            "sink.zstd_level",
            format!("{} is not within 1..=22", sink.zstd_level),
        ));
    }
    if sink.row_group_rows < 1024 {
        return Err(invalid("sink.row_group_rows", "must be at least 1024"));
    }
    let lease_ttl_ms = duration_ms("sink.lease_ttl", &sink.lease_ttl)?;
    let s3 = match sink.s3 {
        None => crate::load::store::S3Options::default(),
        Some(s3) => {
            if !url.starts_with("s3://") {
                return Err(invalid(
                    "sink.s3",
                    "only allowed with sink.url = \"s3://bucket/prefix\"",
                ));
            }
            let opt =
                |key: &str, v: Option<String>| v.map(|v| expand_env(&v, key, env)).transpose();
            let checksum_sha256 = match s3.checksum.as_str() {
                "none" => false,
                "sha256" => true,
                other => {
                    return Err(invalid(
                        "sink.s3.checksum",
                        format!("'{other}' is not one of none, sha256"),
                    ));
                }
            };
            crate::load::store::S3Options {
                endpoint: opt("sink.s3.endpoint", s3.endpoint)?,
                region: opt("sink.s3.region", s3.region)?,
                access_key_id: opt("sink.s3.access_key_id", s3.access_key_id)?.map(Secret::new),
                secret_access_key: opt("sink.s3.secret_access_key", s3.secret_access_key)?
                    .map(Secret::new),
                allow_http: s3.allow_http,
                virtual_hosted_style: s3.virtual_hosted_style,
                checksum_sha256,
                unsigned_payload: s3.unsigned_payload,
                part_size: s3
                    .part_size
                    .as_deref()
                    .map(|v| part_size(v, s3.allow_small_parts))
                    .transpose()?,
            }
        }
    };
    Ok(SinkSpec {
        url,
        partition_by,
        zstd_level: sink.zstd_level,
        row_group_rows: sink.row_group_rows,
        lease_ttl_ms,
        s3,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
name = "t"
[source]
url = "sim"
[scope]
start = "2026-11-01T00:00:00Z"
end = "2026-11-02T00:00:00Z"
window = "6h"
[[table]]
name = "vm_metrics"
metrics = ["vscope.vm.*"]
[[table]]
name = "vm_metrics_1h"
metrics = ["vscope.vm.cpu.*"]
downsample = "1h"
aggregates = ["avg", "p95", "count"]
[sink]
url = "./out"
"#;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_str(text: &str) -> Result<Pipeline, ConfigError> {
        parse(text, "test.toml", &no_env)
    }

    #[test]
    fn parses_a_complete_pipeline() {
        let p = parse_str(BASE).unwrap();
        assert_eq!(p.name, "t");
        assert_eq!(p.scope.window_ms, 6 * 3_600_000);
        assert_eq!(p.tables.len(), 2);
        assert_eq!(p.tables[0].component, Component::Vm);
        assert!(p.tables[0].metrics.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            p.tables[1].metrics,
            ["vscope.vm.cpu.ready", "vscope.vm.cpu.usage.perc"]
        );
        assert!(matches!(p.source.endpoint, Endpoint::Sim(_)));
        assert_eq!(p.sink.partition_by, [PartitionKey::Date]);
    }

    #[test]
    fn part_sizes_take_units_and_refuse_tiny_or_malformed_values() {
        assert_eq!(byte_size("k", "16MiB").unwrap(), 16 << 20);
        assert_eq!(byte_size("k", "5MB").unwrap(), 5_000_000);
        assert_eq!(byte_size("k", "65536").unwrap(), 65_536);
        for bad in [
            "1KiB",
            "16 furlongs",
            "MiB",
            "-5MiB",
            "99999999999999999999GiB",
        ] {
            let err = byte_size("sink.s3.part_size", bad).unwrap_err().to_string();
            assert!(err.contains("sink.s3.part_size"), "{bad}: {err}");
        }
        let with = BASE.replace(
            "url = \"./out\"",
            "url = \"s3://b/p\"\n[sink.s3]\npart_size = \"8MiB\"",
        );
        assert_eq!(parse_str(&with).unwrap().sink.s3.part_size, Some(8 << 20));
    }

    /// Times before 1970-01-01 (OpenTSDB's epoch, where nothing is stored) are refused like
    /// `-5` is, whatever the form: a date, an RFC 3339 time, or a relative time that lands
    /// before it; the message names the key and the accepted forms.
    #[test]
    fn scope_times_before_1970_are_refused_naming_the_key_and_the_forms() {
        for (key, value) in [
            ("start", "1969-12-31T23:59:59Z"),
            ("start", "1960/01/01"),
            ("start", "3000y-ago"),
            ("start", "57y-ago"),
            ("start", "-5"),
            ("end", "1969/12/31 12:00"),
        ] {
            let text = BASE.replace(
                &format!(
                    "{key} = \"{}\"",
                    if key == "start" {
                        "2026-11-01T00:00:00Z"
                    } else {
                        "2026-11-02T00:00:00Z"
                    }
                ),
                &format!("{key} = \"{value}\""),
            );
            let err = parse_str(&text).unwrap_err().to_string();
            assert!(err.starts_with(&format!("scope.{key}: ")), "{value}: {err}");
            assert!(err.contains(&format!("'{value}'")), "{value}: {err}");
            assert!(err.contains("1970"), "{value}: names the limit: {err}");
            assert!(
                err.contains("-ago") && err.contains("RFC 3339"),
                "{value}: lists the forms: {err}"
            );
        }
        // From 1970 on, every form still works.
        for start in ["1970-01-01T00:00:00Z", "1970/01/01", "0", "10y-ago"] {
            let text = BASE.replace(
                "start = \"2026-11-01T00:00:00Z\"",
                &format!("start = \"{start}\""),
            );
            assert!(parse_str(&text).is_ok(), "{start}");
        }
    }

    /// S3 refuses parts under 5 MiB (all but the last) with EntityTooSmall, and over 5 GiB:
    /// `validate` refuses such a `part_size`, naming the limit and the fix; smaller parts only
    /// with `allow_small_parts` (test servers such as moto lowered), down to 64 KiB.
    #[test]
    fn part_sizes_outside_s3s_limits_are_refused_at_validate() {
        let with = |s3: &str| {
            BASE.replace(
                "url = \"./out\"",
                &format!("url = \"s3://b/p\"\n[sink.s3]\n{s3}"),
            )
        };
        for (small, shown) in [
            ("1MiB", "'1MiB'"),
            ("5242879", "'5242879'"),
            ("5MB", "'5MB'"),
        ] {
            let err = parse_str(&with(&format!("part_size = \"{small}\"")))
                .unwrap_err()
                .to_string();
            assert!(err.contains("sink.s3.part_size"), "{small}: {err}");
            assert!(err.contains(shown), "{small}: {err}");
            assert!(err.contains("5MiB"), "names the minimum: {err}");
            assert!(err.contains("EntityTooSmall"), "{err}");
            assert!(err.contains("allow_small_parts"), "{err}");
        }
        let err = parse_str(&with("part_size = \"6GiB\""))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sink.s3.part_size") && err.contains("5GiB"),
            "{err}"
        );
        assert_eq!(
            parse_str(&with("part_size = \"5MiB\""))
                .unwrap()
                .sink
                .s3
                .part_size,
            Some(5 << 20)
        );
        assert_eq!(
            parse_str(&with("part_size = \"5GiB\""))
                .unwrap()
                .sink
                .s3
                .part_size,
            Some(5 << 30)
        );
        let small = with("part_size = \"64KiB\"\nallow_small_parts = true");
        assert_eq!(parse_str(&small).unwrap().sink.s3.part_size, Some(64 << 10));
        let tiny = with("part_size = \"1KiB\"\nallow_small_parts = true");
        let err = parse_str(&tiny).unwrap_err().to_string();
        assert!(err.contains("64KiB"), "{err}");
    }

    #[test]
    fn server_side_downsampling_is_refused_for_aggregates_ovh_computes_otherwise() {
        let ovh = BASE.replace(
            "url = \"sim\"",
            "url = \"sim\"\ndialect = \"ovh\"\nquery_downsample = true",
        );
        let err = parse_str(&ovh).unwrap_err().to_string();
        assert!(
            err.contains("source.query_downsample")
                && err.contains("vm_metrics_1h")
                && err.contains("p95"),
            "{err}"
        );
        let tsdb = ovh.replace("dialect = \"ovh\"", "dialect = \"opentsdb\"");
        assert!(parse_str(&tsdb).unwrap().source.query_downsample);
        let auto = ovh.replace("dialect = \"ovh\"\n", "");
        assert!(parse_str(&auto).is_ok(), "auto is checked after detection");
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let err = parse_str(&BASE.replace("window = \"6h\"", "window = \"6h\"\nwindoww = 1"))
            .unwrap_err();
        assert!(err.to_string().contains("windoww"), "{err}");
    }

    #[test]
    fn env_vars_expand_and_missing_ones_name_the_key() {
        let env = |n: &str| (n == "TOK").then(|| "abc".to_string());
        assert_eq!(expand_env("x${TOK}y", "k", &env).unwrap(), "xabcy");
        let err = expand_env("${NOPE}", "source.token", &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("source.token") && err.contains("NOPE"),
            "{err}"
        );
        assert!(expand_env("${", "k", &env).is_err());
        assert!(expand_env("${1A}", "k", &env).is_err());
    }

    #[test]
    fn real_endpoints_need_a_token_and_no_userinfo() {
        let text = BASE.replace("url = \"sim\"", "url = \"https://opentsdb.example\"");
        let err = parse_str(&text).unwrap_err().to_string();
        assert!(err.contains("source.token"), "{err}");
        let text = BASE.replace(
            "url = \"sim\"",
            "url = \"https://read:secret@opentsdb.example\"\ntoken = \"x\"",
        );
        let err = parse_str(&text).unwrap_err().to_string();
        assert!(
            err.contains("credentials") && !err.contains("secret@"),
            "{err}"
        );
    }

    #[test]
    fn window_must_divide_a_day_and_buckets_the_window() {
        let err = parse_str(&BASE.replace("window = \"6h\"", "window = \"7h\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("scope.window"), "{err}");
        let err = parse_str(&BASE.replace("downsample = \"1h\"", "downsample = \"5h\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("downsample"), "{err}");
        assert!(parse_str(&BASE.replace("window = \"6h\"", "window = \"2d\"")).is_ok());
    }

    #[test]
    fn retry_budget_deadline_and_sim_faults_are_read_and_checked() {
        use crate::extract::retry::RetryBudget;
        let with = |extra: &str| {
            parse_str(&BASE.replace("url = \"sim\"", &format!("url = \"sim\"\n{extra}")))
        };
        let p = parse_str(BASE).unwrap();
        assert_eq!(p.source.retry_budget, RetryBudget::Ratio(0.5));
        assert_eq!(p.source.deadline, None);
        let p = with("retry_budget = 0.1\ndeadline = \"50m\"").unwrap();
        assert_eq!(p.source.retry_budget, RetryBudget::Ratio(0.1));
        assert_eq!(p.source.deadline, Some(Duration::from_secs(3000)));
        assert_eq!(
            with("retry_budget = 25").unwrap().source.retry_budget,
            RetryBudget::Count(25)
        );
        assert_eq!(
            with("retry_budget = \"unlimited\"")
                .unwrap()
                .source
                .retry_budget,
            RetryBudget::Unlimited
        );
        for bad in [
            "retry_budget = 10.5",
            "retry_budget = -1",
            "retry_budget = \"lots\"",
        ] {
            let err = with(bad).unwrap_err().to_string();
            assert!(err.contains("source.retry_budget"), "{bad}: {err}");
        }
        let err = with("deadline = \"soon\"").unwrap_err().to_string();
        assert!(err.contains("source.deadline"), "{err}");
        let p = with("[source.sim]\nfaults = [\"503@first=2\", \"transient=0.1\"]\nfault_seed = 9")
            .unwrap();
        let sim = p.source.sim_config().unwrap();
        assert_eq!(sim.faults.len(), 2);
        assert_eq!(sim.fault_seed, 9);
        let err = with("[source.sim]\nfaults = [\"418\"]")
            .unwrap_err()
            .to_string();
        assert!(err.contains("source.sim.faults"), "{err}");
        let p = with(
            "[source.sim]\nerrors = \"head\"\nmax_fetch_points = 5000\nfetch_start = \"included\"",
        )
        .unwrap();
        let sim = p.source.sim_config().unwrap();
        assert_eq!(sim.errors, crate::sim::ErrorMode::Head);
        assert_eq!(sim.max_fetch_points, 5000);
        assert_eq!(sim.fetch_start, crate::sim::FetchStart::Included);
        for (bad, key) in [
            ("errors = \"json\"", "source.sim.errors"),
            ("fetch_start = \"open\"", "source.sim.fetch_start"),
        ] {
            let err = with(&format!("[source.sim]\n{bad}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{bad}: {err}");
        }
    }

    /// `source.gzip` and `[source.sim] gzip` are on unless turned off, each on its own.
    #[test]
    fn gzip_is_on_by_default_and_switchable_on_each_side() {
        let with = |extra: &str| {
            parse_str(&BASE.replace("url = \"sim\"", &format!("url = \"sim\"\n{extra}"))).unwrap()
        };
        let p = parse_str(BASE).unwrap();
        assert!(p.source.gzip && p.source.sim_config().unwrap().gzip);
        let p = with("gzip = false");
        assert!(!p.source.gzip && p.source.sim_config().unwrap().gzip);
        let p = with("[source.sim]\ngzip = false");
        assert!(p.source.gzip && !p.source.sim_config().unwrap().gzip);
    }

    #[test]
    fn tables_are_checked() {
        let err =
            parse_str(&BASE.replace("metrics = [\"vscope.vm.*\"]", "metrics = [\"vscope.*\"]"))
                .unwrap_err()
                .to_string();
        assert!(err.contains("mixes components"), "{err}");
        let err = parse_str(&BASE.replace("\"p95\"", "\"p96\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("aggregates"), "{err}");
        let err = parse_str(&BASE.replace("name = \"vm_metrics_1h\"", "name = \"vm_metrics\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("twice"), "{err}");
    }

    const OVH: &str = "[source.ovh]\nendpoint = \"ovh-eu\"\napplication_key = \"ak\"\n\
        application_secret = \"${AS}\"\nconsumer_key = \"${CK}\"\nservice_name = \"pcc-1-2-3-4\"\n";

    fn real_source(extra: &str, ovh: &str) -> String {
        BASE.replace(
            "url = \"sim\"",
            &format!("url = \"https://opentsdb.example\"\n{extra}\n{ovh}"),
        )
    }

    #[test]
    fn ovh_section_is_validated_and_secrets_wrapped() {
        let env = |n: &str| match n {
            "AS" => Some("app-secret-value".to_string()),
            "CK" => Some("consumer-key-value".to_string()),
            _ => None,
        };
        let text = real_source("token = \"t\"", OVH);
        let p = parse(&text, "t.toml", &env).unwrap();
        let o = p.source.ovh.as_ref().unwrap();
        assert_eq!(
            o.endpoint,
            OvhEndpoint::Url(url::Url::parse("https://eu.api.ovh.com/1.0").unwrap())
        );
        assert_eq!(
            o.credentials.application_secret.expose(),
            "app-secret-value"
        );
        assert_eq!(o.service_name, "pcc-1-2-3-4");
        assert!(!format!("{p:?}").contains("app-secret-value"));
        assert!(!format!("{p:?}").contains("consumer-key-value"));
        // Bad endpoint, bad service name, bad user id.
        for (from, to, key) in [
            ("\"ovh-eu\"", "\"ovh-mars\"", "source.ovh.endpoint"),
            ("\"pcc-1-2-3-4\"", "\"pcc/../x\"", "source.ovh.service_name"),
        ] {
            let err = parse(&text.replace(from, to), "t.toml", &env).unwrap_err();
            assert!(err.to_string().contains(key), "{err}");
        }
        let err = parse(
            &text.replace("service_name", "user_id = 0\nservice_name"),
            "t.toml",
            &env,
        )
        .unwrap_err();
        assert!(err.to_string().contains("source.ovh.user_id"), "{err}");
        let err = parse(&text.replace("service_name", "servic_name"), "t.toml", &env).unwrap_err();
        assert!(
            err.to_string().contains("servic_name"),
            "unknown keys: {err}"
        );
    }

    #[test]
    fn ovh_keys_fall_back_to_the_standard_variables() {
        let env = |n: &str| match n {
            "OVH_ENDPOINT" => Some("ovh-ca".to_string()),
            "OVH_APPLICATION_KEY" => Some("ak-env".to_string()),
            "OVH_APPLICATION_SECRET" => Some("as-env".to_string()),
            "OVH_CONSUMER_KEY" => Some("ck-env".to_string()),
            _ => None,
        };
        let text = real_source("token = \"t\"", "[source.ovh]\nservice_name = \"pcc-x\"\n");
        let p = parse(&text, "t.toml", &env).unwrap();
        let o = p.source.ovh.unwrap();
        assert_eq!(o.credentials.application_key, "ak-env");
        assert_eq!(o.credentials.consumer_key.expose(), "ck-env");
        assert_eq!(
            o.endpoint,
            OvhEndpoint::Url(url::Url::parse("https://ca.api.ovh.com/1.0").unwrap())
        );
        // Without the variables, the error names the key and the variable.
        let err = parse(&text, "t.toml", &no_env).unwrap_err().to_string();
        assert!(
            err.contains("source.ovh.endpoint") && err.contains("OVH_ENDPOINT"),
            "{err}"
        );
        let err = parse(
            &text.replace("service_name", "endpoint = \"ovh-eu\"\nservice_name"),
            "t.toml",
            &no_env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("source.ovh.application_key") && err.contains("OVH_APPLICATION_KEY"),
            "{err}"
        );
    }

    #[test]
    fn token_may_come_from_the_api_and_discovery_from_the_inventory() {
        let env = |n: &str| Some(format!("value-of-{n}"));
        // No token and no user_id: still an error naming both ways out.
        let err = parse(&real_source("", OVH), "t.toml", &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("source.token") && err.contains("user_id"),
            "{err}"
        );
        let p = parse(
            &real_source("discovery = \"inventory\"", &format!("{OVH}user_id = 12\n")),
            "t.toml",
            &env,
        )
        .unwrap();
        assert!(p.source.token.is_empty());
        assert_eq!(p.source.discovery, Discovery::Inventory);
        assert_eq!(p.source.ovh.unwrap().user_id, Some(12));
        let err =
            parse_str(&BASE.replace("url = \"sim\"", "url = \"sim\"\ndiscovery = \"inventory\""))
                .unwrap_err()
                .to_string();
        assert!(err.contains("[source.ovh]"), "{err}");
    }

    #[test]
    fn the_simulator_serves_api_v6_with_the_pipeline_settings() {
        let env = |n: &str| Some(format!("real-{n}"));
        let text = BASE.replace("url = \"sim\"", "url = \"sim\"\n[source.ovh]\nuser_id = 1");
        let p = parse(&text, "t.toml", &env).unwrap();
        let o = p.source.ovh.as_ref().unwrap();
        assert_eq!(o.endpoint, OvhEndpoint::Sim);
        // The OVH_* variables are not read for the simulator.
        assert_eq!(
            o.credentials.application_key,
            SimConfig::default().ovh_application_key
        );
        let cfg = p.source.sim_config().unwrap();
        assert_eq!(
            cfg.token,
            Some(cfg.issued_token()),
            "the simulator requires its token"
        );
        let text = text.replace(
            "user_id = 1",
            "user_id = 1\nservice_name = \"pcc-9\"\napplication_secret = \"s3\"",
        );
        let cfg = parse(&text, "t.toml", &env)
            .unwrap()
            .source
            .sim_config()
            .unwrap();
        assert_eq!(cfg.service_name, "pcc-9");
        assert_eq!(cfg.ovh_application_secret, "s3");
    }

    #[test]
    fn source_url_may_be_left_out_only_when_the_token_comes_from_api_v6() {
        let env = |n: &str| Some(format!("value-of-{n}"));
        let without_url =
            |extra: &str, ovh: &str| BASE.replace("url = \"sim\"", &format!("{extra}\n{ovh}"));
        let ovh_user = format!("{OVH}user_id = 12\n");
        // No url, token from API v6: the endpoint is the token's.
        let p = parse(&without_url("", &ovh_user), "t.toml", &env).unwrap();
        assert!(matches!(p.source.endpoint, Endpoint::FromToken));
        assert!(p.source.sim_config().is_none());
        // An empty url (e.g. a variable set to "") means the same.
        let p = parse(&without_url("url = \"\"", &ovh_user), "t.toml", &env).unwrap();
        assert!(matches!(p.source.endpoint, Endpoint::FromToken));
        // Otherwise it is an error naming the key and both ways out.
        for (extra, ovh) in [("", ""), ("", OVH), ("token = \"t\"", ovh_user.as_str())] {
            let err = parse(&without_url(extra, ovh), "t.toml", &env)
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("source.url: is not set")
                    && err.contains("opentsdbEndpoint")
                    && err.contains("user_id"),
                "{extra} {ovh}: {err}"
            );
        }
        let err = parse(&without_url("[source.sim]\nseed = 1", ""), "t.toml", &env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("source.sim"), "{err}");
    }

    #[test]
    fn source_url_reads_a_variable_and_an_unset_one_says_what_to_do() {
        let text = BASE.replace(
            "url = \"sim\"",
            "url = \"${VSCOPE_OPENTSDB_ENDPOINT}\"\ntoken = \"t\"",
        );
        let env = |n: &str| {
            (n == "VSCOPE_OPENTSDB_ENDPOINT")
                .then(|| " https://opentsdb.gra1-ovh.metrics.ovh.net ".to_string())
        };
        let p = parse(&text, "t.toml", &env).unwrap();
        match &p.source.endpoint {
            Endpoint::Url(u) => assert_eq!(u.host_str(), Some("opentsdb.gra1-ovh.metrics.ovh.net")),
            other => panic!("expected a URL, got {other:?}"),
        }
        let err = parse_str(&text).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "source.url: environment variable VSCOPE_OPENTSDB_ENDPOINT is not set: "
            ) && err.contains("opentsdbEndpoint")
                && err.contains("vscope-etl token")
                && err.contains("leave source.url out when [source.ovh] user_id"),
            "{err}"
        );
        // Even with API v6 issuing the token: an unset variable is an error, never a silent
        // fallback (the url line is removed on purpose, or the variable exported).
        let with_api = format!("{}\n{OVH}user_id = 12\n", text.replace("token = \"t\"", ""));
        let env_api = |n: &str| (n != "VSCOPE_OPENTSDB_ENDPOINT").then(|| format!("v-{n}"));
        let err = parse(&with_api, "t.toml", &env_api)
            .unwrap_err()
            .to_string();
        assert!(err.contains("VSCOPE_OPENTSDB_ENDPOINT is not set"), "{err}");
        // Other keys keep the generic advice.
        let err = expand_env("${NOPE}", "sink.url", &no_env)
            .unwrap_err()
            .to_string();
        assert!(err.contains("export NOPE=..."), "{err}");
    }

    #[test]
    fn rollups_accept_every_opentsdb_downsampling_function_named_as_written() {
        let all = "[\"avg\", \"sum\", \"zimsum\", \"min\", \"max\", \"mimmin\", \"mimmax\", \
            \"count\", \"dev\", \"first\", \"last\", \"p50\", \"p75\", \"p90\", \"p95\", \"p99\", \
            \"p999\", \"pfsum\", \"median\", \"mult\", \"diff\", \"squareSum\", \"ep50r3\", \
            \"ep75r3\", \"ep90r3\", \"ep95r3\", \"ep99r3\", \"ep999r3\", \"ep50r7\", \"ep75r7\", \
            \"ep90r7\", \"ep95r7\", \"ep99r7\", \"ep999r7\"]";
        let text = BASE.replace("[\"avg\", \"p95\", \"count\"]", all);
        let p = parse_str(&text).unwrap();
        let rollup = p.tables[1].rollup.as_ref().unwrap();
        let names: Vec<&str> = rollup.aggregates.iter().map(|a| a.name()).collect();
        let want: Vec<String> = all
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|n| n.trim().trim_matches('"').to_string())
            .collect();
        assert_eq!(names, want);
        // The column names are the names as written, in order; count alone is Int64.
        let schema = crate::schema::rollup_schema(p.tables[1].component, &rollup.aggregates);
        for name in &want {
            let field = schema.field_with_name(name).unwrap();
            let int = *field.data_type() == arrow::datatypes::DataType::Int64;
            assert_eq!(int, name == "count", "{name}");
        }
        // none, an unknown or a miscased name, or a repeat: refused naming the key.
        for (bad, says) in [
            ("[\"none\"]", "'none' cannot be used in a rollup"),
            (
                "[\"squaresum\"]",
                "'squaresum' is not an OpenTSDB downsampling function",
            ),
            (
                "[\"multiply\"]",
                "'multiply' is not an OpenTSDB downsampling function",
            ),
            ("[\"zimsum\", \"zimsum\"]", "'zimsum' is listed twice"),
        ] {
            let err = parse_str(&BASE.replace("[\"avg\", \"p95\", \"count\"]", bad))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("table[1].aggregates") && err.contains(says),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn server_side_downsampling_allows_what_the_server_computes_exactly() {
        let with = |dialect: &str, aggs: &str| {
            parse_str(
                &BASE
                    .replace(
                        "url = \"sim\"",
                        &format!("url = \"sim\"\ndialect = \"{dialect}\"\nquery_downsample = true"),
                    )
                    .replace("[\"avg\", \"p95\", \"count\"]", aggs),
            )
        };
        // Erlenmeyer's zimsum, mimmin and mimmax are bucketizer.sum, .min, .max.
        assert!(with("ovh", "[\"zimsum\", \"mimmin\", \"mimmax\", \"first\"]").is_ok());
        for agg in [
            "median",
            "mult",
            "diff",
            "pfsum",
            "squareSum",
            "ep95r7",
            "p50",
            "dev",
        ] {
            let err = with("ovh", &format!("[\"{agg}\"]"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("source.query_downsample") && err.contains(&format!("'{agg}'")),
                "{agg}: {err}"
            );
            assert!(with("opentsdb", &format!("[\"{agg}\"]")).is_ok(), "{agg}");
        }
        let err = with("ovh", "[\"median\"]").unwrap_err().to_string();
        assert!(err.contains("no such downsampling function"), "{err}");
    }

    #[test]
    fn empty_range_is_an_error() {
        let err = parse_str(&BASE.replace(
            "end = \"2026-11-02T00:00:00Z\"",
            "end = \"2026-11-01T00:00:00Z\"",
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("scope.end"), "{err}");
    }
}
