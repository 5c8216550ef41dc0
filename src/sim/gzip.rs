//! gzip on the simulator's and the replay server's answers, the way nginx's gzip module does
//! it in front of the real endpoint: when the request says `Accept-Encoding: gzip`, answers
//! with status 200, 403 or 404 whose length is unknown or at least 20 bytes (nginx's
//! `gzip_min_length`) go out with `Content-Encoding: gzip`, chunked (no `Content-Length`),
//! compressed about as tightly as nginx's default `gzip_comp_level 1` with zlib ([`LEVEL`]).
//! Other answers (5xx, 401, 429, tiny bodies) stay plain, as nginx leaves them.
//!
//! The layer sits outside the fault injection (`faults.rs`): faults shape the plain answer and
//! the layer compresses whatever they produce, so a `cut` body is a compressed stream that stops
//! mid-way (then the connection is reset), and a `stall` pauses between two compressed pieces.
//!
//! Streamed answers stay streamed: each chunk of the inner body is compressed as it comes, in
//! pieces of at most [`PIECE_BYTES`], each ended by a sync flush so that the client can decode
//! it at once. No answer is ever held whole.

use std::io::Write;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use futures::{Stream, StreamExt};

/// Largest piece of plain input compressed at once (and flushed): bounds the time one poll
/// spends compressing (a replayed answer is one chunk of up to hundreds of MB), and is above
/// the simulator's own 64 KiB chunks so that each of them is one piece.
const PIECE_BYTES: usize = 128 << 10;

/// The compression level. Not 1: flate2's zlib-rs backend runs level 1 as zlib-ng's
/// `deflate_quick` (static Huffman codes), whose output is a third larger than nginx's (zlib's)
/// level 1 on our JSON (272 KB against 204 KB for a day of one metric, 754 KB of JSON); its
/// level 2 is zlib's `deflate_fast`, within 4 % of nginx's (196 KB). Level 6 would give 175 KB.
const LEVEL: u32 = 2;

/// Answers shorter than this are not compressed (nginx's default `gzip_min_length`).
const MIN_LENGTH: u64 = 20;

/// Wraps `router` so that its answers are compressed for requests that accept gzip.
pub(crate) fn layer<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router.layer(middleware::from_fn(gzip_answers))
}

/// True when `Accept-Encoding` lists `gzip` (or `x-gzip`) with a non-zero quality.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let name = parts.next().unwrap_or("").trim();
            let quality = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .map(|q| q.trim().parse::<f32>().unwrap_or(0.0))
                .next()
                .unwrap_or(1.0);
            (name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip"))
                && quality > 0.0
        })
}

/// The middleware: runs the request, then compresses the answer when nginx would.
async fn gzip_answers(req: Request, next: Next) -> Response {
    let accepts = accepts_gzip(req.headers());
    let resp = next.run(req).await;
    if !accepts || !compressible(&resp) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts
        .headers
        .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    Response::from_parts(
        parts,
        Body::from_stream(gzip_stream(body.into_data_stream())),
    )
}

/// nginx's conditions: status 200, 403 or 404, not encoded already, not known to be shorter
/// than [`MIN_LENGTH`].
fn compressible(resp: &Response) -> bool {
    let length = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .or_else(|| resp.body().size_hint().exact());
    matches!(
        resp.status(),
        StatusCode::OK | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
    ) && !resp.headers().contains_key(header::CONTENT_ENCODING)
        && length.is_none_or(|n| n >= MIN_LENGTH)
}

/// What [`gzip_stream`] carries from one piece to the next.
struct Compressing<S> {
    inner: S,
    /// `None` once the stream has ended (finished or failed).
    encoder: Option<GzEncoder<Vec<u8>>>,
    /// Plain input of the current chunk not compressed yet.
    pending: Bytes,
}

/// The gzip stream of the plain chunks of `inner`: one compressed piece per at most
/// [`PIECE_BYTES`] of input, each sync-flushed; the member's trailer after the last chunk. An
/// error of `inner` (a `cut` fault) is passed on at once, without a trailer.
fn gzip_stream<S>(inner: S) -> impl Stream<Item = Result<Bytes, axum::Error>> + Send
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Send + Unpin,
{
    let state = Compressing {
        inner,
        encoder: Some(GzEncoder::new(Vec::new(), Compression::new(LEVEL))),
        pending: Bytes::new(),
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            let encoder = st.encoder.as_mut()?;
            if !st.pending.is_empty() {
                let piece = st.pending.split_to(st.pending.len().min(PIECE_BYTES));
                if let Err(e) = encoder.write_all(&piece).and_then(|()| encoder.flush()) {
                    st.encoder = None;
                    return Some((Err(axum::Error::new(e)), st));
                }
                let out = std::mem::take(encoder.get_mut());
                if out.is_empty() {
                    continue;
                }
                return Some((Ok(Bytes::from(out)), st));
            }
            match st.inner.next().await {
                Some(Ok(chunk)) => st.pending = chunk,
                Some(Err(e)) => {
                    st.encoder = None;
                    return Some((Err(e), st));
                }
                None => {
                    let mut encoder = st.encoder.take()?;
                    let item = match encoder.try_finish() {
                        Ok(()) => Ok(Bytes::from(std::mem::take(encoder.get_mut()))),
                        Err(e) => Err(axum::Error::new(e)),
                    };
                    return Some((item, st));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::body::{BodyDecoder, Encoding};

    fn headers(accept: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_str(accept).unwrap(),
        );
        h
    }

    #[test]
    fn accept_encoding_is_read_with_its_qualities() {
        assert!(accepts_gzip(&headers("gzip")));
        assert!(accepts_gzip(&headers("br, GZIP;q=0.5")));
        assert!(accepts_gzip(&headers("x-gzip")));
        assert!(!accepts_gzip(&headers("gzip;q=0")));
        assert!(!accepts_gzip(&headers("identity")));
        assert!(!accepts_gzip(&headers("br, deflate")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    /// Chunks of a plain stream come out as one sync-flushed gzip member per the whole stream,
    /// decodable piece by piece, and equal to the input once decoded; a large chunk is cut into
    /// pieces of at most `PIECE_BYTES` of input.
    #[tokio::test]
    async fn streamed_chunks_become_one_gzip_member_decodable_as_it_comes() {
        let text: Vec<u8> = (0..400_000u32)
            .flat_map(|i| format!("\"{}\":{}.5,", 1_793_491_200 + i * 60, i % 97).into_bytes())
            .collect();
        let chunks: Vec<Result<Bytes, axum::Error>> = vec![
            Ok(Bytes::copy_from_slice(&text[..1000])),
            Ok(Bytes::copy_from_slice(&text[1000..])),
        ];
        let pieces: Vec<Bytes> = gzip_stream(futures::stream::iter(chunks))
            .map(|r| r.unwrap())
            .collect()
            .await;
        // 1 piece for the first chunk, ceil(rest / PIECE_BYTES) for the second, the trailer.
        let expected = 1 + (text.len() - 1000).div_ceil(PIECE_BYTES) + 1;
        assert_eq!(pieces.len(), expected);
        let mut decoder = BodyDecoder::new(Encoding::Gzip, usize::MAX - 1, None);
        let mut decoded_so_far = Vec::new();
        for p in &pieces[..pieces.len() - 1] {
            decoder.push(p).unwrap();
            // Each flushed piece decodes in full at once: the client is never kept waiting.
            decoded_so_far.push(decoder.decoded().len());
        }
        assert_eq!(decoded_so_far[0], 1000);
        decoder.push(pieces.last().unwrap()).unwrap();
        let wire = decoder.wire_bytes();
        let out = decoder.finish().unwrap();
        assert!(out == text, "round trip");
        assert!(
            wire * 3 < text.len() as u64,
            "{wire} compressed bytes for {}",
            text.len()
        );
    }

    /// Faults keep their meaning under gzip (the layer compresses what the fault plan
    /// produced): a `cut` answer is a gzip stream that stops mid-way, and the metrics client
    /// retries it, like an `html` or `empty` 200; a `stall` is only slower. Each run returns the
    /// same series as a healthy server, and the bytes of the failed attempt count on the wire.
    #[tokio::test]
    async fn faults_on_gzip_answers_stay_transient_for_the_client() {
        use crate::config::Source;
        use crate::dialect::Dialect;
        use crate::extract::MetricsClient;
        use std::sync::atomic::Ordering;
        let (start, end) = (1_793_491_200_000, 1_793_491_200_000 + 6 * 3_600_000);
        let metric = "vscope.vm.cpu.usage.perc";
        let pipeline = "name = \"t\"\n[source]\nurl = \"sim\"\n[scope]\nstart = \"2026-11-01T00:00:00Z\"\n\
             [[table]]\nname = \"vm_metrics\"\nmetrics = [\"vscope.vm.*\"]\n[sink]\nurl = \"/tmp/x\"\n";
        let mut source: Source = crate::config::parse(pipeline, "t.toml", &|_| None)
            .unwrap()
            .source;
        source.max_attempts = 3;
        let mut results = Vec::new();
        for (fault, retries) in [
            ("none", 0),
            ("cut", 1),
            ("html", 1),
            ("empty", 1),
            ("stall:200ms", 0),
        ] {
            let cfg = crate::sim::SimConfig {
                datacenters: 1,
                vms_per_datacenter: 3,
                // `cut` fails twice: once for the look at the raw answer below, once for the
                // client.
                faults: match fault {
                    "none" => Vec::new(),
                    "cut" => vec!["cut@first=2".parse().unwrap()],
                    f => vec![format!("{f}@first=1").parse().unwrap()],
                },
                ..crate::sim::SimConfig::default()
            };
            let sim = crate::sim::start(cfg, ([127, 0, 0, 1], 0).into())
                .await
                .unwrap();
            if fault == "cut" {
                // What the fault sends: a 200 announced as gzip whose stream stops mid-way.
                let resp = reqwest::Client::new()
                    .post(format!("{}/api/query", sim.base_url()))
                    .header(header::ACCEPT_ENCODING, "gzip")
                    .body(format!(
                        r#"{{"start":{start},"end":{end},"queries":[{{"metric":"{metric}","aggregator":"none"}}]}}"#
                    ))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                assert_eq!(resp.headers()[header::CONTENT_ENCODING], "gzip");
                assert!(resp.bytes().await.is_err(), "the body is cut short");
            }
            let client = MetricsClient::new(
                &source,
                url::Url::parse(&sim.base_url()).unwrap(),
                Dialect::Ovh,
            )
            .unwrap();
            let raw = client.query_raw(metric, None, start, end).await.unwrap();
            let stats = client.stats();
            assert_eq!(stats.retries.load(Ordering::Relaxed), retries, "{fault}");
            let wire = stats.bytes_on_wire.load(Ordering::Relaxed);
            let decoded = stats.bytes.load(Ordering::Relaxed);
            results.push((
                fault,
                wire,
                decoded,
                raw.series
                    .into_iter()
                    .map(|s| (s.tags, s.ts, s.values))
                    .collect::<Vec<_>>(),
            ));
            sim.shutdown().await;
        }
        let (_, clean_wire, clean_decoded, clean_series) = &results[0];
        assert!(clean_wire * 2 < *clean_decoded);
        for (fault, wire, decoded, series) in &results[1..] {
            assert!(series == clean_series, "{fault}: same series");
            // The HTML page was read whole, then refused by the JSON decoder.
            assert!(decoded >= clean_decoded, "{fault}: the answer taken");
            if *fault == "cut" || *fault == "html" {
                assert!(
                    wire > clean_wire,
                    "{fault}: the failed attempt counts on the wire"
                );
            }
        }
    }

    /// An error of the inner stream ends the gzip stream at once, after what was compressed.
    #[tokio::test]
    async fn an_inner_error_cuts_the_stream_without_a_trailer() {
        let chunks: Vec<Result<Bytes, axum::Error>> = vec![
            Ok(Bytes::from_static(b"[{\"metric\":\"m\",\"dps\":{")),
            Err(axum::Error::new(std::io::Error::other("cut"))),
        ];
        let items: Vec<Result<Bytes, axum::Error>> =
            gzip_stream(futures::stream::iter(chunks)).collect().await;
        assert_eq!(items.len(), 2);
        let mut decoder = BodyDecoder::new(Encoding::Gzip, 1 << 20, None);
        decoder.push(items[0].as_ref().unwrap()).unwrap();
        assert_eq!(decoder.decoded(), b"[{\"metric\":\"m\",\"dps\":{");
        assert!(items[1].is_err());
        assert!(decoder.finish().is_err(), "no trailer: a truncated stream");
    }
}
