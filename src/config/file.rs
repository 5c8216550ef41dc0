//! What a user writes: the serde model of a pipeline file, unknown keys rejected, with the
//! defaults of every key. [`super::validate`] turns it into the [`super::Pipeline`] the run trusts.

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PipelineFile {
    pub(super) name: String,
    pub(super) source: SourceFile,
    pub(super) scope: ScopeFile,
    #[serde(rename = "table", default)]
    pub(super) tables: Vec<TableFile>,
    pub(super) sink: SinkFile,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceFile {
    /// Absent (or empty): the `opentsdbEndpoint` of the token API v6 issues, which is only
    /// possible when the token comes from there.
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) token: String,
    #[serde(default = "default_dialect")]
    pub(super) dialect: String,
    #[serde(default)]
    pub(super) protocol: Option<String>,
    #[serde(default = "default_concurrency")]
    pub(super) concurrency: usize,
    #[serde(default = "default_rps")]
    pub(super) requests_per_second: f64,
    #[serde(default = "default_shard_rate")]
    pub(super) shard_rate: String,
    #[serde(default = "default_timeout")]
    pub(super) timeout: String,
    #[serde(default = "default_connect_timeout")]
    pub(super) connect_timeout: String,
    #[serde(default = "default_max_attempts")]
    pub(super) max_attempts: u32,
    pub(super) retry_budget: Option<toml::Value>,
    pub(super) deadline: Option<String>,
    #[serde(default = "default_discovery")]
    pub(super) discovery: String,
    #[serde(default = "default_min_split")]
    pub(super) min_split: String,
    pub(super) max_answer_size: Option<String>,
    pub(super) memory_limit: Option<String>,
    #[serde(default)]
    pub(super) query_downsample: bool,
    #[serde(default = "default_gzip")]
    pub(super) gzip: bool,
    pub(super) sim: Option<SimFile>,
    pub(super) ovh: Option<OvhFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SimFile {
    pub(super) dialect: Option<String>,
    pub(super) datacenters: Option<usize>,
    pub(super) hosts_per_datacenter: Option<usize>,
    pub(super) vms_per_datacenter: Option<usize>,
    pub(super) filers_per_datacenter: Option<usize>,
    pub(super) step: Option<String>,
    pub(super) seed: Option<u64>,
    pub(super) inventory_drift: Option<usize>,
    pub(super) faults: Option<Vec<String>>,
    pub(super) fault_seed: Option<u64>,
    pub(super) errors: Option<String>,
    pub(super) max_fetch_points: Option<u64>,
    pub(super) fetch_start: Option<String>,
    pub(super) gzip: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OvhFile {
    pub(super) endpoint: Option<String>,
    pub(super) application_key: Option<String>,
    pub(super) application_secret: Option<String>,
    pub(super) consumer_key: Option<String>,
    pub(super) service_name: Option<String>,
    pub(super) user_id: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ScopeFile {
    pub(super) start: String,
    #[serde(default = "default_end")]
    pub(super) end: String,
    #[serde(default = "default_window")]
    pub(super) window: String,
    #[serde(default = "default_metrics")]
    pub(super) metrics: Vec<String>,
    #[serde(default = "default_lateness")]
    pub(super) lateness: String,
    #[serde(default = "default_settle")]
    pub(super) settle: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TableFile {
    pub(super) name: String,
    pub(super) metrics: Vec<String>,
    pub(super) downsample: Option<String>,
    pub(super) aggregates: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SinkFile {
    pub(super) url: String,
    #[serde(default = "default_partition_by")]
    pub(super) partition_by: Vec<String>,
    #[serde(default = "default_compression")]
    pub(super) compression: String,
    #[serde(default = "default_zstd_level")]
    pub(super) zstd_level: i32,
    /// `None`: [`default_row_group_rows`] for the partitioning.
    #[serde(default)]
    pub(super) row_group_rows: Option<usize>,
    #[serde(default = "default_lease_ttl")]
    pub(super) lease_ttl: String,
    #[serde(default = "default_table_format")]
    pub(super) table_format: String,
    pub(super) s3: Option<S3File>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct S3File {
    pub(super) endpoint: Option<String>,
    pub(super) region: Option<String>,
    pub(super) access_key_id: Option<String>,
    pub(super) secret_access_key: Option<String>,
    pub(super) allow_http: Option<bool>,
    pub(super) virtual_hosted_style: Option<bool>,
    #[serde(default = "default_checksum")]
    pub(super) checksum: String,
    #[serde(default)]
    pub(super) unsigned_payload: bool,
    pub(super) part_size: Option<String>,
    #[serde(default)]
    pub(super) allow_small_parts: bool,
}

pub(super) fn default_dialect() -> String {
    "auto".into()
}
/// Requests in flight by default: 16 keep a 100 Mbit/s link with a 20 ms round trip 96 % busy
/// with gzip answers, where 8 left it 73 % busy (`benches/wire.sh`, docs/performance.md).
pub(super) fn default_concurrency() -> usize {
    16
}
pub(super) fn default_rps() -> f64 {
    20.0
}
pub(super) fn default_shard_rate() -> String {
    "share".into()
}
pub(super) fn default_timeout() -> String {
    "120s".into()
}
pub(super) fn default_connect_timeout() -> String {
    "10s".into()
}
pub(super) fn default_max_attempts() -> u32 {
    // Against a server failing a fifth of its answers, 4 attempts lose a unit now and then
    // (0.2^4 per request); the run-wide retry budget, not this cap, stops a server that is down.
    10
}
pub(super) fn default_gzip() -> bool {
    true
}
pub(super) fn default_discovery() -> String {
    "lookup".into()
}
pub(super) fn default_min_split() -> String {
    "1m".into()
}
pub(super) fn default_end() -> String {
    "now".into()
}
pub(super) fn default_window() -> String {
    "1d".into()
}
pub(super) fn default_metrics() -> Vec<String> {
    vec!["vscope.*".into()]
}
pub(super) fn default_lateness() -> String {
    "2h".into()
}
pub(super) fn default_settle() -> String {
    "1m".into()
}
pub(super) fn default_partition_by() -> Vec<String> {
    vec!["date".into()]
}
pub(super) fn default_compression() -> String {
    "zstd".into()
}
/// zstd level 2 by default, not 1: with the 1 MiB pages the writer cuts (`load::writer`), level
/// 1 made the bench day 4.280 bytes a point and level 2 makes it 3.398 (3.553 with level 1 on
/// the old 20,000-row pages): zstd picks its match-finder tables by level and input size, and
/// level 1's for inputs over 256 KiB are its sparsest. Decoding costs the same; encoding about
/// 8 % of the loopback export (docs/performance.md "For the reader").
pub(super) fn default_zstd_level() -> i32 {
    2
}
/// Rows per row group by default, by partitioning. Row groups are what DuckDB, Spark and polars
/// skip by their statistics, and DuckDB pays for every row group of every file a query opens
/// (about 20 us each, skipped or not).
///
/// - `["date"]`: 256 Ki. A file holds every metric of a day, and a one-day query opens all of
///   them; row groups also end where the metric changes, so a small PCC's metric-day is one row
///   group whatever this is. On a 500-VM month (`benches/query.sh --vms 250`) 256 Ki against
///   128 Ki: the one-day query 0.78x pyarrow's single file instead of 0.56x, one VM's lookup
///   22.5 % of the bytes instead of 18.2 %.
/// - `["metric", "date"]`: 64 Ki. A file holds one metric-day, so its row groups are slices of
///   the VMs (about 45 of 500 VMs each), and a query on one metric opens only that metric's
///   files: one VM's month reads 4.9 % of the bytes (with the 64 KiB value pages of
///   [`super::SinkSpec::value_page_bytes`]) and the one-day query still matches pyarrow's
///   single file; 32 Ki made it 0.76x (docs/performance.md "For the reader").
/// - `["month"]`, `["metric", "month"]`: 64 Ki. A compacted month file is sorted by series, so
///   a row group is one to two VMs' month of a metric and one VM's month reads a few of them.
pub(super) fn default_row_group_rows(sliced: bool) -> usize {
    if sliced { 1 << 16 } else { 1 << 18 }
}
pub(super) fn default_table_format() -> String {
    "parquet".into()
}
pub(super) fn default_lease_ttl() -> String {
    "2m".into()
}
pub(super) fn default_checksum() -> String {
    "none".into()
}

// ---------------------------------------------------------------------------------------------
// What the rest of the program uses.
