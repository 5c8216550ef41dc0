//! Fixtures: a simulator child process, pipeline files, running the binary, reading Parquet.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, TimestampMillisecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use vscope_etl::sim::{Pcc, SimConfig};

/// The binary under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vscope-etl"))
}

/// Starts the binary with `args`, lets it run `delay`, then kills it with SIGKILL (a crash at
/// an arbitrary point).
pub fn run_and_kill(args: &[&str], delay: std::time::Duration) {
    let mut child = bin()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
}

/// Runs the binary with `args`, returning its output.
pub fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("binary runs")
}

/// A `vscope-etl sim` child on an ephemeral loopback port, killed on drop.
pub struct SimProcess {
    child: Child,
    /// Its base URL.
    pub url: String,
}

impl SimProcess {
    /// Starts the simulator with extra flags (e.g. `--dialect opentsdb`).
    pub fn start(args: &[&str]) -> SimProcess {
        let mut child = bin()
            .args(["sim", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("simulator starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            line.starts_with("http://127.0.0.1:"),
            "unexpected first line {line:?}"
        );
        SimProcess {
            child,
            url: line.trim().to_string(),
        }
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The simulator configuration that `sim` flags `args` produce (defaults otherwise).
pub fn sim_config(datacenters: usize, hosts: usize, vms: usize, filers: usize) -> SimConfig {
    SimConfig {
        datacenters,
        hosts_per_datacenter: hosts,
        vms_per_datacenter: vms,
        filers_per_datacenter: filers,
        ..SimConfig::default()
    }
}

/// Writes a pipeline file into `dir`; `source` is the body of `[source]`, `tables` the
/// `[[table]]` blocks.
pub fn write_pipeline(
    dir: &Path,
    name: &str,
    source: &str,
    start: &str,
    end: &str,
    window: &str,
    tables: &str,
) -> PathBuf {
    let sink = dir.join("out");
    let text = format!(
        "name = \"{name}\"\n[source]\n{source}\n[scope]\nstart = \"{start}\"\nend = \"{end}\"\nwindow = \"{window}\"\n{tables}\n[sink]\nurl = \"{}\"\n",
        sink.display()
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Rewrites the pipeline file at `path` to the reader layout of large PCCs:
/// `partition_by = ["metric", "date"]` (row groups of 64 Ki rows, value pages of 64 KiB) and
/// lz4 pages (issue 21). Readers must find the same rows as in the default layout.
pub fn use_reader_layout(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap().replace(
        "[sink]\n",
        "[sink]\npartition_by = [\"metric\", \"date\"]\ncompression = \"lz4\"\n",
    );
    assert!(text.contains("lz4"), "no [sink] in {}", path.display());
    std::fs::write(path, text).unwrap();
}

/// Rewrites the pipeline file at `path` to month files (issue 21): `partition_by = ["month"]`
/// (or `["metric", "month"]` when `by_metric`) and lz4 pages; `vscope-etl compact` then merges
/// each finished month into one file per folder. Readers must find the same rows as in the
/// default layout.
pub fn use_month_layout(path: &Path, by_metric: bool) {
    let layout = if by_metric {
        "[\"metric\", \"month\"]"
    } else {
        "[\"month\"]"
    };
    let text = std::fs::read_to_string(path).unwrap().replace(
        "[sink]\n",
        &format!("[sink]\npartition_by = {layout}\ncompression = \"lz4\"\n"),
    );
    assert!(text.contains("lz4"), "no [sink] in {}", path.display());
    std::fs::write(path, text).unwrap();
}

/// The tables of [`TABLES`], by name.
pub const TABLE_NAMES: [&str; 4] = [
    "vm_metrics",
    "host_metrics",
    "filer_metrics",
    "vm_metrics_1h",
];

/// The standard tables: the three raw tables and a 1h rollup of VM metrics.
pub const TABLES: &str = r#"
[[table]]
name = "vm_metrics"
metrics = ["vscope.vm.*"]
[[table]]
name = "host_metrics"
metrics = ["vscope.host.*"]
[[table]]
name = "filer_metrics"
metrics = ["vscope.filer.*"]
[[table]]
name = "vm_metrics_1h"
metrics = ["vscope.vm.*"]
downsample = "1h"
aggregates = ["avg", "min", "max", "sum", "count", "first", "last", "dev", "p50", "p95", "p999"]
"#;

/// Every `.parquet` file below `dir/table`, sorted by path.
pub fn parquet_files(dir: &Path, table: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.join(table)];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// All batches of one file, with the file's Arrow schema.
pub fn read_file(path: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// One row of a raw table: series key (metric + every tag), ts, value.
pub type RawRow = ((String, BTreeMap<String, String>), i64, Option<f64>);

/// The rows of a raw table batch, tags rebuilt from the label columns and the `tags` map.
pub fn raw_rows(batch: &RecordBatch) -> Vec<RawRow> {
    let schema = batch.schema();
    let ts = batch
        .column_by_name("ts")
        .unwrap()
        .as_primitive::<TimestampMillisecondType>();
    let value = batch
        .column_by_name("value")
        .unwrap()
        .as_primitive::<Float64Type>();
    let metric = batch.column_by_name("metric").unwrap().as_string::<i32>();
    let labels: Vec<(String, _)> = schema
        .fields()
        .iter()
        .filter(|f| !matches!(f.name().as_str(), "ts" | "metric" | "value" | "tags"))
        .map(|f| {
            (
                f.name().clone(),
                batch
                    .column_by_name(f.name())
                    .unwrap()
                    .as_string::<i32>()
                    .clone(),
            )
        })
        .collect();
    let tags = batch.column_by_name("tags").unwrap().as_map();
    (0..batch.num_rows())
        .map(|i| {
            let mut t = BTreeMap::new();
            for (name, col) in &labels {
                if !col.is_null(i) {
                    t.insert(name.clone(), col.value(i).to_string());
                }
            }
            let entries = tags.value(i);
            let k = entries.column(0).as_string::<i32>();
            let v = entries.column(1).as_string::<i32>();
            for j in 0..entries.len() {
                t.insert(k.value(j).to_string(), v.value(j).to_string());
            }
            let val = if value.is_null(i) {
                None
            } else {
                Some(value.value(i))
            };
            ((metric.value(i).to_string(), t), ts.value(i), val)
        })
        .collect()
}

/// What the simulator stores for series matching `prefix` in `[start, end)`.
pub fn expected_rows(cfg: &SimConfig, prefix: &str, start: i64, end: i64) -> Vec<RawRow> {
    let pcc = Pcc::new(cfg);
    let mut out = Vec::new();
    for (i, s) in pcc.series().iter().enumerate() {
        if !s.metric.starts_with(prefix) {
            continue;
        }
        for (ts, v) in pcc.points(i, start, end - 1) {
            out.push(((s.metric.clone(), s.tags.clone()), ts, Some(v)));
        }
    }
    out
}

/// Milliseconds of an RFC 3339 time.
pub fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

/// stdout and stderr of a run, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `vscope-etl validate PATHS…` with the variables the real pipelines read set to test values
/// (`VSCOPE_METRICS_TOKEN` = `test-token-value`, which must never be printed back).
pub fn validate_with_token_env(paths: &[&str]) -> Output {
    bin()
        .arg("validate")
        .args(paths)
        .env("VSCOPE_METRICS_TOKEN", "test-token-value")
        .env(
            "VSCOPE_WARP_ENDPOINT",
            "https://warp10.gra1-ovh.metrics.ovh.net",
        )
        .output()
        .unwrap()
}

/// The test virtualenv's Python (made by scripts/setup-python.sh), with a clear failure when
/// it is missing rather than a silent skip.
pub fn venv_python() -> String {
    let py = std::env::var("VSCOPE_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    assert!(
        Path::new(&py).exists(),
        "{py} is missing: run scripts/test.sh (or scripts/setup-python.sh) to create the venv"
    );
    py
}

/// A moto S3 server (a real S3-compatible server) on an ephemeral loopback port with one
/// bucket, killed on drop.
pub struct MotoServer {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket created at start.
    pub bucket: String,
}

impl MotoServer {
    /// Starts moto_server from the test venv and creates `bucket`.
    pub fn start(bucket: &str) -> MotoServer {
        MotoServer::start_with_env(bucket, &[])
    }

    /// [`MotoServer::start`] with extra environment for the server (moto reads its settings
    /// there, e.g. `S3_UPLOAD_PART_MIN_SIZE`).
    pub fn start_with_env(bucket: &str, env: &[(&str, &str)]) -> MotoServer {
        let py = venv_python();
        let moto = Path::new(&py).with_file_name("moto_server");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(moto)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts (scripts/setup-python.sh installs it)");
        let endpoint = format!("127.0.0.1:{port}");
        let server = MotoServer {
            child,
            endpoint,
            bucket: bucket.to_string(),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Some(status) = server.http("PUT", &format!("/{bucket}")) {
                assert!(
                    status.starts_with("HTTP/1.1 200") || status.starts_with("HTTP/1.0 200"),
                    "{status}"
                );
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "moto_server did not start within 60 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        server
    }

    /// Sends a bodiless request (moto does not check signatures); the status line, or `None`
    /// when the server is not up yet.
    pub fn http(&self, method: &str, path: &str) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.endpoint).ok()?;
        write!(s, "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", self.endpoint).ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        Some(buf)
    }

    /// Every key in the bucket (ListObjectsV2, one page is enough for tests).
    pub fn keys(&self) -> Vec<String> {
        let body = self
            .http(
                "GET",
                &format!("/{}?list-type=2&max-keys=1000", self.bucket),
            )
            .unwrap();
        body.split("<Key>")
            .skip(1)
            .map(|s| s.split("</Key>").next().unwrap().to_string())
            .collect()
    }

    /// Incomplete multipart uploads under `prefix` (ListMultipartUploads): their keys.
    pub fn pending_uploads(&self, prefix: &str) -> Vec<String> {
        let body = self
            .http("GET", &format!("/{}?uploads&prefix={prefix}", self.bucket))
            .unwrap();
        let body = body.split("<Upload>").skip(1);
        body.map(|u| {
            u.split("<Key>")
                .nth(1)
                .and_then(|k| k.split("</Key>").next())
                .unwrap()
                .to_string()
        })
        .collect()
    }

    /// The sink this server holds at `prefix`, for reading objects back.
    pub fn sink(&self, prefix: &str) -> vscope_etl::load::Sink {
        use vscope_etl::secret::Secret;
        let options = vscope_etl::load::store::S3Options {
            endpoint: Some(format!("http://{}", self.endpoint)),
            region: Some("us-east-1".into()),
            access_key_id: Some(Secret::new("testing".to_string())),
            secret_access_key: Some(Secret::new("testing".to_string())),
            allow_http: Some(true),
            ..Default::default()
        };
        vscope_etl::load::Sink::open_with(&format!("s3://{}/{prefix}", self.bucket), &options)
            .unwrap()
    }

    /// Copies every object below `prefix` into `dest` (same relative paths), so the local
    /// readers apply; returns their keys (relative to `prefix`).
    pub fn download(&self, prefix: &str, dest: &Path) -> Vec<String> {
        let sink = self.sink(prefix);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let keys = sink.list_below("").await.unwrap();
            for k in &keys {
                let bytes = sink.get_opt(k).await.unwrap().unwrap();
                let path = dest.join(k);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap();
            }
            keys
        })
    }

    /// The `[sink]` table body for `s3://bucket/prefix` on this server.
    pub fn sink_toml(&self, prefix: &str) -> String {
        format!(
            "url = \"s3://{}/{prefix}\"\n[sink.s3]\nendpoint = \"http://{}\"\nregion = \"us-east-1\"\nallow_http = true\naccess_key_id = \"testing\"\nsecret_access_key = \"testing\"\n",
            self.bucket, self.endpoint
        )
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a pipeline whose `[sink]` body is given (for S3 sinks).
pub fn write_pipeline_with_sink(
    dir: &Path,
    name: &str,
    source: &str,
    scope: &str,
    tables: &str,
    sink: &str,
) -> PathBuf {
    let text = format!(
        "name = \"{name}\"\n[source]\n{source}\n[scope]\n{scope}\n{tables}\n[sink]\n{sink}\n"
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Every data file below `root` (tables only), relative path → bytes.
pub fn dataset(root: &Path, tables: &[&str]) -> BTreeMap<String, Vec<u8>> {
    tables
        .iter()
        .flat_map(|t| parquet_files(root, t))
        .map(|p| {
            (
                p.strip_prefix(root).unwrap().display().to_string(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

/// Every row of a table, whatever file holds it, each formatted as text (columns joined by
/// `|`, the file's partition folders first), sorted: two runs that wrote the same rows into
/// differently cut files compare equal.
pub fn table_rows(root: &Path, table: &str) -> Vec<String> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let mut rows = Vec::new();
    for path in parquet_files(root, table) {
        let dirs = path
            .parent()
            .unwrap()
            .strip_prefix(root)
            .unwrap()
            .display()
            .to_string();
        for batch in read_file(&path) {
            let options = FormatOptions::default().with_null("null");
            // Timestamps as epoch ms (formatting a zoned one needs chrono-tz).
            let columns: Vec<arrow::array::ArrayRef> = batch
                .columns()
                .iter()
                .map(|c| match c.data_type() {
                    arrow::datatypes::DataType::Timestamp(..) => {
                        let t = c.as_primitive::<TimestampMillisecondType>();
                        std::sync::Arc::new(arrow::array::Int64Array::new(
                            t.values().clone(),
                            t.nulls().cloned(),
                        )) as arrow::array::ArrayRef
                    }
                    _ => c.clone(),
                })
                .collect();
            let formatters: Vec<ArrayFormatter> = columns
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
                .collect();
            for i in 0..batch.num_rows() {
                let mut row = dirs.clone();
                for f in &formatters {
                    row.push('|');
                    row.push_str(&f.value(i).to_string());
                }
                rows.push(row);
            }
        }
    }
    rows.sort();
    rows
}

/// One request to an [`AnswerServer`].
pub struct Request {
    /// `GET`, `POST`...
    pub method: String,
    /// The path, query string included.
    pub path: String,
    /// The body (JSON for `/api/query`).
    pub body: Vec<u8>,
}

/// A loopback HTTP server answering each request with what a test's handler returns (status,
/// body): fixed or hand-made answers the simulator cannot give (bare `NaN`, another metric).
/// Every answer closes its connection. Stopped on drop.
pub struct AnswerServer {
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    addr: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AnswerServer {
    /// Starts the server on an ephemeral loopback port.
    pub fn start(
        handler: impl Fn(&Request) -> (u16, String) + Send + Sync + 'static,
    ) -> AnswerServer {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let handler = std::sync::Arc::new(handler);
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let handler = handler.clone();
                    std::thread::spawn(move || answer_one(conn, &*handler));
                }
            })
        };
        AnswerServer {
            url: format!("http://{addr}"),
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

/// Reads one HTTP/1.1 request from `conn` and writes the handler's answer.
fn answer_one(mut conn: std::net::TcpStream, handler: &dyn Fn(&Request) -> (u16, String)) {
    use std::io::{Read, Write};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next().unwrap_or("").split_whitespace();
    let (method, path) = (
        first.next().unwrap_or("").to_string(),
        first.next().unwrap_or("").to_string(),
    );
    let length: usize = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let request = Request {
        method,
        path,
        body: buf[head_end..head_end + length].to_vec(),
    };
    let (status, body) = handler(&request);
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
}

impl Drop for AnswerServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop up so that it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `run PIPELINE --json --now NOW` with extra environment and flags.
pub fn run_pipeline_at(p: &Path, now: &str, env: &[(&str, &str)], flags: &[&str]) -> Output {
    let mut cmd = bin();
    cmd.args(["run", p.to_str().unwrap(), "--json", "--now", now])
        .args(flags)
        .env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("binary runs")
}

/// Every row of each table by content (series, ts, values; the partition folders left out, so
/// another partitioning holds the same rows), sorted: one list per table.
pub fn rows_by_content(root: &Path, tables: &[&str]) -> Vec<Vec<String>> {
    tables
        .iter()
        .map(|t| {
            let mut rows: Vec<String> = table_rows(root, t)
                .into_iter()
                .map(|r| {
                    r.split_once('|')
                        .map_or(r.clone(), |(_, rest)| rest.to_string())
                })
                .collect();
            rows.sort();
            rows
        })
        .collect()
}

/// One round of the publication crash tests (issue 16, item 3): optionally a clean run first
/// (`recut`: the next run then re-cuts committed windows with `--force --start START`), a run
/// whose answers are split by a fetch-limit fault, killed after `crash_after` publication steps
/// (`VSCOPE_ETL_TEST_CRASH_AFTER`; a run with fewer steps finishes), then a plain incremental
/// run, which must succeed. `pipeline(sim_extra)` writes the pipeline file. Returns a label for
/// messages; the caller compares the dataset with a clean run.
pub fn kill_while_publishing_then_rerun(
    pipeline: &dyn Fn(&str) -> PathBuf,
    crash_after: u32,
    recut: bool,
    start: &str,
    now: &str,
) -> String {
    let what = format!("crash after step {crash_after}, recut {recut}");
    let flags: &[&str] = if recut {
        let out = run_pipeline_at(&pipeline(""), now, &[], &[]);
        assert!(out.status.success(), "{what}: {}", describe(&out));
        &["--force", "--start", start]
    } else {
        &[]
    };
    let crash = crash_after.to_string();
    let out = run_pipeline_at(
        &pipeline("faults = [\"fetch-limit:3h\"]"),
        now,
        &[("VSCOPE_ETL_TEST_CRASH_AFTER", &crash)],
        flags,
    );
    if out.status.code() != Some(137) {
        assert!(out.status.success(), "{what}: {}", describe(&out));
    }
    let out = run_pipeline_at(&pipeline(""), now, &[], &[]);
    assert!(out.status.success(), "{what}, rerun: {}", describe(&out));
    what
}

/// The run's own peak resident memory in MiB, from the `peak_rss_mb=` of its `run finished`
/// log line (`RUST_LOG=vscope_etl=info`): `VmHWM`, which `exec` resets. (`wait4`'s
/// `ru_maxrss` would also count the test process the run was spawned from, whose memory it
/// shares until `exec`.)
pub fn logged_peak_rss_mb(stderr: &[u8]) -> f64 {
    let log = String::from_utf8_lossy(stderr);
    log.lines()
        .find(|l| l.contains("run finished"))
        .and_then(|l| l.split("peak_rss_mb=").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.trim_matches('"').parse().ok())
        .unwrap_or_else(|| panic!("no peak_rss_mb in the run's log: {log}"))
}

/// `tests/py/delta_facts.py sorted FILE`: rows of a file out of (series, ts) order.
pub fn out_of_order(file: &Path) -> u64 {
    let out = Command::new(venv_python())
        .arg(format!(
            "{}/tests/py/delta_facts.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args(["sorted", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["out_of_order"].as_u64().unwrap()
}

/// `vscope-etl compact PIPELINE --json FLAGS…`, which must succeed: its report.
pub fn compact(p: &Path, flags: &[&str]) -> serde_json::Value {
    let mut args = vec!["compact", p.to_str().unwrap(), "--json"];
    args.extend_from_slice(flags);
    let out = run(&args);
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}
