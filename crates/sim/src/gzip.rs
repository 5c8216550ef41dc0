//! gzip on the simulator's and the replay server's answers, by the rules of the server that
//! compresses them ([`GzipRules`]): when the request says `Accept-Encoding: gzip`, answers of a
//! compressed status whose length is unknown or at least the server's minimum go out with
//! `Content-Encoding: gzip`, chunked (no `Content-Length`); the others stay plain.
//!
//! Which server compresses what, from the public sources:
//! - **OpenTSDB answers** (`/api/query`, `/api/search/lookup`, ...) depend on who serves them:
//!   - OpenTSDB itself (dialect `opentsdb`) gzips every answer: since 2.1 its HTTP pipeline ends
//!     with Netty 3's `HttpContentCompressor()` (OpenTSDB/opentsdb `src/tsd/PipelineFactory.java`,
//!     `pipeline.addLast("deflater", new HttpContentCompressor())`), whose default level is 6
//!     and which compresses every answer that has content but a `100 Continue`, whatever its
//!     status or length (netty `HttpContentEncoder.writeRequested`): [`GzipRules::OPENTSDB`].
//!   - Erlenmeyer, OVH's OpenTSDB proxy (dialect `ovh`), compresses nothing — its only gzip
//!     middleware *inflates request bodies* (ovh/erlenmeyer `cmd/root.go` registers
//!     `middlewares.Gzip()`, `middlewares/gzip.go` wraps a `Content-Encoding: gzip` request
//!     body in `gzip.NewReader`). Whether something in front of it compresses is not
//!     published, so the simulator serves what is sourced: plain answers
//!     ([`GzipRules::for_opentsdb_api`] is `None`).
//! - **OVHcloud API v6** (`/1.0/...`): not published either; the simulator assumes a default
//!   nginx ([`GzipRules::NGINX`]: statuses 200/403/404, `gzip_min_length 20`, `gzip_comp_level
//!   1`); the client reads plain and gzip answers alike.
//! - **Warp 10 answers** (`/api/v0/fetch`, `/api/v0/find`, `/api/v0/exec`): Warp 10 wraps
//!   each of these handlers in Jetty's `GzipHandler` (senx/warp10-platform `Egress.java`:
//!   `setMinGzipSize(23)`, `addIncludedMethods("POST")`), whose level is the JDK's
//!   `Deflater.DEFAULT_COMPRESSION`, zlib's 6 (Jetty's `jetty-gzip` module: "compressionLevel
//!   -1 for default"), and which compresses 2xx answers but 204 and 205 only
//!   (`GzipHttpOutputInterceptor.commit`): [`GzipRules::JETTY`].
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
use vscope_core::dialect::Dialect;

/// Largest piece of plain input compressed at once (and flushed): bounds the time one poll
/// spends compressing (a replayed answer is one chunk of up to hundreds of MB), and is above
/// the simulator's own 64 KiB chunks so that each of them is one piece.
const PIECE_BYTES: usize = 128 << 10;

/// The compression level of nginx's default `gzip_comp_level 1`. Not 1: flate2's zlib-rs
/// backend runs level 1 as zlib-ng's `deflate_quick` (static Huffman codes), whose output is a
/// third larger than nginx's (zlib's) level 1 on our JSON (272 KB against 204 KB for a day of
/// one metric, 754 KB of JSON); its level 2 is zlib's `deflate_fast`, within 4 % of nginx's
/// (196 KB). Level 6 would give 175 KB.
///
/// Used for API v6 only (assumed, see the module doc); `sim --replay DIR --gzip-level N`
/// serves the recorded answers at another level than their server's.
pub const NGINX_DEFAULT_LEVEL: u32 = 2;

/// Which answers a server compresses, and how tightly.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GzipRules {
    /// The zlib level (1-9) of flate2's zlib-rs backend that gives the server's output.
    pub(crate) level: u32,
    /// Answers known to be shorter than this stay plain.
    pub(crate) min_length: u64,
    /// The statuses whose answers are compressed.
    compresses: fn(StatusCode) -> bool,
}

impl GzipRules {
    /// A default nginx (`gzip on`): statuses 200, 403 and 404, `gzip_min_length 20`,
    /// `gzip_comp_level 1` ([`NGINX_DEFAULT_LEVEL`]). Assumed in front of API v6.
    pub(crate) const NGINX: GzipRules = GzipRules {
        level: NGINX_DEFAULT_LEVEL,
        min_length: 20,
        compresses: |s| {
            matches!(
                s,
                StatusCode::OK | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
            )
        },
    };

    /// OpenTSDB's own server, Netty 3's `HttpContentCompressor()`: level 6, every answer with
    /// content (one byte or more) but `100 Continue`.
    pub(crate) const OPENTSDB: GzipRules = GzipRules {
        level: 6,
        min_length: 1,
        compresses: |s| s != StatusCode::CONTINUE,
    };

    /// Warp 10's Jetty `GzipHandler`: 2xx but 204 and 205, at least 23 bytes, level 6.
    pub(crate) const JETTY: GzipRules = GzipRules {
        level: 6,
        min_length: 23,
        compresses: |s| {
            s.is_success() && s != StatusCode::NO_CONTENT && s != StatusCode::RESET_CONTENT
        },
    };

    /// The rules of the server that answers the OpenTSDB API in `dialect`: OpenTSDB's own
    /// ([`GzipRules::OPENTSDB`]), or none for Erlenmeyer (`ovh`), which answers plain.
    pub(crate) fn for_opentsdb_api(dialect: Dialect) -> Option<GzipRules> {
        match dialect {
            Dialect::Opentsdb => Some(GzipRules::OPENTSDB),
            Dialect::Ovh => None,
        }
    }

    /// These rules at another level (`sim --replay --gzip-level N`).
    pub(crate) fn at_level(self, level: u32) -> GzipRules {
        GzipRules { level, ..self }
    }
}

/// Wraps `router` so that its answers are compressed by `rules` for requests that accept gzip.
pub(crate) fn layer<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    rules: GzipRules,
) -> Router<S> {
    router.layer(middleware::from_fn(move |req: Request, next: Next| {
        gzip_answers(req, next, rules)
    }))
}

/// True when `Accept-Encoding` lists `gzip` (or `x-gzip`) with a non-zero quality.
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
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

/// The middleware: runs the request, then compresses the answer when the server would.
async fn gzip_answers(req: Request, next: Next, rules: GzipRules) -> Response {
    let accepts = accepts_gzip(req.headers());
    let resp = next.run(req).await;
    if !accepts || !compressible(&resp, &rules) {
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
        Body::from_stream(gzip_stream(body.into_data_stream(), rules.level)),
    )
}

/// The server's conditions: a status it compresses, not encoded already, not known to be
/// shorter than its minimum.
fn compressible(resp: &Response, rules: &GzipRules) -> bool {
    let length = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .or_else(|| resp.body().size_hint().exact());
    (rules.compresses)(resp.status())
        && !resp.headers().contains_key(header::CONTENT_ENCODING)
        && length.is_none_or(|n| n >= rules.min_length)
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
fn gzip_stream<S>(inner: S, level: u32) -> impl Stream<Item = Result<Bytes, axum::Error>> + Send
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Send + Unpin,
{
    let state = Compressing {
        inner,
        encoder: Some(GzEncoder::new(Vec::new(), Compression::new(level))),
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

    /// A client's streaming gzip decoder, as far as these tests need one: flate2's, flushed
    /// after every piece. (The client's own decoder is in the crate that depends on this one;
    /// its tests against the simulator's gzip answers are there, in `sim_client_tests`.)
    struct Inflater {
        out: flate2::write::GzDecoder<Vec<u8>>,
        wire: u64,
    }

    impl Inflater {
        fn new() -> Inflater {
            Inflater {
                out: flate2::write::GzDecoder::new(Vec::new()),
                wire: 0,
            }
        }

        /// Decodes `piece` as far as it goes.
        fn push(&mut self, piece: &[u8]) -> std::io::Result<()> {
            self.wire += piece.len() as u64;
            self.out.write_all(piece)?;
            self.out.flush()
        }

        /// What was decoded so far.
        fn decoded(&self) -> &[u8] {
            self.out.get_ref()
        }

        fn wire_bytes(&self) -> u64 {
            self.wire
        }

        /// The whole decoded body; an error when the stream has no trailer.
        fn finish(self) -> std::io::Result<Vec<u8>> {
            self.out.finish()
        }
    }

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
        let pieces: Vec<Bytes> = gzip_stream(futures::stream::iter(chunks), NGINX_DEFAULT_LEVEL)
            .map(|r| r.unwrap())
            .collect()
            .await;
        // 1 piece for the first chunk, ceil(rest / PIECE_BYTES) for the second, the trailer.
        let expected = 1 + (text.len() - 1000).div_ceil(PIECE_BYTES) + 1;
        assert_eq!(pieces.len(), expected);
        let mut decoder = Inflater::new();
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

    /// The level a replay server is given is the one it compresses at: level 6 is tighter
    /// than the nginx-like default on the answers' JSON, and decodes to the same text.
    #[tokio::test]
    async fn a_higher_level_compresses_tighter_to_the_same_text() {
        let text: Vec<u8> = (0..100_000u32)
            .flat_map(|i| {
                format!("\"{}\":{}.{},", 1_793_491_200 + i * 60, i % 97, i % 7).into_bytes()
            })
            .collect();
        let mut sizes = Vec::new();
        for level in [NGINX_DEFAULT_LEVEL, 6] {
            let chunks = vec![Ok::<_, axum::Error>(Bytes::copy_from_slice(&text))];
            let pieces: Vec<Bytes> = gzip_stream(futures::stream::iter(chunks), level)
                .map(|r| r.unwrap())
                .collect()
                .await;
            let mut decoder = Inflater::new();
            for p in &pieces {
                decoder.push(p).unwrap();
            }
            sizes.push(decoder.wire_bytes());
            assert!(
                decoder.finish().unwrap() == text,
                "level {level} round trip"
            );
        }
        assert!(
            sizes[1] < sizes[0],
            "level 6 {} vs default {}",
            sizes[1],
            sizes[0]
        );
    }

    /// An error of the inner stream ends the gzip stream at once, after what was compressed.
    #[tokio::test]
    async fn an_inner_error_cuts_the_stream_without_a_trailer() {
        let chunks: Vec<Result<Bytes, axum::Error>> = vec![
            Ok(Bytes::from_static(b"[{\"metric\":\"m\",\"dps\":{")),
            Err(axum::Error::new(std::io::Error::other("cut"))),
        ];
        let items: Vec<Result<Bytes, axum::Error>> =
            gzip_stream(futures::stream::iter(chunks), NGINX_DEFAULT_LEVEL)
                .collect()
                .await;
        assert_eq!(items.len(), 2);
        let mut decoder = Inflater::new();
        decoder.push(items[0].as_ref().unwrap()).unwrap();
        assert_eq!(decoder.decoded(), b"[{\"metric\":\"m\",\"dps\":{");
        assert!(items[1].is_err());
        assert!(decoder.finish().is_err(), "no trailer: a truncated stream");
    }
}
