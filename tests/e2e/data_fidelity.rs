//! No silent duplicates or holes: what a server sends that the simulator never does (bare
//! `NaN` and infinities, an answer about another metric), metric names that need escaping in
//! partition paths, and the messages of sink and configuration mistakes.

use std::path::{Path, PathBuf};

use crate::common::*;

const NOW: &str = "2026-11-03T00:00:00Z";
const START: &str = "2026-11-01T00:00:00Z";
const END: &str = "2026-11-01T02:00:00Z";
const METRIC: &str = "vscope.vm.cpu.usage.perc";

/// The query of an `/api/query` request: (start ms, end ms, metric).
fn query_of(r: &Request) -> (i64, i64, String) {
    let q: serde_json::Value = serde_json::from_slice(&r.body).expect("a JSON query");
    (
        q["start"].as_i64().unwrap(),
        q["end"].as_i64().unwrap(),
        q["queries"][0]["metric"].as_str().unwrap().to_string(),
    )
}

/// A pipeline reading one metric of `url` (an [`AnswerServer`]) into `vm_metrics`, in 1 h
/// windows over [START, END), with no discovery (one unit per window).
fn pipeline(dir: &Path, url: &str, extra_sink: &str) -> PathBuf {
    pipeline_with(dir, url, "none", extra_sink)
}

/// [`pipeline`] with another `source.discovery`.
fn pipeline_with(dir: &Path, url: &str, discovery: &str, extra_sink: &str) -> PathBuf {
    let source = format!(
        "url = \"{url}\"\ndialect = \"opentsdb\"\ndiscovery = \"{discovery}\"\n\
         requests_per_second = 0\nmax_attempts = 2"
    );
    let tables = format!("[[table]]\nname = \"vm_metrics\"\nmetrics = [\"{METRIC}\"]");
    let scope = format!("start = \"{START}\"\nend = \"{END}\"\nwindow = \"1h\"");
    let sink = format!("url = \"{}\"\n{extra_sink}", dir.join("out").display());
    write_pipeline_with_sink(dir, "integrity", &source, &scope, &tables, &sink)
}

fn run_pipeline(p: &Path) -> Output {
    run(&["run", p.to_str().unwrap(), "--json", "--now", NOW])
}

use std::process::Output;

/// The newest manifest under `root/_runs`.
fn manifest(root: &Path) -> serde_json::Value {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("_runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    serde_json::from_slice(&std::fs::read(files.last().unwrap()).unwrap()).unwrap()
}

/// Every raw row of `table` under `root`: (metric, ts, value), sorted.
fn rows(root: &Path, table: &str) -> Vec<(String, i64, Option<f64>)> {
    let mut out: Vec<_> = parquet_files(root, table)
        .iter()
        .flat_map(|p| read_file(p))
        .flat_map(|b| raw_rows(&b))
        .map(|((m, _), ts, v)| (m, ts, v))
        .collect();
    out.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    out
}

/// Case 7 with what Jackson writes when it does not quote non-finite doubles (OpenTSDB under
/// some fill policies) and Python's `json`: bare `NaN`, `Infinity`, `-Infinity`, and a number
/// beyond f64's range. The first window comes in the object form through the fast scanner,
/// the second in the array form with an escaped tag, through the serde path. The run exits 0;
/// the dataset holds a null where the server sent each of them, and the manifest counts NaN
/// as a null value and the others as invalid values.
#[test]
fn bare_nan_and_infinities_from_the_server_are_null_values() {
    let server = AnswerServer::start(|r| {
        if r.method != "POST" || r.path != "/api/query" {
            return (404, String::new());
        }
        let (start, _, metric) = query_of(r);
        let s = start.div_euclid(1000) * 1000;
        let window = s.div_euclid(3_600_000) * 3_600_000;
        let values = ["1.5", "NaN", "Infinity", "-Infinity", "1e309", " 2.5 "];
        let body = if window == ms(START) {
            let dps: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| format!("\"{}\" :\t{v}", s + i as i64 * 1000))
                .collect();
            format!(
                "[{{\"metric\":\"{metric}\",\"tags\":{{\"datacenter\":\"dc1\",\"vm\":\"vm-1\"}},\"dps\":{{{}}}}}]",
                dps.join(" ,\n")
            )
        } else {
            let dps: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(i, v)| format!("[{}, {v}]", s + i as i64 * 1000))
                .collect();
            format!(
                "[{{\"metric\":\"{metric}\",\"tags\":{{\"datacenter\":\"dc1\",\"vm\":\"vm\\u002d1\"}},\"dps\":[ {} ]}}]",
                dps.join(",")
            )
        };
        (200, body)
    });
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &server.url, "");
    let out = run_pipeline(&p);
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let root = dir.path().join("out");
    let m = manifest(&root);
    assert_eq!(m["windows_committed"], 2, "{m}");
    assert_eq!(m["points"]["points"], 12, "{m}");
    assert_eq!(m["points"]["null_values"], 2, "NaN is a null value: {m}");
    assert_eq!(
        m["points"]["invalid_values"], 6,
        "infinities and 1e309 are invalid values: {m}"
    );
    let got = rows(&root, "vm_metrics");
    let mut want = Vec::new();
    for w in [ms(START), ms(START) + 3_600_000] {
        for (i, v) in [Some(1.5), None, None, None, None, Some(2.5)]
            .into_iter()
            .enumerate()
        {
            want.push((METRIC.to_string(), w + i as i64 * 1000, v));
        }
    }
    assert_eq!(got, want);
}

/// The server's `metric` is not trusted: an answer naming another metric than the query's
/// (a proxy or cache answering another query) fails its unit at once, without a retry, with
/// a message naming both metrics; no row is written under either name, nothing is committed.
#[test]
fn an_answer_about_another_metric_fails_its_unit_naming_both() {
    let other = "vscope.vm.cpu.ready";
    let server = AnswerServer::start(move |r| {
        if r.method != "POST" || r.path != "/api/query" {
            return (404, String::new());
        }
        let (start, _, _) = query_of(r);
        let s = start.div_euclid(1000) * 1000;
        (
            200,
            format!(
                "[{{\"metric\":\"{other}\",\"tags\":{{\"datacenter\":\"dc1\",\"vm\":\"vm-1\"}},\"dps\":{{\"{s}\":1.5}}}}]"
            ),
        )
    });
    let dir = tempfile::tempdir().unwrap();
    let p = pipeline(dir.path(), &server.url, "");
    let out = run_pipeline(&p);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let root = dir.path().join("out");
    let m = manifest(&root);
    assert_eq!(m["windows_committed"], 0, "{m}");
    assert_eq!(m["retries"], 0, "not retried: {m}");
    assert_eq!(m["units_done"], 0, "{m}");
    let failures = m["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2, "{m}");
    for f in failures {
        assert_eq!(f["metric"], METRIC, "{f}");
        let e = f["error"].as_str().unwrap();
        assert!(
            e.contains(&format!("'{other}'")) && e.contains(&format!("'{METRIC}'")),
            "names both metrics: {e}"
        );
    }
    assert!(rows(&root, "vm_metrics").is_empty(), "no row written");
}

/// Metric names that need escaping in a partition folder.
const AWKWARD: [&str; 6] = [
    "a/b",
    "100%",
    "k=v",
    "with space",
    "été/🙂 %2F",
    "x~y|z<>{}`",
];

/// Writes one Parquet file per name of [`AWKWARD`] into `sink`, where the pipeline writes it
/// with `partition_by = ["metric", "date"]`, with the name in its `metric` column.
fn write_awkward_partitions(sink: &vscope_etl::load::Sink) {
    use arrow::array::{Float64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;
    use vscope_etl::config::PartitionKey;
    use vscope_etl::load::partition::{part_file_name, partition_dir};
    let schema = Arc::new(Schema::new(vec![
        Field::new("metric", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
    ]));
    let day = ms("2026-11-01T00:00:00Z");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for name in AWKWARD {
        let batch = arrow::record_batch::RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![name])),
                Arc::new(Float64Array::from(vec![1.0])),
            ],
        )
        .unwrap();
        let dir = partition_dir(
            "vm_metrics",
            &[PartitionKey::Metric, PartitionKey::Date],
            name,
            day,
        );
        let path = format!("{dir}/{}", part_file_name(day, day + 3_600_000));
        rt.block_on(async {
            let props = parquet::file::properties::WriterProperties::builder().build();
            let mut w = vscope_etl::load::writer::PartWriter::create(
                sink,
                path,
                "vm_metrics",
                schema.clone(),
                props,
            )
            .unwrap();
            w.write(&batch).await.unwrap();
            let staged = w.finish().await.unwrap();
            assert_eq!(staged.rows, 1);
        });
    }
}

/// For each file of `vm_metrics` under `sink`: (its `metric` column, the metric DuckDB decodes
/// from its Hive path), sorted (`tests/py/hive_metric.py`).
fn hive_metrics(sink: &str, env: &[(&str, &str)]) -> Vec<(String, String)> {
    let out = std::process::Command::new(venv_python())
        .arg(format!(
            "{}/tests/py/hive_metric.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args([sink, "vm_metrics"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// With `partition_by = ["metric", "date"]` the folder is the metric escaped once, as Hive
/// escapes it: DuckDB's `hive_partitioning = true` gives back exactly the `metric` column, for
/// names with `/`, `%`, `=`, spaces and non-ASCII, on local disk and on S3.
#[test]
fn metric_folders_decode_to_the_metric_column_on_disk_and_on_s3() {
    let mut want: Vec<(String, String)> = AWKWARD
        .iter()
        .map(|n| (n.to_string(), n.to_string()))
        .collect();
    want.sort();

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("out");
    let sink = vscope_etl::load::Sink::open(root.to_str().unwrap()).unwrap();
    write_awkward_partitions(&sink);
    assert_eq!(
        hive_metrics(root.to_str().unwrap(), &[]),
        want,
        "local disk"
    );

    let moto = MotoServer::start("hive");
    write_awkward_partitions(&moto.sink("p"));
    // The keys themselves hold the value escaped once.
    let folders: std::collections::BTreeSet<String> = moto
        .keys()
        .iter()
        .filter_map(|k| {
            k.split('/')
                .find(|s| s.starts_with("metric="))
                .map(str::to_string)
        })
        // The listing is XML.
        .map(|k| {
            k.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&amp;", "&")
        })
        .collect();
    let escaped: std::collections::BTreeSet<String> = AWKWARD
        .iter()
        .map(|n| {
            format!(
                "metric={}",
                vscope_etl::load::partition::escape_path_value(n)
            )
        })
        .collect();
    assert_eq!(folders, escaped, "S3 keys");
    let env = [
        ("S3_ENDPOINT", moto.endpoint.as_str()),
        ("S3_KEY", "testing"),
        ("S3_SECRET", "testing"),
    ];
    assert_eq!(
        hive_metrics(&format!("s3://{}/p", moto.bucket), &env),
        want,
        "S3"
    );
}

/// A sink in a bucket that does not exist: the run stops at once (exit 2, a configuration
/// error) with a message saying the bucket does not exist and what to do, instead of
/// "Object ... not found".
#[test]
fn a_missing_bucket_is_named_with_the_fix() {
    let moto = MotoServer::start("present");
    let dir = tempfile::tempdir().unwrap();
    let sink = moto
        .sink_toml("p")
        .replace("s3://present/", "s3://absent-bucket/");
    let source = "url = \"sim\"\nrequests_per_second = 0\n[source.sim]\ndatacenters = 1\n\
                  hosts_per_datacenter = 1\nvms_per_datacenter = 1\nfilers_per_datacenter = 1";
    let scope = format!("start = \"{START}\"\nend = \"{END}\"\nwindow = \"1h\"");
    let tables = format!("[[table]]\nname = \"vm_metrics\"\nmetrics = [\"{METRIC}\"]");
    let p = write_pipeline_with_sink(dir.path(), "nobucket", source, &scope, &tables, &sink);
    let out = run_pipeline(&p);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        err.contains("bucket 'absent-bucket' does not exist"),
        "names the bucket: {err}"
    );
    assert!(err.contains("sink.url"), "says what to fix: {err}");
    assert!(err.contains("create"), "says how to create it: {err}");
    assert!(!err.contains("not found"), "no bare 'not found': {err}");

    // `check` says the same of the sink, instead of "can be read".
    let out = run(&["check", p.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("bucket 'absent-bucket' does not exist"),
        "check names the bucket: {text}"
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
}

/// A local `sink.url` that is a file, not a directory: the run stops at once (exit 2) saying
/// so, instead of "File exists".
#[test]
fn a_local_sink_that_is_a_file_is_named_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("out"), b"not a directory").unwrap();
    let source = "url = \"sim\"\nrequests_per_second = 0\n[source.sim]\ndatacenters = 1\n\
                  hosts_per_datacenter = 1\nvms_per_datacenter = 1\nfilers_per_datacenter = 1";
    let p = write_pipeline(
        dir.path(),
        "afile",
        source,
        START,
        END,
        "1h",
        &format!("[[table]]\nname = \"vm_metrics\"\nmetrics = [\"{METRIC}\"]"),
    );
    let out = run_pipeline(&p);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        err.contains("sink.url") && err.contains("is a file") && err.contains("directory"),
        "says sink.url must be a directory: {err}"
    );
    assert!(!err.contains("File exists"), "{err}");
    assert_eq!(
        std::fs::read(dir.path().join("out")).unwrap(),
        b"not a directory",
        "the file is left alone"
    );
}

/// One point of `metric` at the start of the range asked for (tags `datacenter`, `vm`).
fn one_point(r: &Request, dc: &str) -> String {
    let (start, _, metric) = query_of(r);
    let s = start.div_euclid(1000) * 1000;
    format!(
        "[{{\"metric\":\"{metric}\",\"tags\":{{\"datacenter\":\"{dc}\",\"vm\":\"vm-{dc}\"}},\"dps\":{{\"{s}\":1.5}}}}]"
    )
}

const NO_SUCH_NAME: &str = r#"{"error":{"code":400,"message":"No such name for 'foo': 'bar'"}}"#;

/// `units_done` counts the units whose data was fully fetched and handed to the writers. A
/// unit whose answer is split, and one of whose parts then fails, is a failed unit, not a done
/// one: here each 1 h window is too large (413) and split in two; the second half of the
/// second window is refused (400).
#[test]
fn units_done_leaves_out_a_split_unit_whose_part_failed() {
    let second_half = ms(START) + 3_600_000 + 1_800_000;
    let server = AnswerServer::start(move |r| {
        if r.method != "POST" || r.path != "/api/query" {
            return (404, String::new());
        }
        let (start, end, _) = query_of(r);
        if end - start > 1_900_000 {
            return (
                413,
                "Sorry, you have attempted to fetch more than our limit".into(),
            );
        }
        if start == second_half {
            return (400, NO_SUCH_NAME.into());
        }
        (200, one_point(r, "dc1"))
    });
    let dir = tempfile::tempdir().unwrap();
    let out = run_pipeline(&pipeline(dir.path(), &server.url, ""));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let m = manifest(&dir.path().join("out"));
    assert_eq!(m["splits"], 2, "{m}");
    assert_eq!(m["failures"].as_array().unwrap().len(), 1, "{m}");
    assert_eq!(m["windows_committed"], 1, "{m}");
    assert_eq!(m["units_done"], 1, "the failed split unit is not done: {m}");
}

/// When a unit of the same metric fails after this one: a unit's rows go to the writers as soon
/// as it comes (units arrive in the files' sort order), so the one before the failure was
/// handed over and counts; the failed one does not. Two datacenters (discovered by lookup), the
/// second one's query of the second window refused.
#[test]
fn units_done_counts_the_units_handed_over_before_a_failure_in_their_window() {
    let second = ms(START) + 3_600_000;
    let server = AnswerServer::start(move |r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/api/search/lookup") => (
            200,
            format!(
                "{{\"type\":\"LOOKUP\",\"metric\":\"{METRIC}\",\"results\":[\
                 {{\"tags\":{{\"datacenter\":\"dc1\",\"vm\":\"vm-dc1\"}}}},\
                 {{\"tags\":{{\"datacenter\":\"dc2\",\"vm\":\"vm-dc2\"}}}}]}}"
            ),
        ),
        ("POST", "/api/query") => {
            let q: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            let dc = q["queries"][0]["filters"]
                .as_array()
                .and_then(|f| f.iter().find(|f| f["tagk"] == "datacenter"))
                .and_then(|f| f["filter"].as_str())
                .unwrap_or("dc1")
                .to_string();
            let (start, _, _) = query_of(r);
            if start == second && dc == "dc2" {
                return (400, NO_SUCH_NAME.into());
            }
            (200, one_point(r, &dc))
        }
        _ => (404, String::new()),
    });
    let dir = tempfile::tempdir().unwrap();
    let out = run_pipeline(&pipeline_with(dir.path(), &server.url, "lookup", ""));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let m = manifest(&dir.path().join("out"));
    assert_eq!(m["units_planned"], 4, "{m}");
    assert_eq!(m["failures"].as_array().unwrap().len(), 1, "{m}");
    assert_eq!(m["windows_committed"], 1, "{m}");
    assert_eq!(
        m["units_done"], 3,
        "the first window's two units, and dc1 of the failed window, written before dc2 failed: {m}"
    );
}

/// And a window abandoned because its files could not be published still counts its units:
/// their data was fetched and handed to the writers (the write failure is its own entry).
/// The second window's date folder is blocked by a file.
#[test]
fn units_done_counts_the_units_of_a_window_whose_write_failed() {
    let server = AnswerServer::start(|r| {
        if r.method != "POST" || r.path != "/api/query" {
            return (404, String::new());
        }
        (200, one_point(r, "dc1"))
    });
    let dir = tempfile::tempdir().unwrap();
    // Two windows on two dates: the second date's folder cannot be created.
    let blocked = dir.path().join("out/vm_metrics/date=2026-11-02");
    std::fs::create_dir_all(blocked.parent().unwrap()).unwrap();
    std::fs::write(&blocked, b"in the way").unwrap();
    let p = pipeline(dir.path(), &server.url, "");
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace(
            &format!("start = \"{START}\""),
            "start = \"2026-11-01T23:00:00Z\"",
        )
        .replace(
            &format!("end = \"{END}\""),
            "end = \"2026-11-02T01:00:00Z\"",
        );
    std::fs::write(&p, text).unwrap();
    let out = run_pipeline(&p);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let m = manifest(&dir.path().join("out"));
    assert_eq!(m["windows_committed"], 1, "{m}");
    let failures = m["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 1, "{m}");
    assert_eq!(failures[0]["metric"], "*", "a write failure: {m}");
    assert_eq!(m["units_done"], 2, "{m}");
}

/// A small simulator pipeline for the checks of configuration mistakes.
fn sim_pipeline(dir: &Path, start: &str, sink_extra: &str) -> PathBuf {
    let source = "url = \"sim\"\nrequests_per_second = 0\n[source.sim]\ndatacenters = 1\n\
                  hosts_per_datacenter = 1\nvms_per_datacenter = 1\nfilers_per_datacenter = 1";
    let scope = format!("start = \"{start}\"\nend = \"{END}\"\nwindow = \"1h\"");
    let tables = format!("[[table]]\nname = \"vm_metrics\"\nmetrics = [\"{METRIC}\"]");
    let sink = format!("url = \"{}\"\n{sink_extra}", dir.join("out").display());
    write_pipeline_with_sink(dir, "times", source, &scope, &tables, &sink)
}

/// Times before 1970 are refused like `-5`, in the pipeline file (`validate`) and in the
/// flags (`run --start`, `--now`), exit 2, the message naming the key and the accepted forms;
/// nothing is written.
#[test]
fn times_before_1970_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (start, args, key) in [
        ("1969-12-31T00:00:00Z", vec!["validate"], "scope.start"),
        ("3000y-ago", vec!["validate"], "scope.start"),
        (START, vec!["run", "--start", "3000y-ago"], "--start"),
        (START, vec!["run", "--end", "1960/01/01"], "--end"),
        (START, vec!["run", "--now", "1969/07/20"], "--now"),
    ] {
        let p = sim_pipeline(dir.path(), start, "");
        let mut cmd = vec![args[0], p.to_str().unwrap()];
        cmd.extend(&args[1..]);
        let out = run(&cmd);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {}", describe(&out));
        assert!(
            err.contains(&format!("{key}: invalid time")),
            "{cmd:?}: {err}"
        );
        assert!(
            err.contains("before 1970-01-01") && err.contains("'<n><unit>-ago'"),
            "{cmd:?}: {err}"
        );
        assert!(!dir.path().join("out/vm_metrics").exists(), "{cmd:?}");
    }
}

/// `validate` refuses an S3 part size S3 would refuse at the end of a long upload.
#[test]
fn validate_refuses_a_part_size_below_s3s_minimum() {
    let dir = tempfile::tempdir().unwrap();
    let p = sim_pipeline(dir.path(), START, "");
    let text = std::fs::read_to_string(&p).unwrap().replace(
        &format!("url = \"{}\"", dir.path().join("out").display()),
        "url = \"s3://bucket/prefix\"\n[sink.s3]\npart_size = \"1MiB\"",
    );
    std::fs::write(&p, text).unwrap();
    let out = run(&["validate", p.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        err.contains("sink.s3.part_size") && err.contains("minimum part size of 5MiB"),
        "{err}"
    );
}
