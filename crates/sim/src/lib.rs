//! vscope-sim: a deterministic simulator of the vScope history endpoints, for end-to-end tests
//! and the demo pipeline (`source.url = "sim"` runs it in-process on `127.0.0.1:0`;
//! `vscope-etl sim` runs it in the foreground).
//!
//! # Layout
//! Modules import downwards only (no cycle): `server` routes to the handlers, which read
//! `state`; `state` holds what the lower modules build.
//! - `server`: the router (`/api/*`, `/1.0`), authentication, the fault middleware.
//! - `state`: what every handler reads, built once per server, and the request counters.
//! - `error`: the per-dialect error answer; `fetch_limit`: the over-the-limit answer.
//! - `query`: `/api/query`: parsing, filters, the OpenTSDB and Erlenmeyer computations.
//! - `discovery`: `/api/search/lookup`, `/api/suggest`, the other metadata endpoints.
//! - `index`: the UIDs and name sets OpenTSDB would have built for the PCC.
//! - `warp`: Warp 10's fetch range, fetch limit and errors ([`ErrorMode`], [`FetchStart`]).
//! - `warp10`: Warp 10's own `/api/v0/fetch` and `/api/v0/find`, for `source.protocol = "warp10"`;
//!   `warp10_exec`: `/api/v0/exec` for the one `FETCH` script the benchmark compares with it.
//! - `ovh_time`: Erlenmeyer's time parser.
//! - `format`: numbers as OpenTSDB (Java) and Erlenmeyer (Go) print them.
//! - `model`: the synthetic PCC and its series ([`Pcc`]).
//! - `apiv6`: the OVHcloud API v6 subset, with signature and access-rule checks.
//! - `faults`: deterministic fault injection ([`FaultRule`]).
//! - `gzip`: gzip answers, by the rules of the server that compresses each API.
//! - `replay`: pre-rendered answers for benchmarks ([`serve_replay_until`]).
//! - `regex`: tag-filter regular expressions with Java's find and full-match semantics.
//!
//! # Why a crate of its own
//! The simulator is a server, the ETL a client: neither needs the other's code, only the rules
//! both follow (`vscope-core`: semantics, dialects, the API v6 model and signature). As its own
//! crate it cannot reach into the client by accident, so a test against it checks the
//! client against an independent implementation; and axum, a server framework, is built for it
//! alone. The tests that drive it through vscope-etl's clients are in the root crate
//! (`src/sim_client_tests/`).
//!
//! It serves a synthetic PCC ([`Pcc`]: datacenters, hosts with NICs, VMs, filers; every
//! catalogue metric) in one of two dialects ([`Dialect`]):
//!
//! - `opentsdb`: reference OpenTSDB 2.4.1 semantics (`reference/api.md` §1): JSON errors,
//!   `GET` and `POST /api/query`, `400 No such name` for an unknown metric, all eight filter
//!   types, integers printed as integers, `/api/version`.
//! - `ovh`: what the real vScope endpoint (Erlenmeyer over Warp 10, §2) does: text errors,
//!   `GET /api/query` → 501, Erlenmeyer's time parser, only three filter types (the others are
//!   silently ignored), `query.index` and group-by keys in every answer, Go float formatting,
//!   `200 []` for an unknown metric, lookup that ignores `limit`, no `/api/version`, the
//!   token checked by Warp 10 (a wrong token is a 500), and Warp 10's fetch range and errors,
//!   relayed as Warp's text or as the opaque `invalid character 'E' looking for beginning of
//!   value` of Erlenmeyer's public HEAD ([`ErrorMode`], `warp.rs`).
//!
//! # Endpoints
//! `/api/query`, `/api/search/lookup`, `/api/suggest`, `/api/aggregators`,
//! `/api/config/filters`, and `/api/version` (`opentsdb` only). `/api/query/last` is not
//! simulated. Warp 10's `/api/v0/fetch` and `/api/v0/find`, at the root and under `/warp10`
//! (`warp10.rs`), serve the same PCC to `source.protocol = "warp10"`, and `/api/v0/exec` runs
//! one `FETCH` script (`warp10_exec.rs`). [`serve_replay_until`] (`vscope-etl sim --replay DIR`) serves pre-rendered answers
//! instead, for benchmarks (`replay.rs`).
//!
//! The same server also serves the OVHcloud API v6 subset vscope-etl uses under `/1.0`
//! (`apiv6.rs`): `/auth/time`, the PCC, its datacenters, hosts, VMs, filers and users, and
//! `POST .../metricsToken`, from the same PCC as the metrics (so the labels match the objects),
//! with signature, timestamp and access-rule checks.
//!
//! # What `/api/query` computes
//! - `aggregator: "none"`: the stored points in range, one answer per series with its full
//!   tags: `[start, end]` in `opentsdb`; in `ovh` what Warp 10's FETCH keeps, `(start, end]` by
//!   default or `[start, end]` ([`FetchStart`]), with Erlenmeyer's second-precision times. In
//!   `opentsdb`, `rate` is applied per series (OpenTSDB's `RateSpan`, counter options
//!   included) and a `downsample` is applied per series, as 2.4.1 does; `ovh` ignores both with
//!   `none`, as Erlenmeyer does.
//! - Other aggregators and downsampling are computed with [`vscope_core::semantics`], so the
//!   simulator and the client cannot drift apart: in `opentsdb`, epoch-aligned buckets over the
//!   hour-widened scan bounds, fill policies (`"NaN"`, `null`), rate, then group-by with
//!   interpolation; in `ovh`, Erlenmeyer's end-aligned `BUCKETIZE` with its fill and
//!   interpolation (or its forced mean downsample when none is given), `REDUCE` tick by tick,
//!   then rate after the reduce.
//!
//! # Limits (said with a 400, never faked)
//! - `dropResets` in `ovh` (Warp 10's `RESETS`), TSUID queries,
//!   histogram percentiles and deletes are refused with a 400 that says the simulator does not
//!   implement them. `/api/query/last` is not simulated (404).
//! - `regexp` filters and Warp 10 `~re` selectors run on the regex crate (`regex.rs`), as Java's
//!   `find()` and `matches()`; what Java has and the regex crate lacks (look-around,
//!   back-references, possessive quantifiers, atomic groups, `\Q...\E`) is refused with a 400
//!   that names it.
//! - A sub-query may fetch at most [`SimConfig::max_fetch_points`] points (default 20 000 000,
//!   Erlenmeyer's `LIMIT`): Warp 10's fetch-limit 500 in `ovh`, OpenTSDB's 413 in `opentsdb`.
//!   The count is the stored points the FETCH selects, taken as the steps in range of each
//!   matched series (an upper bound: the ~0.5 % missing points are not subtracted), so it is
//!   a pure function of the query and shrinks with every series a filter removes.
//! - Known deviation: OpenTSDB aggregates integer data without downsample or rate in integer
//!   maths (truncating lerp and averages); the simulator computes and prints doubles there.
//!
//! # gzip
//! Answers are gzip-compressed (streamed, chunk by chunk) for requests that say
//! `Accept-Encoding: gzip`, unless [`SimConfig::gzip`] is off, each API by the rules of the
//! server that answers it (`gzip.rs`, with the sources): Warp 10's own Jetty for `/api/v0/*`
//! (level 6); OpenTSDB's own Netty for the OpenTSDB API in the `opentsdb` dialect (level 6,
//! every answer); nothing in the `ovh` dialect (Erlenmeyer answers plain); the nginx assumed in
//! front of API v6. The replay server compresses like OpenTSDB and Warp 10. Both answer with
//! `TCP_NODELAY`, as nginx, Netty and Jetty servers do (`no_delay`).
//!
//! # Fault injection
//! [`SimConfig::faults`] makes `/api/query` fail on purpose, deterministically: 429 with
//! `Retry-After` (seconds or HTTP-date), 5xx bursts, cut bodies, empty or HTML 200s, stalls,
//! fetch-limit errors, refused tokens and a seeded transient-failure rate. The rules and their
//! syntax (`vscope-etl sim --fault 503@first=2`, `faults = ["transient=0.1"]` in
//! `[source.sim]`) are in [`FaultRule`]'s module, `faults.rs`.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use vscope_sim::{SimConfig, start};
//! let sim = start(SimConfig::default(), "127.0.0.1:0".parse().unwrap()).await?;
//! println!("vScope simulator on {}", sim.base_url());
//! sim.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod apiv6;
mod discovery;
mod error;
mod faults;
mod fetch_limit;
mod format;
mod gzip;
mod index;
pub mod link;
mod model;
mod ovh_time;
mod query;
mod regex;
mod replay;
mod replay_warp;
mod server;
mod state;
mod warp;
mod warp10;
mod warp10_exec;

#[cfg(test)]
mod tests;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use faults::{Fault, FaultParseError, FaultRule, RetryAfter, When};
pub use gzip::NGINX_DEFAULT_LEVEL as GZIP_NGINX_DEFAULT_LEVEL;
pub use model::{DcObjects, FilerObject, HostObject, Pcc, PccObjects, SimSeries, VmObject};
pub use replay::{ReplayOptions, ReplayServer, serve_replay_until};
pub use warp::{ERLENMEYER_FETCH_LIMIT, ErrorMode, FetchStart};
pub use warp10::{FETCH_ERROR_PREFIX, TOKEN_HEADER};

use state::{Counters, Shared};
use vscope_core::dialect::Dialect;

/// How long [`SimHandle::shutdown`] waits for open connections to finish before it aborts them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What to simulate: the size of the PCC, its time step, the dialect and the credentials.
/// Two simulators with equal configs serve identical data.
#[derive(Clone, PartialEq, Eq)]
pub struct SimConfig {
    /// The PCC's API `serviceName`, the `servicename` label and the datacenter name prefix.
    pub service_name: String,
    /// Number of datacenters; their label is `<service_name>_datacenter<N>`, N = 869, 870, ...
    pub datacenters: usize,
    /// Hosts per datacenter; a host's label is its IP (`172.17.86.51`, ...), unique.
    pub hosts_per_datacenter: usize,
    /// VMs per datacenter; a VM's label is its moRef (`vm-01254`, ...), unique.
    pub vms_per_datacenter: usize,
    /// Filers (datastores) per datacenter; label `pcc-000443`, ...
    pub filers_per_datacenter: usize,
    /// NICs per host for host network metrics: `vmnic0` .. `vmnic<n-1>`.
    pub nics_per_host: usize,
    /// Seconds between two points of one series (values below 1 count as 1).
    pub step_secs: i64,
    /// Which server to imitate.
    pub dialect: Dialect,
    /// When set, requests must carry this token as the Basic auth password (or, in `ovh`, as
    /// the `p` query parameter). `None` serves everyone.
    pub token: Option<String>,
    /// Also serve the three metrics only a third-party UI shows (`documented: false` in the
    /// catalogue), so the ETL's handling of them is exercised.
    pub include_undocumented: bool,
    /// Seed of every random draw (levels, noise, gaps, phase offsets); labels do not depend on it.
    pub seed: u64,
    /// API v6 application key the simulator accepts.
    pub ovh_application_key: String,
    /// API v6 application secret the simulator verifies signatures with.
    pub ovh_application_secret: String,
    /// API v6 consumer key the simulator accepts.
    pub ovh_consumer_key: String,
    /// Access rules of that consumer key (`(METHOD, path glob)`, e.g. `("GET",
    /// "/dedicatedCloud/*")`); a call no rule covers gets `403 NOT_GRANTED_CALL`.
    pub ovh_access_rules: Vec<(String, String)>,
    /// Inventory drift, per datacenter: the last N VMs that have series are missing from API v6
    /// (deleted since), and N powered-off VMs exist only in API v6 (no series yet). 0: the
    /// inventory and the series match exactly.
    pub inventory_drift: usize,
    /// Failures injected on `/api/query` (`faults.rs`); empty: a healthy server.
    pub faults: Vec<FaultRule>,
    /// Seed of the fault draws (`transient=P`, `@rate=P`), independent of the data's seed.
    pub fault_seed: u64,
    /// How a Warp 10 execution error (fetch limit, refused token, timeout...) reaches an `ovh`
    /// client: Warp's text, or the opaque `invalid character 'E' ...` of Erlenmeyer's public
    /// HEAD (`warp.rs`). Errors Erlenmeyer makes itself (400, 401, 405, 501) are unchanged.
    pub errors: ErrorMode,
    /// Datapoints one sub-query may fetch: the stored points its FETCH selects (matched series
    /// times range) above this are refused, with Warp 10's fetch-limit 500 (`ovh`) or
    /// OpenTSDB's 413. Default: Erlenmeyer's `20000000 LIMIT`; a small value makes a client's
    /// splitting testable on a small PCC.
    pub max_fetch_points: u64,
    /// Whether the `ovh` FETCH keeps a point stamped exactly on the query start: excluded by
    /// Warp 10 up to 2.2, included from 2.3 (`warp.rs`). OVH's release is not public.
    pub fetch_start: FetchStart,
    /// Compress answers for requests that accept gzip, each API as its real server does
    /// (`gzip.rs`: the OpenTSDB API as OpenTSDB's Netty in the `opentsdb` dialect, every
    /// answer at level 6, and plain in the `ovh` dialect, as Erlenmeyer sends; API v6 as the
    /// nginx assumed in front of it, 200, 403 and 404 answers of 20 bytes or more at level 1;
    /// Warp 10 as its Jetty, 2xx answers of 23 bytes or more at level 6; streamed).
    /// `false` (`sim --no-gzip`, `[source.sim] gzip = false`): plain answers whatever the
    /// request says, like a server that ignores `Accept-Encoding`.
    pub gzip: bool,
}

/// Parses an API v6 access rule written `METHOD /path/glob` (e.g. `GET /dedicatedCloud/*`), as
/// `vscope-etl sim --ovh-rule` takes it. The method is upper-cased; `*` is any method.
pub fn parse_access_rule(text: &str) -> Result<(String, String), String> {
    let mut parts = text.split_whitespace();
    match (parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(p), None)
            if p.starts_with('/') && (m == "*" || m.chars().all(|c| c.is_ascii_alphabetic())) =>
        {
            Ok((m.to_ascii_uppercase(), p.to_owned()))
        }
        _ => Err(format!(
            "'{text}' is not an access rule: write METHOD /path, e.g. \"GET /dedicatedCloud/*\""
        )),
    }
}

impl SimConfig {
    /// The read token `POST .../metricsToken` issues when no `token` is configured: a pure
    /// function of the seed and service name, so a pipeline can require it up front.
    pub fn issued_token(&self) -> String {
        let a = model::mix(self.seed ^ 0x0074_6f6b_656e);
        let b = model::mix(
            self.service_name
                .bytes()
                .fold(a, |h, c| model::mix(h ^ u64::from(c))),
        );
        format!("sim-{a:016x}{b:016x}")
    }
}

impl Default for SimConfig {
    /// A small PCC like the one of the vScope guide: `pcc-37-187-228-180`, 2 datacenters of
    /// 3 hosts (4 NICs each), 12 VMs and 2 filers, one point a minute, `ovh` dialect, no token;
    /// API v6 with fixed test credentials granted the two rules vscope-etl needs, no drift;
    /// Warp's error texts, a 20 000 000-point fetch limit and the start excluded from a FETCH;
    /// gzip answers to clients that accept them.
    fn default() -> SimConfig {
        SimConfig {
            service_name: "pcc-37-187-228-180".to_owned(),
            datacenters: 2,
            hosts_per_datacenter: 3,
            vms_per_datacenter: 12,
            filers_per_datacenter: 2,
            nics_per_host: 4,
            step_secs: 60,
            dialect: Dialect::Ovh,
            token: None,
            include_undocumented: true,
            seed: 42,
            ovh_application_key: "vscope-sim-ak".to_owned(),
            ovh_application_secret: "vscope-sim-application-secret".to_owned(),
            ovh_consumer_key: "vscope-sim-consumer-key".to_owned(),
            ovh_access_rules: vec![
                ("GET".to_owned(), "/dedicatedCloud/*".to_owned()),
                (
                    "POST".to_owned(),
                    "/dedicatedCloud/*/user/*/metricsToken".to_owned(),
                ),
            ],
            inventory_drift: 0,
            faults: Vec::new(),
            fault_seed: 0,
            errors: ErrorMode::Text,
            max_fetch_points: ERLENMEYER_FETCH_LIMIT,
            fetch_start: FetchStart::Excluded,
            gzip: true,
        }
    }
}

impl fmt::Debug for SimConfig {
    /// Like a derived `Debug`, but the token is redacted so it never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("service_name", &self.service_name)
            .field("datacenters", &self.datacenters)
            .field("hosts_per_datacenter", &self.hosts_per_datacenter)
            .field("vms_per_datacenter", &self.vms_per_datacenter)
            .field("filers_per_datacenter", &self.filers_per_datacenter)
            .field("nics_per_host", &self.nics_per_host)
            .field("step_secs", &self.step_secs)
            .field("dialect", &self.dialect)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("include_undocumented", &self.include_undocumented)
            .field("seed", &self.seed)
            .field("ovh_application_key", &"<redacted>")
            .field("ovh_application_secret", &"<redacted>")
            .field("ovh_consumer_key", &"<redacted>")
            .field("ovh_access_rules", &self.ovh_access_rules)
            .field("inventory_drift", &self.inventory_drift)
            .field("faults", &self.faults)
            .field("fault_seed", &self.fault_seed)
            .field("errors", &self.errors)
            .field("max_fetch_points", &self.max_fetch_points)
            .field("fetch_start", &self.fetch_start)
            .field("gzip", &self.gzip)
            .finish()
    }
}

/// A snapshot of a running simulator's counters, for tests that check how many requests a
/// client made (retries, window splits) and how much data it received.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Every HTTP request received, on any path, whatever the answer.
    pub requests: u64,
    /// Requests to `/api/query`, whatever the answer.
    pub query_requests: u64,
    /// Series objects written in `/api/query` answers.
    pub series_returned: u64,
    /// Datapoints written in `/api/query` answers.
    pub points_returned: u64,
    /// Failures injected by the fault plan.
    pub faults_injected: u64,
}

/// A simulator running on the current tokio runtime, from [`start`]. Dropping it stops the
/// server; [`SimHandle::shutdown`] stops it gracefully and waits.
#[derive(Debug)]
pub struct SimHandle {
    local_addr: SocketAddr,
    counters: Arc<Counters>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl SimHandle {
    /// The address the server listens on (with the real port when started on port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://<ip>:<port>`, to use as a pipeline's `source.url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// The counters so far.
    pub fn stats(&self) -> SimStats {
        let c = &self.counters;
        SimStats {
            requests: c.requests.load(Ordering::Relaxed),
            query_requests: c.queries.load(Ordering::Relaxed),
            series_returned: c.series.load(Ordering::Relaxed),
            points_returned: c.points.load(Ordering::Relaxed),
            faults_injected: c.faults.load(Ordering::Relaxed),
        }
    }

    /// Stops accepting connections, lets open ones finish (at most 5 s, then aborts them) and
    /// waits for the server task to end.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(SHUTDOWN_GRACE, &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Binds `addr` (port 0 picks a free port) and serves the simulator on the current tokio
/// runtime until the returned handle is shut down or dropped.
pub async fn start(config: SimConfig, addr: SocketAddr) -> std::io::Result<SimHandle> {
    let listener = TcpListener::bind(addr).await?;
    let local_addr = listener.local_addr()?;
    let shared = Arc::new(Shared::new(&config));
    let counters = Arc::clone(&shared.counters);
    let (tx, rx) = oneshot::channel::<()>();
    let app = server::router(shared);
    let task = tokio::spawn(async move {
        let served = axum::serve(no_delay(listener), app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the vScope simulator stopped with an error");
        }
    });
    tracing::debug!(%local_addr, dialect = %config.dialect, "vScope simulator started");
    Ok(SimHandle {
        local_addr,
        counters,
        shutdown: Some(tx),
        task: Some(task),
    })
}

/// Serves the simulator on `listener` until `shutdown` completes, then finishes the open
/// connections and returns. For `vscope-etl sim`, which runs it in the foreground.
pub async fn serve_until(
    config: SimConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = Arc::new(Shared::new(&config));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, dialect = %config.dialect, series = shared.pcc.series().len(),
            "vScope simulator listening");
    }
    axum::serve(no_delay(listener), server::router(shared))
        .with_graceful_shutdown(shutdown)
        .await
}

/// `listener` with `TCP_NODELAY` on every connection it accepts, as the real servers answer:
/// nginx's `tcp_nodelay` is on by default, and so is Jetty's (`ServerConnector`'s
/// `acceptedTcpNoDelay`). Without it, Nagle's algorithm holds the last partial segment of an
/// answer until the client acknowledges the previous ones, which a delayed ACK puts off by up
/// to 40 ms on Linux: over the shaped link of `benches/wire.sh` that was ~45 ms more per
/// request, and 16 requests in flight no longer kept the link full.
pub(crate) fn no_delay(
    listener: TcpListener,
) -> axum::serve::TapIo<TcpListener, fn(&mut tokio::net::TcpStream)> {
    use axum::serve::ListenerExt;
    fn set_no_delay(stream: &mut tokio::net::TcpStream) {
        // A socket that refuses the option still serves, only with Nagle's delays.
        let _ = stream.set_nodelay(true);
    }
    listener.tap_io(set_no_delay as fn(&mut tokio::net::TcpStream))
}
