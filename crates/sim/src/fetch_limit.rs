//! The answer to a query over the server's datapoint limit, in each dialect. Shared by the
//! query routes and the `fetch-limit` fault.

use axum::http::StatusCode;

use super::error::ApiError;
use super::warp::{ErrorMode, WarpError};
use vscope_core::dialect::Dialect;

/// The answer of each server to a sub-query over its datapoint limit, having counted `count`
/// points: OpenTSDB's 413 (`QueryRpc`, `reference/api.md` §1.10), or Warp 10's FETCH limit
/// error as Erlenmeyer relays it (a 500, [`WarpError::relay`]). Also the `fetch-limit` fault.
pub(crate) fn too_large(dialect: Dialect, errors: ErrorMode, limit: u64, count: u64) -> ApiError {
    match dialect {
        Dialect::Opentsdb => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Sorry, you have attempted to fetch more than our limit of {limit} data points. \
                 Please try filtering using more tags or decrease your time range."
            ),
        ),
        Dialect::Ovh => WarpError::fetch_limit(limit, count).relay(errors),
    }
}
