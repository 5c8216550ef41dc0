//! Replay mode (`vscope-etl sim --replay DIR`): serves pre-rendered OpenTSDB answers (and,
//! when recorded, Warp 10's: `replay_warp.rs`) from a directory, so a benchmark measures the
//! ETL and not the simulator's query engine.
//!
//! The directory (written by `benches/gen_answers.py`) holds:
//! - `lookup/<metric>.json`: the body answered to `/api/search/lookup` for that metric;
//! - `query/<metric>/<datacenter>/<start_ms>-<end_ms>.json`: the body answered to an
//!   `/api/query` with that metric, a `literal_or` datacenter filter and that exact range (a
//!   JSON array of series, as OpenTSDB writes it).
//!
//! Answers are read from disk at each request (the page cache keeps them hot), so memory does
//! not grow with the dataset. A sub-query without a datacenter filter gets every datacenter's
//! series, and several sub-queries get their series concatenated, as OpenTSDB does. A request
//! that has no recorded answer is refused with a 400 that says which file is missing: replay
//! never invents data. It speaks the `opentsdb` dialect (JSON errors, `/api/version`), and
//! compresses like OpenTSDB's own server; OVH's Erlenmeyer, which answers plain, is
//! `sim --replay DIR --no-gzip`.
//!
//! Like the simulator, it answers gzip to requests that accept it, each API by its own
//! server's rules (`gzip.rs`; streamed in pieces, never compressed whole), unless started with
//! `gzip` off (`sim --replay DIR --no-gzip`), so a benchmark can measure the client with and
//! without decompression.
//!
//! With [`ReplayOptions::precompress`] (`sim --replay DIR --precompress`), every recorded answer
//! is compressed once, before the server listens, and an answer that is one recorded file goes
//! out as those stored bytes (as nginx's `gzip_static` serves a `.gz` file). A benchmark on one
//! machine needs it: compressing on the fly runs on the CPUs the client is measured on, while a
//! remote endpoint compresses on its own machines; with it, the link and the client are all that
//! is measured. The bytes are those of a one-piece compression at the same level (a few percent
//! smaller than the on-the-fly stream, which is flushed every 128 KiB).
//!
//! With a request budget per token (`sim --replay DIR --token-rate R`), `/api/query` (and
//! Warp 10's `/api/v0/fetch`, by its token header) answers
//! `429 Too Many Requests` (`Retry-After: 1`) to a token that asked more than R queries in the
//! last second (a token bucket of R per second, R deep, per `Authorization` header). OVH
//! documents no rate limit for the endpoint (shared/reference/api.md, "Limits"); this is the
//! limit a benchmark of sharded runs assumes, to show that N shards sharing one token are
//! bounded by its budget (`source.shard_rate`), not by the ETL.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde::Deserialize;
use tokio::net::TcpListener;

use super::error::ApiError;
use super::gzip::GzipRules;
use vscope_core::dialect::Dialect;

/// What a replay server serves from, shared by its handlers (`replay_warp.rs` too).
pub(crate) struct Replay {
    /// The directory of recorded answers.
    pub(crate) dir: PathBuf,
    /// Query budget per token and second (`--token-rate`), `None`: unlimited.
    budget: Option<TokenBudget>,
    /// Every recorded answer compressed ahead ([`ReplayOptions::precompress`]), by path.
    precompressed: Option<HashMap<PathBuf, Bytes>>,
}

impl Replay {
    /// The answer of the recorded file `path` (under [`Replay::dir`]) with `content_type`: its
    /// bytes compressed ahead when the server has them and the request accepts gzip (the gzip
    /// layer passes an encoded answer through), else the plain bytes, which the gzip layer, when
    /// on, compresses as it sends them. `None` when there is no such file (each caller says
    /// what a missing recording means); fails when the file cannot be read.
    pub(crate) async fn file_answer(
        &self,
        path: &Path,
        headers: &HeaderMap,
        content_type: &'static str,
    ) -> std::io::Result<Option<Response>> {
        if let Some(gz) = self.precompressed.as_ref().and_then(|m| m.get(path))
            && super::gzip::accepts_gzip(headers)
        {
            return Ok(Some(
                (
                    StatusCode::OK,
                    [
                        (header::CONTENT_TYPE, content_type),
                        (header::CONTENT_ENCODING, "gzip"),
                        (header::VARY, "Accept-Encoding"),
                    ],
                    gz.clone(),
                )
                    .into_response(),
            ));
        }
        let Some(bytes) = read_recorded(path).await? else {
            return Ok(None);
        };
        Ok(Some(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, content_type)],
                bytes,
            )
                .into_response(),
        ))
    }

    /// With a token budget (`--token-rate`), the `429 Too Many Requests` (`Retry-After: 1`)
    /// for a request whose token (its `Authorization` header, or Warp 10's token header) has
    /// no query left this second; `None` when it may go on.
    pub(crate) fn over_budget(&self, headers: &HeaderMap) -> Option<Response> {
        let budget = self.budget.as_ref()?;
        let token = [header::AUTHORIZATION.as_str(), super::warp10::TOKEN_HEADER]
            .iter()
            .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
            .unwrap_or("");
        if budget.take(token) {
            return None;
        }
        Some(
            (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                "Too Many Requests",
            )
                .into_response(),
        )
    }
}

/// How a replay server answers, besides what it serves.
#[derive(Default)]
pub struct ReplayOptions {
    /// Compress answers for requests that accept gzip, each API by the rules of the server
    /// that compresses it on the real service, as the simulator does (`gzip.rs`: OpenTSDB's
    /// own Netty for OpenTSDB, Warp 10's Jetty for `/api/v0/*`); off: plain answers, as
    /// Erlenmeyer (OVH's OpenTSDB endpoint) sends.
    pub gzip: bool,
    /// Compress every API's answers at this zlib level instead of its server's (`sim --replay
    /// --gzip-level N`: what a tighter or looser server gives).
    pub gzip_level: Option<u32>,
    /// Compress every recorded answer once, before listening, at the level it is served at, so
    /// that serving costs no compression on the machine the client is measured on (see the
    /// module doc). Ignored without `gzip`.
    pub precompress: bool,
    /// At most this many queries per second and token (the rest answered 429).
    pub token_rate: Option<f64>,
    /// Send the answers through this shaped link ([`super::link`]).
    pub link: Option<Arc<super::link::Link>>,
}

/// A token bucket per token: `rate` requests a second, at most `rate` at once.
struct TokenBudget {
    rate: f64,
    buckets: std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
    refused: std::sync::atomic::AtomicU64,
}

impl TokenBudget {
    /// Takes one request from `token`'s bucket; false when it is empty.
    fn take(&self, token: &str) -> bool {
        let now = std::time::Instant::now();
        let mut buckets = self.buckets.lock().expect("not poisoned");
        let (level, at) = buckets.entry(token.to_string()).or_insert((self.rate, now));
        *level = (*level + now.duration_since(*at).as_secs_f64() * self.rate).min(self.rate);
        *at = now;
        if *level >= 1.0 {
            *level -= 1.0;
            true
        } else {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            false
        }
    }
}

/// Serves the recorded answers of `dir` on `listener` until `shutdown` completes, answering as
/// `options` say ([`ReplayServer::open`], then [`ReplayServer::serve_until`]).
pub async fn serve_replay_until(
    dir: PathBuf,
    options: ReplayOptions,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    ReplayServer::open(dir, options)
        .await?
        .serve_until(listener, shutdown)
        .await
}

/// A replay server ready to serve: its directory checked and, with
/// [`ReplayOptions::precompress`], its answers compressed, so that the caller can announce its
/// address only once requests will be answered at once (`vscope-etl sim --replay`).
pub struct ReplayServer {
    replay: Arc<Replay>,
    gzip: Option<ReplayGzip>,
    link: Option<Arc<super::link::Link>>,
}

impl ReplayServer {
    /// Checks that `dir` holds recorded answers and prepares what `options` ask for; fails
    /// when `dir` has no `query/` folder or a recorded answer cannot be read.
    pub async fn open(dir: PathBuf, options: ReplayOptions) -> std::io::Result<ReplayServer> {
        let ReplayOptions {
            gzip,
            gzip_level,
            precompress,
            token_rate,
            link,
        } = options;
        let gzip = gzip.then(|| ReplayGzip::rules(gzip_level));
        if !dir.join("query").is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "{} has no query/ folder of recorded answers (see benches/gen_answers.py)",
                    dir.display()
                ),
            ));
        }
        let budget = token_rate.filter(|r| *r > 0.0).map(|rate| TokenBudget {
            rate,
            buckets: Default::default(),
            refused: Default::default(),
        });
        let precompressed = match gzip {
            Some(rules) if precompress => {
                let dir = dir.clone();
                Some(
                    tokio::task::spawn_blocking(move || compress_recorded(&dir, rules))
                        .await
                        .map_err(std::io::Error::other)??,
                )
            }
            _ => None,
        };
        let replay = Arc::new(Replay {
            dir,
            budget,
            precompressed,
        });
        Ok(ReplayServer { replay, gzip, link })
    }

    /// Serves on `listener` until `shutdown` completes; then says on stderr how many bytes
    /// went through the shaped link and how many queries the token budget refused.
    pub async fn serve_until(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let ReplayServer { replay, gzip, link } = self;
        let mut router = replay_router(Arc::clone(&replay), gzip);
        if let Some(link) = &link {
            // Outside gzip: the link carries the compressed bytes.
            router = super::link::layer(router, Arc::clone(link));
        }
        let served = axum::serve(super::no_delay(listener), router)
            .with_graceful_shutdown(shutdown)
            .await;
        if let Some(link) = &link {
            eprintln!("replay: {} body bytes through the shaped link", link.sent());
        }
        if let Some(b) = &replay.budget {
            eprintln!(
                "replay: {} quer(ies) refused with 429 (over {} per second and token)",
                b.refused.load(std::sync::atomic::Ordering::Relaxed),
                b.rate
            );
        }
        served
    }
}

/// The compression rules of each API a replay server serves.
#[derive(Clone, Copy)]
struct ReplayGzip {
    /// OpenTSDB's answers (`query/`, `lookup/`).
    opentsdb: GzipRules,
    /// Warp 10's answers (`fetch/`, `find/`).
    warp10: GzipRules,
}

impl ReplayGzip {
    /// Each API by its server's rules, at `level` instead of its server's when given.
    fn rules(level: Option<u32>) -> ReplayGzip {
        let at = |rules: GzipRules| level.map_or(rules, |l| rules.at_level(l));
        ReplayGzip {
            opentsdb: at(GzipRules::OPENTSDB),
            warp10: at(GzipRules::JETTY),
        }
    }
}

/// The router of a replay server: OpenTSDB's API and Warp 10's (`replay_warp.rs`), each
/// compressed by its own server's rules.
fn replay_router(replay: Arc<Replay>, gzip: Option<ReplayGzip>) -> Router {
    let opentsdb = Router::new()
        .route("/api/query", any(query))
        .route("/api/search/lookup", any(lookup))
        .route("/api/version", any(version))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "Endpoint not found").into_response(DIALECT)
        })
        .with_state(Arc::clone(&replay));
    let warp10 = Router::new()
        .route("/api/v0/fetch", any(super::replay_warp::fetch))
        .route("/api/v0/find", any(super::replay_warp::find))
        .with_state(replay);
    match gzip {
        Some(g) => {
            super::gzip::layer(opentsdb, g.opentsdb).merge(super::gzip::layer(warp10, g.warp10))
        }
        None => opentsdb.merge(warp10),
    }
}

const DIALECT: Dialect = Dialect::Opentsdb;

fn bad_request(message: impl Into<String>) -> Response {
    ApiError::bad_request(message).into_response(DIALECT)
}

/// The content type of OpenTSDB's answers.
const JSON: &str = "application/json; charset=UTF-8";

fn json(body: impl Into<Body>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, JSON)], body.into()).into_response()
}

async fn version() -> Response {
    json(r#"{"version":"2.4.1","short_revision":"replay","repo_status":"MODIFIED"}"#)
}

/// A name used as a path component: OpenTSDB's metric/tag charset only, so a request can never
/// reach outside the directory.
pub(crate) fn safe_component(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[derive(Deserialize)]
struct LookupBody {
    metric: String,
}

async fn lookup(State(r): State<Arc<Replay>>, body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<LookupBody>(&body) else {
        return bad_request("lookup body must be JSON with a \"metric\"");
    };
    if !safe_component(&req.metric) {
        return bad_request(format!("invalid metric name '{}'", req.metric));
    }
    match tokio::fs::read(r.dir.join("lookup").join(format!("{}.json", req.metric))).await {
        Ok(b) => json(b),
        Err(_) => bad_request(format!(
            "No such name for 'metrics': '{}' (no recorded lookup)",
            req.metric
        )),
    }
}

/// A time of the query body: OpenTSDB accepts integers or strings; replay keys need integers.
#[derive(Deserialize)]
#[serde(untagged)]
enum Time {
    Int(i64),
    Text(String),
}

impl Time {
    fn ms(&self) -> Option<i64> {
        match self {
            Time::Int(v) => Some(*v),
            Time::Text(s) => s.parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct QueryBody {
    start: Time,
    end: Option<Time>,
    queries: Vec<SubQuery>,
}

#[derive(Deserialize)]
struct SubQuery {
    metric: String,
    #[serde(default)]
    filters: Vec<Filter>,
}

#[derive(Deserialize)]
struct Filter {
    tagk: String,
    filter: String,
}

async fn query(State(r): State<Arc<Replay>>, headers: header::HeaderMap, body: Bytes) -> Response {
    if let Some(refused) = r.over_budget(&headers) {
        return refused;
    }
    let req: QueryBody = match serde_json::from_slice(&body) {
        Ok(q) => q,
        Err(e) => return bad_request(format!("invalid query body: {e}")),
    };
    let (Some(start), Some(end)) = (req.start.ms(), req.end.as_ref().and_then(Time::ms)) else {
        return bad_request("replay needs integer start and end times in ms");
    };
    let file = format!("{start}-{end}.json");
    // (the file, its metric and datacenter, which the 400 of a missing one names)
    let mut paths = Vec::new();
    for q in &req.queries {
        if !safe_component(&q.metric) {
            return bad_request(format!("invalid metric name '{}'", q.metric));
        }
        let metric_dir = r.dir.join("query").join(&q.metric);
        let dcs: Vec<String> = match q.filters.iter().find(|f| f.tagk == "datacenter") {
            Some(f) => f.filter.split('|').map(str::to_string).collect(),
            None => match list_dirs(&metric_dir).await {
                Ok(d) => d,
                Err(_) => return bad_request(format!("no recorded answers for '{}'", q.metric)),
            },
        };
        for dc in dcs {
            if !safe_component(&dc) {
                return bad_request(format!("invalid datacenter '{dc}'"));
            }
            paths.push((metric_dir.join(&dc).join(&file), q.metric.as_str(), dc));
        }
    }
    let missing = |(path, metric, dc): &(PathBuf, &str, String)| {
        bad_request(format!(
            "no recorded answer for metric '{metric}', datacenter '{dc}', range {start}..{end} ({})",
            relative(&r.dir, path)
        ))
    };
    // One recorded file is the answer as it is (gen_answers.py writes `[...]`, nothing
    // around): sent as stored, or as compressed ahead.
    if let [one] = paths.as_slice() {
        return match r.file_answer(&one.0, &headers, JSON).await {
            Ok(Some(resp)) => resp,
            Ok(None) => missing(one),
            Err(e) => internal_error(format!("{}: {e}", relative(&r.dir, &one.0))),
        };
    }
    let mut out: Vec<u8> = Vec::new();
    for p in &paths {
        let appended = match read_recorded(&p.0).await {
            Ok(Some(bytes)) => append_series(&mut out, &bytes),
            Ok(None) => return missing(p),
            Err(e) => Err(format!("{}: {e}", relative(&r.dir, &p.0))),
        };
        if let Err(e) = appended {
            return internal_error(e);
        }
    }
    if out.is_empty() {
        out.push(b'[');
    }
    out.push(b']');
    json(out)
}

/// The bytes of the recorded file `path`, `None` when there is none.
async fn read_recorded(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    match tokio::fs::read(path).await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn internal_error(message: String) -> Response {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message).into_response(DIALECT)
}

/// Every file under `dir`'s `query/` and `fetch/` (the recorded answers) its API's server
/// would compress, compressed as one gzip member at the level that API is served at, by path;
/// on all CPUs, once, before the server listens. A file below the server's minimum length is
/// left out: it is sent plain, as the server sends it.
fn compress_recorded(dir: &Path, gzip: ReplayGzip) -> std::io::Result<HashMap<PathBuf, Bytes>> {
    let mut files = Vec::new();
    for (top, rules) in [("query", gzip.opentsdb), ("fetch", gzip.warp10)] {
        let mut found = Vec::new();
        collect_files(&dir.join(top), &mut found)?;
        files.extend(found.into_iter().map(|f| (f, rules)));
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let compress = |path: &PathBuf, rules: &GzipRules| -> std::io::Result<Option<Bytes>> {
        let plain = std::fs::read(path)?;
        if (plain.len() as u64) < rules.min_length {
            return Ok(None);
        }
        let mut gz = flate2::write::GzEncoder::new(
            Vec::with_capacity(plain.len() / 3),
            flate2::Compression::new(rules.level),
        );
        gz.write_all(&plain)?;
        Ok(Some(Bytes::from(gz.finish()?)))
    };
    let parts: Vec<std::io::Result<Vec<(PathBuf, Bytes)>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some((path, rules)) = files.get(i) else {
                            return Ok(done);
                        };
                        if let Some(gz) = compress(path, rules)? {
                            done.push((path.clone(), gz));
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a compression thread panicked"))
            .collect()
    });
    let mut out = HashMap::with_capacity(files.len());
    for part in parts {
        out.extend(part?);
    }
    Ok(out)
}

/// The files under `dir`, recursively (none when `dir` does not exist).
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            collect_files(&entry.path(), out)?;
        } else {
            out.push(entry.path());
        }
    }
    Ok(())
}

/// Appends the elements of the JSON array `answer` to the array being built in `out` (opened
/// with `[` on the first element, closed by the caller), without re-encoding them.
fn append_series(out: &mut Vec<u8>, answer: &[u8]) -> Result<(), String> {
    let trimmed = answer.trim_ascii();
    let inner = trimmed
        .strip_prefix(b"[")
        .and_then(|s| s.strip_suffix(b"]"))
        .ok_or("a recorded answer is not a JSON array")?
        .trim_ascii();
    if inner.is_empty() {
        return Ok(());
    }
    out.push(if out.is_empty() { b'[' } else { b',' });
    out.extend_from_slice(inner);
    Ok(())
}

async fn list_dirs(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut rd = tokio::fs::read_dir(dir).await?;
    let mut names = Vec::new();
    while let Some(e) = rd.next_entry().await? {
        if e.file_type().await?.is_dir() {
            names.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn relative(base: &Path, path: &Path) -> String {
    path.strip_prefix(base)
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_series_joins_arrays_without_reencoding() {
        let mut out = Vec::new();
        append_series(&mut out, b" [] ").unwrap();
        assert!(out.is_empty());
        append_series(&mut out, br#"[{"a":1}]"#).unwrap();
        append_series(&mut out, br#"[{"b":2},{"c":3}]"#).unwrap();
        out.push(b']');
        assert_eq!(out, br#"[{"a":1},{"b":2},{"c":3}]"#);
        assert!(append_series(&mut out, b"{}").is_err());
    }

    #[test]
    fn path_components_stay_inside_the_directory() {
        assert!(safe_component("vscope.vm.cpu.usage.perc"));
        assert!(safe_component("pcc-1_datacenter3"));
        for bad in ["", ".", "..", "../x", "a/b", "a b"] {
            assert!(!safe_component(bad), "{bad}");
        }
    }
}
