//! A shaped link in front of the replay server (`sim --replay DIR --link-rate 100Mbit
//! --link-rtt 20ms`), so that `benches/wire.sh` measures an export over a WAN to the endpoint
//! rather than over loopback. `tc netem` would shape the kernel's loopback, but it needs
//! `CAP_NET_ADMIN`, which the benchmark machine does not give; this layer shapes what matters
//! for throughput instead:
//!
//! - **bandwidth**: every answer's bytes (after gzip: what crosses the wire) go through one token
//!   bucket shared by all connections, `rate` bytes a second, with a small burst
//!   (64 KiB, a link's queue), in pieces of at most 16 KiB;
//! - **latency**: each request waits one round trip before its answer starts (the request's way
//!   out and the first byte's way back).
//!
//! Not modelled: TCP's window growth (slow start) and loss; an answer of a few MB over a fresh
//! connection would start slower on a real link. The client keeps its connections alive, so
//! after the first answers the window is open anyway.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use bytes::Bytes;
use futures::{Stream, StreamExt};

/// Bytes a burst may send at once (a link's queue).
const BURST_BYTES: f64 = 64.0 * 1024.0;

/// Largest piece sent in one go.
const PIECE_BYTES: usize = 16 * 1024;

/// The shaped link: a rate shared by every connection and a round-trip time.
#[derive(Debug)]
pub struct Link {
    /// Bytes per second.
    rate: f64,
    /// Waited once per request.
    rtt: Duration,
    /// Tokens (bytes) and when they were last counted; negative while senders wait.
    bucket: std::sync::Mutex<(f64, Instant)>,
    /// Body bytes sent.
    sent: AtomicU64,
}

impl Link {
    /// A link of `bits_per_s` and `rtt`.
    pub fn new(bits_per_s: f64, rtt: Duration) -> Arc<Link> {
        Arc::new(Link {
            rate: bits_per_s / 8.0,
            rtt,
            bucket: std::sync::Mutex::new((BURST_BYTES, Instant::now())),
            sent: AtomicU64::new(0),
        })
    }

    /// Body bytes sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Waits until `n` bytes may go: takes them from the bucket (into debt when it is short,
    /// then sleeps the debt off, so that waiting senders are served in turn).
    async fn send(&self, n: usize) {
        let wait = {
            let mut b = self.bucket.lock().expect("not poisoned");
            let now = Instant::now();
            let level = (b.0 + now.duration_since(b.1).as_secs_f64() * self.rate).min(BURST_BYTES);
            *b = (level - n as f64, now);
            if b.0 >= 0.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64(-b.0 / self.rate)
            }
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        self.sent.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// Parses a link rate: a number and `bit`, `kbit`, `Mbit` or `Gbit` (per second), e.g.
/// `100Mbit`. Returns bits per second.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("'{text}' is not a rate: write e.g. 100Mbit"))?;
    let scale = match unit.trim().trim_end_matches("/s").trim_end_matches("ps") {
        "bit" => 1.0,
        "kbit" | "Kbit" => 1e3,
        "Mbit" => 1e6,
        "Gbit" => 1e9,
        _ => return Err(format!("'{text}': the unit is bit, kbit, Mbit or Gbit")),
    };
    if n * scale <= 0.0 {
        return Err(format!("'{text}': the rate must be above zero"));
    }
    Ok(n * scale)
}

/// Wraps `router`: every answer waits a round trip, then its body goes through the link.
pub(crate) fn layer<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    link: Arc<Link>,
) -> Router<S> {
    router.layer(middleware::from_fn_with_state(link, shaped))
}

async fn shaped(State(link): State<Arc<Link>>, req: Request, next: Next) -> Response {
    tokio::time::sleep(link.rtt).await;
    let resp = next.run(req).await;
    let (parts, body) = resp.into_parts();
    Response::from_parts(
        parts,
        Body::from_stream(through(body.into_data_stream(), link)),
    )
}

/// The chunks of `inner`, cut into pieces that each wait for the link.
fn through<S>(inner: S, link: Arc<Link>) -> impl Stream<Item = Result<Bytes, axum::Error>> + Send
where
    S: Stream<Item = Result<Bytes, axum::Error>> + Send + Unpin + 'static,
{
    futures::stream::unfold(
        (inner, Bytes::new(), link),
        |(mut inner, mut pending, link)| async move {
            if pending.is_empty() {
                match inner.next().await? {
                    Ok(chunk) => pending = chunk,
                    Err(e) => return Some((Err(e), (inner, Bytes::new(), link))),
                }
            }
            let piece = pending.split_to(pending.len().min(PIECE_BYTES));
            link.send(piece.len()).await;
            Some((Ok(piece), (inner, pending, link)))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_like_tc() {
        assert_eq!(parse_rate("100Mbit").unwrap(), 100e6);
        assert_eq!(parse_rate("1.5Gbit").unwrap(), 1.5e9);
        assert_eq!(parse_rate("512kbit").unwrap(), 512e3);
        assert!(parse_rate("100MB").is_err());
        assert!(parse_rate("0Mbit").is_err());
        assert!(parse_rate("fast").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn the_link_sends_at_its_rate_whoever_sends() {
        // 8 Mbit/s = 1 MB/s: 3 MB from three senders take about 3 s (less the burst).
        let link = Link::new(8e6, Duration::from_millis(20));
        let start = tokio::time::Instant::now();
        let senders: Vec<_> = (0..3)
            .map(|_| {
                let link = Arc::clone(&link);
                tokio::spawn(async move {
                    for _ in 0..64 {
                        link.send(16 * 1024).await;
                    }
                })
            })
            .collect();
        for s in senders {
            s.await.unwrap();
        }
        let took = start.elapsed().as_secs_f64();
        let expected = (3.0 * 64.0 * 16.0 * 1024.0 - BURST_BYTES) / 1e6;
        assert!(
            (took - expected).abs() < 0.05,
            "{took} s, expected {expected}"
        );
        assert_eq!(link.sent(), 3 * 64 * 16 * 1024);
    }
}
