//! From what a user wrote ([`super::file`]) to a [`super::Pipeline`]: every key checked, times
//! resolved, the catalogue and rollups applied, without any network access.

use std::collections::BTreeSet;

use super::PageCompression;
use super::file::{OvhFile, PipelineFile, ScopeFile, SinkFile, SourceFile, TableFile};
use super::values::{
    DEFAULT_MAX_ANSWER_BYTES, DEFAULT_MEMORY_LIMIT_BYTES, MIN_MEMORY_LIMIT_BYTES, byte_size,
    duration_ms, expand, expand_env, parse_duration_or_zero, part_size, retry_budget, std_duration,
    token_endpoint, url_unset_hint,
};
use super::{
    ConfigError, DAY_MS, DialectChoice, Discovery, Endpoint, OvhEndpoint, OvhSpec, PartitionKey,
    Pipeline, Scope, SinkSpec, Source, TableSpec, invalid,
};
use crate::catalogue::{Catalogue, Component};
use crate::dialect::Dialect;
use crate::secret::Secret;
use crate::semantics::aggregator::{Aggregator, DOWNSAMPLING_FUNCTIONS};
use crate::semantics::rollup::Rollup;
use crate::sim::SimConfig;

pub(super) fn validate(
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
            if let Err(why) = vscope_core::semantics::aggregator::server_exact(dialect, aggregate) {
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

pub(super) fn validate_source(
    src: SourceFile,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Source, ConfigError> {
    let protocol = match src.protocol.as_deref() {
        None | Some("opentsdb") => crate::config::Protocol::Opentsdb,
        Some("warp10") => crate::config::Protocol::Warp10,
        Some(other) => {
            return Err(invalid(
                "source.protocol",
                format!("'{other}' is not one of opentsdb, warp10"),
            ));
        }
    };
    let url = match &src.url {
        None => String::new(),
        Some(u) => expand(u.trim(), env)
            .map_err(|e| e.into_config(u, "source.url", &url_unset_hint(protocol)))?
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
    if protocol == crate::config::Protocol::Warp10 && src.query_downsample {
        return Err(invalid(
            "source.query_downsample",
            "needs source.protocol = \"opentsdb\": Warp 10's /api/v0/fetch serves raw points \
             only; rollup tables are computed from them client-side",
        ));
    }
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
            let (field, example) = token_endpoint(protocol);
            return Err(invalid(
                "source.url",
                format!(
                    "is not set: write your metrics endpoint, the {field} of your read token \
                     (e.g. url = \"{example}\"), or \"sim\"; it may be left out only when the \
                     token comes from OVHcloud API v6 ([source.ovh] user_id set and source.token \
                     empty), which gives the endpoint too"
                ),
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
    let shard_rate = match src.shard_rate.as_str() {
        "share" => crate::config::ShardRate::Share,
        "each" => crate::config::ShardRate::Each,
        other => {
            return Err(invalid(
                "source.shard_rate",
                format!(
                    "'{other}' is not one of share (the shards of a job share \
                     requests_per_second, the default), each"
                ),
            ));
        }
    };
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
    // What answers may hold at once; one answer's decoded points (about three quarters of its
    // JSON, which is decoded as it streams in) must fit in half of it, or the budget could not
    // be kept.
    let memory_limit_bytes = match &src.memory_limit {
        None => DEFAULT_MEMORY_LIMIT_BYTES,
        Some(v) => byte_size("source.memory_limit", v)?,
    };
    if memory_limit_bytes < MIN_MEMORY_LIMIT_BYTES {
        return Err(invalid(
            "source.memory_limit",
            format!(
                "{memory_limit_bytes} bytes is below the 16MiB a run needs for its answers \
                 (the default is \"128MiB\"; docs/operations.md, \"Sizing a pod\")"
            ),
        ));
    }
    let max_answer_bytes = match &src.max_answer_size {
        None => DEFAULT_MAX_ANSWER_BYTES.min(memory_limit_bytes / 2),
        Some(v) => byte_size("source.max_answer_size", v)?,
    };
    if max_answer_bytes > memory_limit_bytes / 2 {
        return Err(invalid(
            "source.max_answer_size",
            format!(
                "{max_answer_bytes} bytes is more than half of source.memory_limit \
                 ({memory_limit_bytes} bytes): the decoded points of one answer would not fit \
                 beside the others; lower it or raise source.memory_limit"
            ),
        ));
    }
    Ok(Source {
        endpoint,
        token,
        dialect,
        protocol,
        concurrency: src.concurrency,
        requests_per_second: src.requests_per_second,
        shard_rate,
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
        memory_limit_bytes,
        max_answer_bytes,
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
pub(super) fn validate_ovh(
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
            vscope_core::ovh::sign::resolve_endpoint(&e)
                .map_err(|m| invalid("source.ovh.endpoint", m))?,
        ),
        None if sim => OvhEndpoint::Sim,
        None => match env("OVH_ENDPOINT").filter(|v| !v.trim().is_empty()) {
            Some(e) => OvhEndpoint::Url(
                vscope_core::ovh::sign::resolve_endpoint(&e)
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
    let credentials = crate::config::Credentials {
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

pub(super) fn validate_scope(scope: ScopeFile) -> Result<Scope, ConfigError> {
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

pub(super) fn validate_tables(
    tables: Vec<TableFile>,
    scope: &Scope,
) -> Result<Vec<TableSpec>, ConfigError> {
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

pub(super) fn validate_sink(
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
            "month" => PartitionKey::Month,
            other => {
                return Err(invalid(
                    "sink.partition_by",
                    format!("'{other}' is not one of metric, date, month"),
                ));
            }
        });
    }
    let layouts = [
        &[PartitionKey::Date][..],
        &[PartitionKey::Metric, PartitionKey::Date],
        &[PartitionKey::Month],
        &[PartitionKey::Metric, PartitionKey::Month],
    ];
    if !layouts.contains(&partition_by.as_slice()) {
        return Err(invalid(
            "sink.partition_by",
            "must be [\"date\"], [\"metric\", \"date\"], [\"month\"] or [\"metric\", \"month\"]",
        ));
    }
    if !(1..=22).contains(&sink.zstd_level) {
        return Err(invalid(
            "sink.zstd_level",
            format!("{} is not within 1..=22", sink.zstd_level),
        ));
    }
    let compression = match sink.compression.as_str() {
        "zstd" => PageCompression::Zstd(sink.zstd_level),
        "snappy" => PageCompression::Snappy,
        "lz4" => PageCompression::Lz4,
        other => {
            return Err(invalid(
                "sink.compression",
                format!(
                    "'{other}' is not \"zstd\" (smallest files), \"lz4\" (fastest scans) or \"snappy\""
                ),
            ));
        }
    };
    let row_group_rows = sink
        .row_group_rows
        .unwrap_or_else(|| super::file::default_row_group_rows(super::is_sliced(&partition_by)));
    if row_group_rows < 1024 {
        return Err(invalid("sink.row_group_rows", "must be at least 1024"));
    }
    let lease_ttl_ms = duration_ms("sink.lease_ttl", &sink.lease_ttl)?;
    if lease_ttl_ms < 3_000 {
        return Err(invalid(
            "sink.lease_ttl",
            "must be at least 3s: the heartbeat renews the lease every third of it (default 2m)",
        ));
    }
    let table_format = match sink.table_format.as_str() {
        "parquet" => crate::config::TableFormat::Parquet,
        "delta" => crate::config::TableFormat::Delta,
        other => {
            return Err(invalid(
                "sink.table_format",
                format!("'{other}' is not one of parquet, delta"),
            ));
        }
    };
    let s3 = match sink.s3 {
        None => crate::config::S3Options::default(),
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
            crate::config::S3Options {
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
        compression,
        row_group_rows,
        lease_ttl_ms,
        table_format,
        s3,
    })
}
