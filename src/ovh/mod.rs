//! OVHcloud API v6 (`reference/api.md` §3): the live inventory of a PCC and the vScope metrics
//! token, configured by `[source.ovh]`.
//!
//! - [`sign`]: the `$1$` SHA-1 request signature and the region endpoints.
//! - [`client`]: the signed client (server time offset, retries, errors that name the missing
//!   right).
//! - [`model`]: the `dedicatedCloud` objects read.
//! - [`inventory`]: datacenters, filers, hosts and VMs of a PCC; the label combinations they
//!   imply and the reconciliation with the series a run received.
//! - [`snapshot`]: the inventory as the `filers`, `hosts` and `vms` snapshot tables.
//!
//! The functions here are what the `inventory` and `token` commands and the run call.

pub mod client;
pub mod inventory;
pub mod snapshot;

// The object model and the signature are shared with the simulator (crates/core).
pub use vscope_core::ovh::{model, sign};

pub use crate::config::Credentials;
pub use client::{ClientSettings, OvhClient, OvhError};
pub use inventory::{Inventory, InventoryReport};

/// API v6 calls in flight at most (the inventory), whatever `source.concurrency` says: API v6 is
/// the account's API, shared with everything else the account runs, and an inventory is a few
/// hundred small calls.
pub const API_V6_MAX_IN_FLIGHT: usize = 8;

use crate::config::{OvhEndpoint, OvhSpec, Source};
use model::MetricsToken;

/// Builds the API v6 client of `spec` with the timeouts and retry settings of `source`.
/// `sim_base` is the base URL of the in-process simulator (`http://127.0.0.1:PORT`), used when
/// the endpoint is [`OvhEndpoint::Sim`].
pub fn build_client(
    source: &Source,
    spec: &OvhSpec,
    sim_base: Option<&str>,
) -> std::result::Result<OvhClient, OvhError> {
    let base = match &spec.endpoint {
        OvhEndpoint::Url(u) => u.clone(),
        OvhEndpoint::Sim => {
            let text = format!("{}/1.0", sim_base.unwrap_or("http://127.0.0.1:0"));
            url::Url::parse(&text).map_err(|e| OvhError::Transport {
                method: "-",
                endpoint: "client",
                message: format!("simulator URL {text}: {e}"),
            })?
        }
    };
    OvhClient::new(
        base,
        spec.credentials.clone(),
        &ClientSettings {
            timeout: source.timeout,
            connect_timeout: source.connect_timeout,
            max_attempts: source.max_attempts,
            requests_per_second: source.requests_per_second,
            gzip: source.gzip,
            max_answer_bytes: source.max_answer_bytes,
        },
    )
    .map(|c| {
        c.with_limits(std::sync::Arc::new(crate::extract::retry::RunLimits::new(
            source.retry_budget,
            source.deadline,
        )))
    })
}

/// The vScope read token of PCC user `user_id` (`POST .../user/{userId}/metricsToken`); with no
/// user id, of the user named `admin` (as the third-party vScope UI does). Returns the user id
/// used. A 404 on the POST means the call may have been withdrawn from the public API:
/// [`OvhError::MetricsTokenUnavailable`] says so and tells the user to set `source.token`.
pub async fn metrics_token(
    client: &OvhClient,
    service_name: &str,
    user_id: Option<i64>,
) -> std::result::Result<(i64, MetricsToken), OvhError> {
    let user_id = match user_id {
        Some(id) => id,
        None => {
            let ids: Vec<i64> = client
                .get(
                    "/dedicatedCloud/{serviceName}/user",
                    &format!("/dedicatedCloud/{service_name}/user?name=admin"),
                )
                .await?;
            *ids.first().ok_or_else(|| OvhError::NoUser {
                service_name: service_name.to_string(),
            })?
        }
    };
    let token = client
        .post(
            "/dedicatedCloud/{serviceName}/user/{userId}/metricsToken",
            &format!("/dedicatedCloud/{service_name}/user/{user_id}/metricsToken"),
            None,
        )
        .await
        .map_err(|e| {
            if e.is_not_found() {
                OvhError::MetricsTokenUnavailable {
                    service_name: service_name.to_string(),
                    user_id,
                }
            } else {
                e
            }
        })?;
    Ok((user_id, token))
}

/// The metrics endpoint to use once `token` is fetched: `configured` (`source.url`) when the
/// pipeline gives one, with a warning when the token names another host (the user's choice is
/// kept: a proxy or a regional alias may be on purpose); otherwise the token's
/// `opentsdbEndpoint`, which must then be an `http(s)` URL without credentials.
pub fn metrics_endpoint(
    configured: Option<&url::Url>,
    token: &MetricsToken,
) -> std::result::Result<url::Url, OvhError> {
    let from_token = url::Url::parse(&token.opentsdb_endpoint);
    match configured {
        Some(base) => {
            let same_host = from_token
                .as_ref()
                .is_ok_and(|u| u.host_str() == base.host_str());
            if !same_host {
                tracing::warn!(source_url = %base, opentsdb_endpoint = %token.opentsdb_endpoint,
                    "the token is for another OpenTSDB endpoint than source.url; using source.url");
            }
            Ok(base.clone())
        }
        None => {
            let bad = |message: String| OvhError::BadEndpoint { message };
            let url = from_token.map_err(|e| bad(format!("'{}': {e}", token.opentsdb_endpoint)))?;
            if !url.username().is_empty() || url.password().is_some() {
                return Err(bad("it carries credentials".into()));
            }
            if !matches!(url.scheme(), "http" | "https") {
                return Err(bad(format!(
                    "'{}': scheme '{}' is not http or https",
                    token.opentsdb_endpoint,
                    url.scheme()
                )));
            }
            Ok(url)
        }
    }
}

/// Shell `export` lines for a token answer, values single-quoted (a `'` inside becomes `'\''`),
/// for `eval "$(vscope-etl token PIPELINE --export)"`.
pub fn export_lines(token: &MetricsToken) -> String {
    let q = |v: &str| format!("'{}'", v.replace('\'', "'\\''"));
    format!(
        "export VSCOPE_METRICS_TOKEN={}\nexport VSCOPE_OPENTSDB_ENDPOINT={}\nexport VSCOPE_WARP_ENDPOINT={}\n",
        q(token.token.expose()),
        q(&token.opentsdb_endpoint),
        q(&token.warp_endpoint)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(endpoint: &str) -> MetricsToken {
        serde_json::from_value(serde_json::json!({
            "token": "t",
            "opentsdbEndpoint": endpoint,
            "warpEndpoint": "https://w",
        }))
        .unwrap()
    }

    #[test]
    fn the_token_endpoint_is_the_default_and_source_url_wins() {
        let ovh = "https://opentsdb.gra1-ovh.metrics.ovh.net";
        assert_eq!(
            metrics_endpoint(None, &token(ovh)).unwrap().as_str(),
            "https://opentsdb.gra1-ovh.metrics.ovh.net/"
        );
        let mine = url::Url::parse("https://proxy.example:8443").unwrap();
        assert_eq!(metrics_endpoint(Some(&mine), &token(ovh)).unwrap(), mine);
        assert_eq!(metrics_endpoint(Some(&mine), &token("junk")).unwrap(), mine);
        for bad in [
            "",
            "opentsdb.gra1-ovh.metrics.ovh.net",
            "ftp://o",
            "https://u:p@o",
        ] {
            let err = metrics_endpoint(None, &token(bad)).unwrap_err();
            assert!(
                matches!(err, OvhError::BadEndpoint { .. })
                    && err.to_string().contains("source.url"),
                "{bad}: {err}"
            );
            assert!(!err.to_string().contains("u:p@"), "{err}");
        }
    }

    #[test]
    fn export_lines_quote_for_the_shell() {
        let t: MetricsToken = serde_json::from_str(
            r#"{"token":"a'b c","opentsdbEndpoint":"https://o","warpEndpoint":"https://w"}"#,
        )
        .unwrap();
        assert_eq!(
            export_lines(&t),
            "export VSCOPE_METRICS_TOKEN='a'\\''b c'\nexport VSCOPE_OPENTSDB_ENDPOINT='https://o'\nexport VSCOPE_WARP_ENDPOINT='https://w'\n"
        );
    }
}
