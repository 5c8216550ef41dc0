//! The Warp 10 protocol (`source.protocol = "warp10"`): the same raw points and series
//! discovery as `/api/query` and `/api/search/lookup`, read from Warp 10's own HTTP API behind
//! OVH's OpenTSDB layer (Erlenmeyer), with the same read token.
//!
//! # Why `/api/v0/fetch` rather than WarpScript on `/api/v0/exec`
//! - It streams: `EgressFetchHandler` writes each series as the store decodes it, while
//!   `/api/v0/exec` builds the whole stack first and writes it at the end (`EgressExecHandler`),
//!   so the server holds the answer and the client waits for all of it.
//! - It has no fetch limit: WarpScript's `FETCH` stops at `warpscript.maxfetch` (Erlenmeyer
//!   raises it to 20 000 000 with `LIMIT`), the fetch endpoint has no such cap in the public
//!   sources; answers are bounded on our side by `source.max_answer_size` and split as on the
//!   OpenTSDB path. A deployment that does answer `exceeded limit` (a 500 whose text says so)
//!   is split too ([`FailureClass::TooLarge`](super::retry::FailureClass)).
//! - Its text format is a line per point, decoded in place ([`GtsTextStream`]) with no JSON
//!   tree, and the token travels in the `X-Warp10-Token` header, never in a script or a URL.
//!
//! Measured on the simulator (`benches/protocols.sh`, one unit of 310 k points): the same bytes
//! either way (25.9 and 24.9 per point plain, 5.4 and 5.3 gzip), the first byte after 0.007 s
//! from fetch against 0.060 s from exec.
//!
//! # The range
//! `now` and `timespan` in microseconds keep `now - timespan < ts <= now` (`FETCH.computeTimeRange`:
//! `startTs = endTs - timespan + 1`). Our windows are `[start, end)` in milliseconds, so we ask
//! `now = end*1000 - 1` and `timespan = (end - start)*1000`: exactly `[start*1000, end*1000 - 1]`
//! µs, the window, with no bound to adjust per server release (unlike Erlenmeyer's ISO dates,
//! `crates/sim/src/warp.rs`).
//!
//! # Errors
//! Warp refuses a token with `403` (`Tokens.extractReadToken`: `Invalid token.`), a bad request
//! with `400`, both before any byte of the answer; a failure after the answer started ends the
//! body, with a `# ERROR:` line since we set `showerrors` ([`GtsTextStream`] fails the answer on
//! it, and it is retried like a cut body). Known limit: a proxy answering `200` with an empty
//! body looks like a selection without points, which Warp also answers with an empty body.

use super::client::{MetricsClient, RawAnswer, ReadAnswer, whole};
use super::decode::DecodeError;
use super::error::FetchError;
use super::gts_text::{GtsTextStream, encode_selector_part};
use super::series_group::SeriesGroup;
use std::collections::BTreeMap;

/// The header Warp 10 reads the token from (`Constants.HTTP_HEADER_TOKEN_DEFAULT`).
const TOKEN_HEADER: &str = "X-Warp10-Token";

/// `class{label=value,label~regex}` for `metric`, one datacenter and one group of series:
/// exact values with `=`, the group's anchored expressions with `~` (matched whole by Warp, as
/// they are written), every part percent-encoded.
pub fn selector(metric: &str, datacenter: Option<&str>, group: Option<&SeriesGroup>) -> String {
    let mut labels = Vec::new();
    if let Some(dc) = datacenter {
        labels.push(format!("datacenter={}", encode_selector_part(dc)));
    }
    for (label, regex) in group.map(SeriesGroup::filters).unwrap_or_default() {
        labels.push(format!(
            "{}~{}",
            encode_selector_part(&label),
            encode_selector_part(&regex)
        ));
    }
    format!("{}{{{}}}", encode_selector_part(metric), labels.join(","))
}

impl MetricsClient {
    /// An authenticated `GET` of Warp 10's `path` with `params` (the token in its header).
    fn warp_get(&self, path: &str, params: &[(&str, String)]) -> reqwest::RequestBuilder {
        let mut url = self.url(path);
        url.query_pairs_mut()
            .extend_pairs(params.iter().map(|(k, v)| (*k, v.as_str())));
        let rb = self.http.get(url);
        if self.token.is_empty() {
            return rb;
        }
        match reqwest::header::HeaderValue::from_str(self.token.expose()) {
            Ok(mut v) => {
                v.set_sensitive(true);
                rb.header(TOKEN_HEADER, v)
            }
            // A token that cannot be a header value cannot be a Warp token either; sent
            // without it, the server refuses the request as it would refuse the token.
            Err(_) => rb,
        }
    }

    /// Raw points of `metric` (one datacenter, one group of series when given) with
    /// `start_ms <= ts < end_ms`, from `/api/v0/fetch` (module docs).
    pub(super) async fn warp_fetch(
        &self,
        metric: &str,
        datacenter: Option<&str>,
        group: Option<&SeriesGroup>,
        start_ms: i64,
        end_ms: i64,
    ) -> Result<RawAnswer, FetchError> {
        let now_us = end_ms.saturating_mul(1000).saturating_sub(1);
        let span_us = end_ms.saturating_sub(start_ms).saturating_mul(1000);
        let params = [
            ("selector", selector(metric, datacenter, group)),
            ("now", now_us.to_string()),
            ("timespan", span_us.to_string()),
            ("format", "text".to_string()),
            ("showerrors", "true".to_string()),
        ];
        self.send_with_retry(
            "/api/v0/fetch",
            || self.warp_get("/api/v0/fetch", &params),
            || GtsText(GtsTextStream::new(start_ms, end_ms, metric)),
        )
        .await
    }

    /// The label sets of every series of `metric`, from `/api/v0/find` (one line per series,
    /// `class{labels}{attributes}`).
    pub(super) async fn warp_find(
        &self,
        metric: &str,
    ) -> Result<Vec<BTreeMap<String, String>>, FetchError> {
        let params = [("selector", selector(metric, None, None))];
        let wanted = metric.to_string();
        self.send_with_retry(
            "/api/v0/find",
            || self.warp_get("/api/v0/find", &params),
            whole(|bytes| {
                parse_find(bytes).map_err(|message| FetchError::Decode {
                    endpoint: "/api/v0/find",
                    source: DecodeError::Malformed {
                        message,
                        snippet: String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
                            .into_owned(),
                    },
                })
            }),
        )
        .await
        .map(|found| {
            found
                .into_iter()
                .filter(|(class, _)| *class == wanted)
                .map(|(_, labels)| labels)
                .collect()
        })
    }
}

/// A series as `/api/v0/find` names it: its class and its labels.
type Found = (String, BTreeMap<String, String>);

/// The `(class, labels)` of each line of a find answer.
fn parse_find(bytes: &[u8]) -> Result<Vec<Found>, String> {
    let mut out = Vec::new();
    for (n, line) in bytes.split(|&c| c == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        if line.starts_with(b"# ERROR") {
            return Err(format!("line {}: Warp 10 reported an error", n + 1));
        }
        // The labels end at the first `}` (names are percent-encoded); the attributes that
        // follow are not the series' identity.
        let labels_end = line.iter().position(|&c| c == b'}');
        let parsed = labels_end.and_then(|end| super::gts_text::parse_name(&line[..=end]));
        let (class, labels) =
            parsed.ok_or_else(|| format!("line {}: not class{{labels}}{{attributes}}", n + 1))?;
        out.push((class, labels));
    }
    Ok(out)
}

/// `/api/v0/fetch` answers, decoded line by line as the body streams in.
struct GtsText(GtsTextStream);

impl ReadAnswer for GtsText {
    type Output = RawAnswer;

    fn push(&mut self, decoded: &[u8]) -> Result<(), FetchError> {
        self.0.push(decoded).map_err(fetch_decode_error)
    }

    fn finish(self) -> Result<RawAnswer, FetchError> {
        let (series, stats) = self.0.finish().map_err(fetch_decode_error)?;
        Ok(RawAnswer { series, stats })
    }
}

fn fetch_decode_error(source: DecodeError) -> FetchError {
    FetchError::Decode {
        endpoint: "/api/v0/fetch",
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_name_the_class_the_datacenter_and_the_group() {
        assert_eq!(selector("vscope.vm.cpu", None, None), "vscope.vm.cpu{}");
        assert_eq!(
            selector("vscope.vm.cpu", Some("pcc-1_datacenter869"), None),
            "vscope.vm.cpu{datacenter=pcc-1_datacenter869}"
        );
        let g = SeriesGroup::all(&["vm".to_string()]);
        assert_eq!(
            selector("m", Some("dc 1"), Some(&g)),
            "m{datacenter=dc%201}"
        );
    }

    #[test]
    fn find_lines_give_the_labels_of_each_series() {
        let body = b"m{datacenter=dc%201,vm=a}{}\nm{vm=b}{owner=x}\r\n\nother{vm=c}{}\n";
        let found = parse_find(body).unwrap();
        assert_eq!(found.len(), 3);
        assert_eq!(found[0].1["datacenter"], "dc 1");
        assert_eq!(found[1].1.len(), 1);
        assert_eq!(found[2].0, "other");
        assert!(parse_find(b"m{vm=a\n").is_err());
        assert!(parse_find(b"# ERROR: x\n").is_err());
    }
}
