//! Values inside a pipeline file: `${VAR}` expansion, durations, byte sizes, part sizes and the
//! retry budget, each refused with the key named and what is allowed.

use std::time::Duration;

use super::{ConfigError, invalid};
use crate::semantics::time::parse_duration;

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
pub(super) enum EnvError {
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
    pub(super) fn into_config(self, value: &str, key: &str, unset_hint: &str) -> ConfigError {
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
pub(super) fn expand(
    value: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, EnvError> {
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

/// The field of the `metricsToken` answer that holds the endpoint of `protocol`, and an
/// example of it: what the messages about a missing or token-given `source.url` name.
pub(super) fn token_endpoint(protocol: crate::config::Protocol) -> (&'static str, &'static str) {
    match protocol {
        crate::config::Protocol::Opentsdb => (
            "opentsdbEndpoint",
            "https://opentsdb.gra1-ovh.metrics.ovh.net",
        ),
        crate::config::Protocol::Warp10 => {
            ("warpEndpoint", "https://warp10.gra1-ovh.metrics.ovh.net")
        }
    }
}

/// What to do when the variable `source.url` reads is not set: the two ways to give the
/// endpoint of `protocol`. Used by [`validate_source`].
pub(super) fn url_unset_hint(protocol: crate::config::Protocol) -> String {
    let (field, example) = token_endpoint(protocol);
    format!(
        "export it to your metrics endpoint, the {field} of your read token (e.g. {example}; \
         `vscope-etl token PIPELINE` prints it), or leave source.url out when [source.ovh] \
         user_id fetches the token, which comes with its endpoint"
    )
}

pub(super) fn duration_ms(key: &str, value: &str) -> Result<i64, ConfigError> {
    parse_duration(value).map_err(|e| invalid(key, e.to_string()))
}

/// A duration given on the command line (`--retain 7d`), checked under the flag's name; `0` is
/// allowed.
pub fn flag_duration_ms(flag: &str, value: &str) -> Result<i64, ConfigError> {
    parse_duration_or_zero(flag, value)
}

/// A byte size given on the command line (`--target-size 128MiB`), checked under the flag's name.
pub fn flag_byte_size(flag: &str, value: &str) -> Result<usize, ConfigError> {
    byte_size(flag, value)
}

/// Like [`duration_ms`] but also accepts `"0"` (OpenTSDB durations cannot be zero).
pub(super) fn parse_duration_or_zero(key: &str, value: &str) -> Result<i64, ConfigError> {
    if value.trim() == "0" {
        Ok(0)
    } else {
        duration_ms(key, value)
    }
}

/// Default `source.memory_limit`: what the answers of a run may hold at once. The program, the
/// files being written and the allocator's slack come on top (docs/operations.md, "Sizing a
/// pod": a 1,000-VM day peaks at 224-228 MB with this default).
pub const DEFAULT_MEMORY_LIMIT_BYTES: usize = 128 << 20;

/// Smallest `source.memory_limit`.
pub const MIN_MEMORY_LIMIT_BYTES: usize = 16 << 20;

/// Default `source.max_answer_size`: 64 MiB of JSON, about 2.7 M points.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 64 << 20;

/// Smallest byte size accepted (`source.max_answer_size`, and `sink.s3.part_size` with
/// `sink.s3.allow_small_parts`).
pub(super) const MIN_PART_SIZE: usize = 64 * 1024;

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
pub(super) fn part_size(value: &str, allow_small_parts: bool) -> Result<usize, ConfigError> {
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
pub(super) fn byte_size(key: &str, value: &str) -> Result<usize, ConfigError> {
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
pub(super) fn retry_budget(
    value: Option<&toml::Value>,
) -> Result<crate::config::RetryBudget, ConfigError> {
    use crate::config::RetryBudget;
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

pub(super) fn std_duration(key: &str, value: &str) -> Result<Duration, ConfigError> {
    Ok(Duration::from_millis(duration_ms(key, value)? as u64))
}
