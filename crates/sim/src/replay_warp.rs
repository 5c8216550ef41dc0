//! Replay of Warp 10's own API (`source.protocol = "warp10"`): `/api/v0/fetch` and
//! `/api/v0/find` answered from recorded files, so that a benchmark through the replay server
//! (`benches/wire.sh`'s shaped link among them) measures the Warp 10 client too, not the
//! simulator.
//!
//! The directory (written by `benches/gen_answers.py --warp`, the same data as its OpenTSDB
//! answers) holds:
//! - `find/<class>.txt`: the body answered to a find of `<class>{}`, the selector of the
//!   client's discovery (`src/extract/warp10.rs`);
//! - `fetch/<class>/<datacenter>/<start_ms>-<end_ms>.txt`: the body answered to a text fetch of
//!   `<class>{datacenter=<datacenter>}` over `[start_ms, end_ms)`, which the client asks as
//!   `now = end_ms*1000 - 1` and `timespan = (end_ms - start_ms)*1000` (µs).
//!
//! The selector is parsed as the simulator parses it ([`Selector`]); replay serves exact values
//! only: a regular expression, another label (a split by series group) or a range that is not a
//! recorded window (a split in time) is refused with a 400 that says what has no recording, as
//! replay never invents data. Errors are Jetty's pages, as Warp's ([`jetty_error`]). The token
//! is read where Warp reads it (the `X-Warp10-Token` header or the `token` parameter) and any
//! token, or none, is accepted: replay has no token configured, like the simulator without
//! `--token`. The answers go through [`Replay::file_answer`], so they are gzipped, precompressed
//! and sent through the shaped link as the OpenTSDB ones.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::error::jetty_error;
use super::replay::{Replay, safe_component};
use super::warp10::{Matcher, Selector, param, params};

/// The content type of Warp 10's text answers (the simulator's `warp10.rs`).
const TEXT: &str = "text/plain;charset=utf-8";

/// `GET`/`POST /api/v0/fetch`: the recorded answer of the selector's class and datacenter over
/// the asked window.
pub(crate) async fn fetch(
    State(r): State<Arc<Replay>>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Some(refused) = r.over_budget(&headers) {
        return refused;
    }
    let path = uri.path();
    answer(&r, &headers, path, fetch_file(&params(raw)), |file| {
        let reason = format!("replay has no recorded answer ({})", file.display());
        jetty_error(StatusCode::BAD_REQUEST, path, &reason)
    })
    .await
}

/// `GET`/`POST /api/v0/find`: the recorded series of the selector's class. A class with no
/// recording has no series: Warp answers an empty body for it (as the OpenTSDB replay answers
/// OpenTSDB's "No such name" to a lookup of an unknown metric), so a pipeline's metric pattern
/// may name classes the data does not hold. Only when the directory holds Warp recordings at
/// all: without `find/` every find is refused, so answers generated without `--warp` do not
/// pass for a dataset with no series.
pub(crate) async fn find(
    State(r): State<Arc<Replay>>,
    headers: HeaderMap,
    uri: Uri,
    RawQuery(raw): RawQuery,
) -> Response {
    let path = uri.path();
    let file = find_file(&params(raw));
    if file.is_ok() && !is_dir(&r.dir.join("find")).await {
        let reason = "replay has no recorded Warp 10 answers (no find/ folder: \
                      benches/gen_answers.py --warp writes them)";
        return jetty_error(StatusCode::BAD_REQUEST, path, reason);
    }
    answer(&r, &headers, path, file, |_| {
        (StatusCode::OK, [(header::CONTENT_TYPE, TEXT)], "").into_response()
    })
    .await
}

async fn is_dir(path: &Path) -> bool {
    tokio::fs::metadata(path).await.is_ok_and(|m| m.is_dir())
}

/// The recorded file `file` (relative to the replay directory) as the answer to the request on
/// `path`; the 400 that says why there is none when `file` is an error; `missing(file)` when
/// no such file was recorded.
async fn answer(
    r: &Replay,
    headers: &HeaderMap,
    path: &str,
    file: Result<PathBuf, String>,
    missing: impl FnOnce(&Path) -> Response,
) -> Response {
    let file = match file {
        Ok(f) => f,
        Err(reason) => return jetty_error(StatusCode::BAD_REQUEST, path, &reason),
    };
    match r.file_answer(&r.dir.join(&file), headers, TEXT).await {
        Ok(Some(resp)) => resp,
        Ok(None) => missing(&file),
        Err(e) => {
            let reason = format!("{}: {e}", file.display());
            jetty_error(StatusCode::INTERNAL_SERVER_ERROR, path, &reason)
        }
    }
}

/// The file answering a fetch with query parameters `q`:
/// `fetch/<class>/<datacenter>/<start_ms>-<end_ms>.txt`, or the reason of the 400.
fn fetch_file(q: &[(String, String)]) -> Result<PathBuf, String> {
    if ["start", "end", "stop"]
        .iter()
        .any(|p| param(q, p).is_some())
    {
        return Err("replay implements now and timespan (microseconds) only".into());
    }
    let (Some(now), Some(span)) = (param(q, "now"), param(q, "timespan")) else {
        return Err("Missing now/timespan or start/stop parameters.".into());
    };
    let (Ok(now), Ok(span)) = (now.parse::<i64>(), span.parse::<i64>()) else {
        return Err("replay takes integer now and timespan (microseconds) only".into());
    };
    check_text_format(q)?;
    let selector = param(q, "selector").ok_or("Missing 'selector' parameter.")?;
    let (class, datacenter) = exact_selector(selector, true)?;
    let datacenter = datacenter.ok_or_else(|| no_datacenter(selector))?;
    let (start_ms, end_ms) = window_ms(now, span)?;
    Ok(Path::new("fetch")
        .join(class)
        .join(datacenter)
        .join(format!("{start_ms}-{end_ms}.txt")))
}

/// The file answering a find with query parameters `q`: `find/<class>.txt`, or the reason
/// of the 400.
fn find_file(q: &[(String, String)]) -> Result<PathBuf, String> {
    check_text_format(q)?;
    let selector = param(q, "selector").ok_or("Missing selector.")?;
    let (class, _) = exact_selector(selector, false)?;
    Ok(Path::new("find").join(format!("{class}.txt")))
}

/// Refuses a `format` other than `text`, the only one recorded.
fn check_text_format(q: &[(String, String)]) -> Result<(), String> {
    match param(q, "format") {
        Some(f) if f != "text" => Err(format!("replay implements format=text only, not '{f}'")),
        _ => Ok(()),
    }
}

fn no_datacenter(selector: &str) -> String {
    format!(
        "replay has recorded fetches of class{{datacenter=<dc>}} only, not '{selector}' \
         (gen_answers.py records one answer per class and datacenter)"
    )
}

/// The class and, with `datacenter`, the exact `datacenter` label of `selector`, both safe
/// as path components; any other label, or a regular expression, has no recording. Without
/// `datacenter` the selector must have no label at all (`class{}`, the client's discovery).
fn exact_selector(selector: &str, datacenter: bool) -> Result<(String, Option<String>), String> {
    let parsed = Selector::parse(selector)?;
    let Matcher::Exact(class) = parsed.class else {
        return Err(format!(
            "replay has recordings of exact classes only, not '{selector}'"
        ));
    };
    if !safe_component(&class) {
        return Err(format!("invalid class '{class}'"));
    }
    match parsed.labels.as_slice() {
        [] if !datacenter => Ok((class, None)),
        [] => Err(no_datacenter(selector)),
        [(label, Matcher::Exact(dc))] if datacenter && label == "datacenter" => {
            if !safe_component(dc) {
                return Err(format!("invalid datacenter '{dc}'"));
            }
            Ok((class, Some(dc.clone())))
        }
        _ if datacenter => Err(no_datacenter(selector)),
        _ => Err(format!(
            "replay has recorded finds of class{{}} only (the client's discovery), not '{selector}'"
        )),
    }
}

/// The window `[start_ms, end_ms)` of a fetch with `now` and `timespan` (µs), which keeps
/// `now - timespan < ts <= now`: a recorded window is asked as `now = end_ms*1000 - 1`,
/// `timespan = (end_ms - start_ms)*1000` (`src/extract/warp10.rs`); anything else has no
/// recording.
fn window_ms(now: i64, span: i64) -> Result<(i64, i64), String> {
    let end_us = now.checked_add(1).filter(|e| e % 1000 == 0);
    match end_us {
        Some(end_us) if span > 0 && span % 1000 == 0 => {
            let end_ms = end_us / 1000;
            Ok((end_ms - span / 1000, end_ms))
        }
        _ => Err(format!(
            "replay has recorded windows of whole milliseconds only, asked as now = end*1000 - 1 \
             and timespan = (end - start)*1000, not now = {now}, timespan = {span}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The parameters the client sends for the window `[start_ms, end_ms)`.
    fn client_fetch(selector: &str, start_ms: i64, end_ms: i64) -> Vec<(String, String)> {
        q(&[
            ("selector", selector),
            ("now", &(end_ms * 1000 - 1).to_string()),
            ("timespan", &((end_ms - start_ms) * 1000).to_string()),
            ("format", "text"),
            ("showerrors", "true"),
        ])
    }

    #[test]
    fn a_client_fetch_names_its_recorded_window() {
        let f = fetch_file(&client_fetch(
            "vscope.vm.cpu.ready{datacenter=pcc-1_datacenter4}",
            1_793_491_200_000,
            1_793_577_600_000,
        ))
        .unwrap();
        assert_eq!(
            f,
            Path::new(
                "fetch/vscope.vm.cpu.ready/pcc-1_datacenter4/1793491200000-1793577600000.txt"
            )
        );
        // Percent-encoded as the client writes it.
        let f = fetch_file(&client_fetch("m{datacenter=dc%2D1}", 0, 1000)).unwrap();
        assert_eq!(f, Path::new("fetch/m/dc-1/0-1000.txt"));
    }

    #[test]
    fn a_fetch_without_a_recording_is_refused() {
        let dc = ("selector", "m{datacenter=d}");
        for (params, says) in [
            // Not the client's window shape: an inclusive end, a part of a millisecond.
            (
                vec![dc, ("now", "2000"), ("timespan", "1000")],
                "whole milliseconds",
            ),
            (
                vec![dc, ("now", "1999"), ("timespan", "1500")],
                "whole milliseconds",
            ),
            (
                vec![dc, ("now", "1999"), ("timespan", "0")],
                "whole milliseconds",
            ),
            (vec![dc, ("start", "0"), ("end", "1")], "now and timespan"),
            (vec![dc], "Missing now"),
            (vec![("now", "999"), ("timespan", "1000")], "selector"),
            (
                vec![dc, ("now", "999"), ("timespan", "1000"), ("format", "json")],
                "format=text",
            ),
        ] {
            let e = fetch_file(&q(&params)).unwrap_err();
            assert!(e.contains(says), "{params:?}: {e}");
        }
        // Selectors with no recording: no datacenter, a group, a regular expression.
        for selector in [
            "m{}",
            "m{datacenter=d,vm~vm-0.*}",
            "m{datacenter~d.*}",
            "m{vm=a}",
            "~m.*{datacenter=d}",
        ] {
            assert!(
                fetch_file(&client_fetch(selector, 0, 1000)).is_err(),
                "{selector}"
            );
        }
        // Nothing outside the directory.
        for selector in [
            "..{datacenter=d}",
            "m{datacenter=..}",
            "m{datacenter=a%2Fb}",
            "m{datacenter=%2E%2E}",
        ] {
            let e = fetch_file(&client_fetch(selector, 0, 1000)).unwrap_err();
            assert!(e.contains("invalid"), "{selector}: {e}");
        }
    }

    #[test]
    fn a_find_of_a_whole_class_names_its_recording() {
        assert_eq!(
            find_file(&q(&[("selector", "vscope.vm.cpu.ready{}")])).unwrap(),
            Path::new("find/vscope.vm.cpu.ready.txt")
        );
        assert!(find_file(&q(&[("selector", "m{datacenter=d}")])).is_err());
        assert!(find_file(&q(&[("selector", "~m.*{}")])).is_err());
        assert!(find_file(&q(&[("selector", "..{}")])).is_err());
        assert!(find_file(&q(&[])).is_err());
        assert!(find_file(&q(&[("selector", "m{}"), ("format", "json")])).is_err());
    }

    /// A directory under the system's temporary one, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let dir = std::env::temp_dir()
                .join(format!("vscope-replay-warp-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn write(&self, rel: &str, body: &str) {
            let p = self.0.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, body).unwrap();
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const FETCHED: &str = "1999000// m{datacenter=d,vm=a} 4.38\n=1000000// 3.090055095E7\n";

    /// A replay server of `dir` (plain, or gzip with every answer compressed ahead): its base
    /// URL and its stop.
    async fn serve(dir: &Path, precompress: bool) -> (String, tokio::sync::oneshot::Sender<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let options = crate::ReplayOptions {
            gzip: precompress,
            precompress,
            ..crate::ReplayOptions::default()
        };
        tokio::spawn(crate::serve_replay_until(
            dir.to_path_buf(),
            options,
            listener,
            async {
                let _ = rx.await;
            },
        ));
        (url, tx)
    }

    /// The body of `resp`, gunzipped when it came compressed.
    async fn text(resp: reqwest::Response) -> String {
        let gzipped = resp
            .headers()
            .get("content-encoding")
            .is_some_and(|v| v == "gzip");
        let bytes = resp.bytes().await.unwrap();
        if !gzipped {
            return String::from_utf8(bytes.to_vec()).unwrap();
        }
        let mut out = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut out)
            .unwrap();
        out
    }

    #[tokio::test]
    async fn recorded_answers_are_served_and_the_rest_refused() {
        let dir = TempDir::new("serve");
        dir.write("query/m/d/0-2000.json", "[]");
        dir.write("find/m.txt", "m{datacenter=d,vm=a}{}\n");
        dir.write("fetch/m/d/0-2000.txt", FETCHED);
        for precompress in [false, true] {
            let (url, stop) = serve(&dir.0, precompress).await;
            // Decoded here, not by reqwest (whose gzip feature the workspace may not enable).
            let http = reqwest::Client::builder().no_gzip().build().unwrap();
            let get = |path: &str, params: &[(&str, &str)]| {
                let url = url::Url::parse_with_params(&format!("{url}{path}"), params).unwrap();
                http.get(url)
                    .header(crate::TOKEN_HEADER, "any")
                    .header("accept-encoding", "gzip")
                    .send()
            };
            let params = [
                ("selector", "m{datacenter=d}"),
                ("now", "1999999"),
                ("timespan", "2000000"),
                ("format", "text"),
            ];
            let resp = get("/api/v0/fetch", &params).await.unwrap();
            assert_eq!(resp.status(), 200, "precompress {precompress}");
            assert!(
                resp.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/plain")
            );
            assert_eq!(text(resp).await, FETCHED);
            let resp = get("/api/v0/find", &[("selector", "m{}")]).await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(text(resp).await, "m{datacenter=d,vm=a}{}\n");
            // No token is accepted too: replay has none configured.
            let resp = http
                .get(format!("{url}/api/v0/find?selector=m%7B%7D"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            // Another window, datacenter or class: no recording, said in Jetty's page.
            for params in [
                [("now", "999999"), ("timespan", "1000000")],
                [("now", "1999999"), ("timespan", "1000000")],
            ] {
                let mut p = vec![("selector", "m{datacenter=d}")];
                p.extend(params);
                let resp = get("/api/v0/fetch", &p).await.unwrap();
                assert_eq!(resp.status(), 400);
                let page = text(resp).await;
                assert!(page.contains("no recorded answer"), "{page}");
                assert!(page.contains("fetch/m/d/"), "{page}");
            }
            let mut other_dc = params;
            other_dc[0] = ("selector", "m{datacenter=e}");
            let resp = get("/api/v0/fetch", &other_dc).await.unwrap();
            assert_eq!(resp.status(), 400);
            // A class with no recorded series: none, as Warp answers.
            let resp = get("/api/v0/find", &[("selector", "n{}")]).await.unwrap();
            assert_eq!(resp.status(), 200);
            assert_eq!(text(resp).await, "");
            let _ = stop.send(());
        }
        // No Warp recordings at all: every find is refused.
        let opentsdb_only = TempDir::new("opentsdb-only");
        opentsdb_only.write("query/m/d/0-2000.json", "[]");
        let (url, stop) = serve(&opentsdb_only.0, false).await;
        let resp = reqwest::get(format!("{url}/api/v0/find?selector=m%7B%7D"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 400);
        let page = text(resp).await;
        assert!(page.contains("--warp"), "{page}");
        let _ = stop.send(());
    }
}
