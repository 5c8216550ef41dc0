//! Live data through OVHcloud API v6 (issue 5): `inventory` and `token` against the simulator,
//! refused credentials (exit 3, no secret printed), a run whose token and series come from
//! API v6, the reconciliation in the manifest, and DuckDB joining metrics with the snapshots.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMillisecondType};
use vscope_etl::sim::{Pcc, PccObjects, SimConfig};

use crate::common::*;

const SIZES: &str = "[source.sim]\ndatacenters = 2\nhosts_per_datacenter = 2\nvms_per_datacenter = 5\nfilers_per_datacenter = 2";
const START: &str = "2026-11-01T00:00:00Z";
const END: &str = "2026-11-01T06:00:00Z";
const VM_TABLE: &str =
    "[[table]]\nname = \"vm_metrics\"\nmetrics = [\"vscope.vm.cpu.*\", \"vscope.vm.mem.*\"]\n";
const ALL_TABLES: &str = "[[table]]\nname = \"vm_metrics\"\nmetrics = [\"vscope.vm.*\"]\n[[table]]\nname = \"host_metrics\"\nmetrics = [\"vscope.host.*\"]\n[[table]]\nname = \"filer_metrics\"\nmetrics = [\"vscope.filer.*\"]\n";

fn cfg() -> SimConfig {
    sim_config(2, 2, 5, 2)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One snapshot table, all files concatenated.
fn table(sink: &Path, name: &str) -> Vec<RecordBatch> {
    let files = parquet_files(sink, name);
    assert!(
        !files.is_empty(),
        "no {name} files under {}",
        sink.display()
    );
    files.iter().flat_map(|f| read_file(f)).collect()
}

fn strings(batches: &[RecordBatch], col: &str) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column_by_name(col).unwrap().as_string::<i32>().clone();
            (0..a.len())
                .map(move |i| (!a.is_null(i)).then(|| a.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn ints(batches: &[RecordBatch], col: &str) -> Vec<Option<i64>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column_by_name(col)
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone();
            (0..a.len())
                .map(move |i| (!a.is_null(i)).then(|| a.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn manifest(sink: &Path) -> serde_json::Value {
    let mut runs: Vec<_> = std::fs::read_dir(sink.join("_runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    runs.sort();
    serde_json::from_slice(&std::fs::read(runs.last().unwrap()).unwrap()).unwrap()
}

#[test]
fn inventory_writes_the_simulator_objects_as_snapshot_tables() {
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "url = \"sim\"\nrequests_per_second = 0\n{SIZES}\n[source.ovh]\nservice_name = \"pcc-37-187-228-180\""
    );
    let p = write_pipeline(dir.path(), "inv", &source, START, END, "6h", VM_TABLE);
    let out = run(&[
        "inventory",
        p.to_str().unwrap(),
        "--now",
        "2026-11-02T03:04:05Z",
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("2 datacenters, 4 filers, 4 hosts, 10 VMs"),
        "{stdout}"
    );
    let sink = dir.path().join("out");
    for t in ["filers", "hosts", "vms"] {
        assert_eq!(
            parquet_files(&sink, t),
            [sink.join(format!("{t}/date=2026-11-02/part-20261102T030405Z.parquet"))],
            "{t}: one file in the snapshot's date partition"
        );
    }
    let objects = PccObjects::new(&cfg());
    let pcc = Pcc::new(&cfg());

    // Declared schemas, exactly.
    for t in ["filers", "hosts", "vms"] {
        let batches = table(&sink, t);
        let declared = vscope_etl::schema::inventory_schema(t).unwrap();
        vscope_etl::schema::check_conforms(t, &declared, &batches[0].schema()).unwrap();
        let ts = batches[0]
            .column_by_name("snapshot_ts")
            .unwrap()
            .as_primitive::<TimestampMillisecondType>()
            .value(0);
        assert_eq!(ts, ms("2026-11-02T03:04:05Z"), "{t}");
    }

    // VMs: ids, moRefs (the vm label), names, hosts, datastores, power state.
    let vms = table(&sink, "vms");
    let got: Vec<(String, i64, String, String, String)> = strings(&vms, "datacenter")
        .into_iter()
        .zip(ints(&vms, "vm_id"))
        .zip(strings(&vms, "vm"))
        .zip(strings(&vms, "name"))
        .zip(strings(&vms, "host"))
        .map(|((((dc, id), vm), name), host)| {
            (
                dc.unwrap(),
                id.unwrap(),
                vm.unwrap(),
                name.unwrap(),
                host.unwrap(),
            )
        })
        .collect();
    let mut want: Vec<(String, i64, String, String, String)> = objects
        .datacenters
        .iter()
        .flat_map(|d| {
            d.vms.iter().map(|v| {
                (
                    d.name.clone(),
                    v.id,
                    v.mo_ref.clone(),
                    v.name.clone(),
                    v.host.clone().unwrap(),
                )
            })
        })
        .collect();
    want.sort_by(|a, b| (&a.0, &a.2).cmp(&(&b.0, &b.2)));
    assert_eq!(got, want);
    assert!(
        strings(&vms, "power_state")
            .iter()
            .all(|s| s.as_deref() == Some("poweredOn"))
    );
    let ds = vms[0]
        .column_by_name("datastores")
        .unwrap()
        .as_list::<i32>();
    let first = ds.value(0);
    let first_vm = &objects.datacenters[0].vms[0];
    assert_eq!(
        first.as_string::<i32>().value(0),
        first_vm.filer.as_deref().unwrap()
    );

    // The vm label of every series is a VM of the snapshot, and the reverse.
    let series_vms: BTreeSet<(String, String)> = pcc
        .series()
        .iter()
        .filter_map(|s| Some((s.tags["datacenter"].clone(), s.tags.get("vm")?.clone())))
        .collect();
    let table_vms: BTreeSet<(String, String)> =
        got.iter().map(|r| (r.0.clone(), r.2.clone())).collect();
    assert_eq!(series_vms, table_vms);

    // Hosts: ids and names (the host label); VM counts.
    let hosts = table(&sink, "hosts");
    let names: Vec<String> = strings(&hosts, "host").into_iter().flatten().collect();
    let mut want: Vec<String> = objects
        .datacenters
        .iter()
        .flat_map(|d| d.hosts.iter().map(|h| h.name.clone()))
        .collect();
    want.sort();
    assert_eq!(names, want);
    assert_eq!(
        ints(&hosts, "vm_total").iter().flatten().sum::<i64>(),
        10,
        "every VM on one host"
    );

    // Filers: names (the datastore label) and the capacity of the metrics model.
    let filers = table(&sink, "filers");
    let fnames: Vec<String> = strings(&filers, "datastore")
        .into_iter()
        .flatten()
        .collect();
    let sizes = ints(&filers, "size_value");
    let used = pcc
        .metric_series("vscope.filer.datastore.diskspace.used")
        .unwrap();
    for (name, size) in fnames.iter().zip(&sizes) {
        let idx = used
            .clone()
            .find(|&i| pcc.series()[i].tags["datastore"] == *name)
            .unwrap();
        let gb = (pcc.filer_capacity_kb(idx).unwrap() / 1024.0 / 1024.0).round() as i64;
        assert_eq!(*size, Some(gb), "{name}");
    }
    assert_eq!(fnames.len(), 4);
}

/// A simulator child with its own API v6 secret, and a pipeline that uses it over HTTP.
fn external_pipeline(
    dir: &Path,
    sim: &SimProcess,
    extra_source: &str,
    tables: &str,
) -> std::path::PathBuf {
    let source = format!(
        "url = \"{url}\"\nrequests_per_second = 0\n{extra_source}\n[source.ovh]\nendpoint = \"{url}/1.0\"\n\
         application_key = \"vscope-sim-ak\"\napplication_secret = \"${{TEST_OVH_SECRET}}\"\n\
         consumer_key = \"${{TEST_OVH_CK}}\"\nservice_name = \"pcc-37-187-228-180\"\nuser_id = 1",
        url = sim.url
    );
    write_pipeline(dir, "ext", &source, START, END, "6h", tables)
}

const RIGHT_SECRET: &str = "right-application-secret-1234";
const WRONG_SECRET: &str = "wrong-application-secret-5678";
const CONSUMER_KEY: &str = "consumer-key-abcdef-123456";

/// Runs with the API v6 keys in the environment and `RUST_LOG=trace`, so that a secret logged
/// anywhere would show.
fn with_keys(cmd: &mut Command, secret: &str) -> Output {
    cmd.env("RUST_LOG", "trace")
        .env("TEST_OVH_SECRET", secret)
        .env("TEST_OVH_CK", CONSUMER_KEY)
        .output()
        .unwrap()
}

#[test]
fn a_bad_secret_exits_3_with_a_clear_message_and_no_secret() {
    let sim = SimProcess::start(&[
        "--ovh-application-secret",
        RIGHT_SECRET,
        "--ovh-consumer-key",
        CONSUMER_KEY,
        "--token",
        "metrics-read-token-42",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let p = external_pipeline(dir.path(), &sim, "", VM_TABLE);
    for cmd in ["inventory", "token", "run"] {
        let out = with_keys(bin().args([cmd, p.to_str().unwrap()]), WRONG_SECRET);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(3), "{cmd}: {}", describe(&out));
        assert!(
            all.contains("Invalid signature") && all.contains("source.ovh.application_secret"),
            "{cmd}: {all}"
        );
        for secret in [
            WRONG_SECRET,
            RIGHT_SECRET,
            CONSUMER_KEY,
            "metrics-read-token-42",
        ] {
            assert!(!all.contains(secret), "{cmd} printed a secret: {all}");
        }
    }
    // With the right secret the same pipeline works (the failure above was the secret).
    let out = with_keys(bin().args(["token", p.to_str().unwrap()]), RIGHT_SECRET);
    assert!(out.status.success(), "{}", describe(&out));
    let all = text(&out);
    assert!(
        all.contains(&format!("opentsdb_endpoint  {}", sim.url)),
        "{all}"
    );
    assert!(
        !all.contains("metrics-read-token-42") && !all.contains(RIGHT_SECRET),
        "{all}"
    );
    // --export prints the token on purpose, as shell lines.
    let out = with_keys(
        bin().args(["token", p.to_str().unwrap(), "--export"]),
        RIGHT_SECRET,
    );
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("export VSCOPE_METRICS_TOKEN='metrics-read-token-42'"),
        "{stdout}"
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("metrics-read-token-42"));
}

#[test]
fn a_missing_right_is_named_and_a_withdrawn_call_explained() {
    // A consumer key allowed to read, not to create metrics tokens.
    let sim = SimProcess::start(&[
        "--ovh-application-secret",
        RIGHT_SECRET,
        "--ovh-consumer-key",
        CONSUMER_KEY,
        "--ovh-rule",
        "GET /dedicatedCloud/*",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let p = external_pipeline(dir.path(), &sim, "", VM_TABLE);
    let out = with_keys(bin().args(["token", p.to_str().unwrap()]), RIGHT_SECRET);
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let all = text(&out);
    assert!(
        all.contains("NOT_GRANTED_CALL")
            && all.contains("lacks the right POST /dedicatedCloud/*/user/*/metricsToken"),
        "{all}"
    );
    // Reading is granted: the inventory works with the same key.
    let out = with_keys(bin().args(["inventory", p.to_str().unwrap()]), RIGHT_SECRET);
    assert!(out.status.success(), "{}", describe(&out));

    // A 404 on metricsToken: said plainly, with the way out.
    let sim = SimProcess::start(&[
        "--ovh-application-secret",
        RIGHT_SECRET,
        "--ovh-consumer-key",
        CONSUMER_KEY,
    ]);
    let p = external_pipeline(dir.path(), &sim, "", VM_TABLE);
    let text_404 = std::fs::read_to_string(&p)
        .unwrap()
        .replace("user_id = 1", "user_id = 99");
    std::fs::write(&p, text_404).unwrap();
    let out = with_keys(bin().args(["token", p.to_str().unwrap()]), RIGHT_SECRET);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let all = text(&out);
    assert!(
        all.contains("withdrawn from the public API") && all.contains("set source.token"),
        "{all}"
    );
}

/// A simulator child whose metrics side requires the token its API v6 issues
/// (`metrics-read-token-42`), with the secrets of [`with_keys`] and the PCC of [`cfg`].
fn token_sim() -> SimProcess {
    SimProcess::start(&[
        "--ovh-application-secret",
        RIGHT_SECRET,
        "--ovh-consumer-key",
        CONSUMER_KEY,
        "--token",
        "metrics-read-token-42",
        "--datacenters",
        "2",
        "--hosts",
        "2",
        "--vms",
        "5",
        "--filers",
        "2",
    ])
}

/// The `vm_metrics` table of [`VM_TABLE`] under `sink` holds exactly the cpu and mem points
/// the simulator of [`token_sim`] stores over `START..END`.
fn assert_vm_table_is_the_simulators(sink: &Path) {
    let mut got: Vec<RawRow> = parquet_files(sink, "vm_metrics")
        .iter()
        .flat_map(|f| read_file(f))
        .flat_map(|b| raw_rows(&b))
        .collect();
    let mut want: Vec<RawRow> = expected_rows(&cfg(), "vscope.vm.", ms(START), ms(END))
        .into_iter()
        .filter(|r| r.0.0.starts_with("vscope.vm.cpu.") || r.0.0.starts_with("vscope.vm.mem."))
        .collect();
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    want.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert!(!want.is_empty());
    assert_eq!(got.len(), want.len());
    assert!(got == want, "rows differ from the simulator's");
}

#[test]
fn a_pipeline_with_api_v6_and_no_token_runs_end_to_end() {
    // The metrics side requires a token; the pipeline has none: it must fetch it.
    let sim = token_sim();
    let dir = tempfile::tempdir().unwrap();
    let p = external_pipeline(dir.path(), &sim, "discovery = \"inventory\"", VM_TABLE);
    let out = with_keys(
        bin().args(["run", p.to_str().unwrap(), "--json"]),
        RIGHT_SECRET,
    );
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!text(&out).contains("metrics-read-token-42"));
    let sink = dir.path().join("out");
    // Metrics extracted: exactly what the simulator stores.
    assert_vm_table_is_the_simulators(&sink);
    // Labels from the inventory, no lookup; the inventory matches the series.
    let m = manifest(&sink);
    let inv = &m["inventory"];
    assert_eq!(inv["vms"], 10);
    assert_eq!(inv["files"].as_array().unwrap().len(), 3, "{inv}");
    let r = &inv["reconciliation"];
    assert_eq!(r["missing_on_server_count"], 0, "{r}");
    assert_eq!(r["not_in_inventory_count"], 0, "{r}");
    assert_eq!(r["matched"], r["inventory_series"]);
    assert_eq!(r["inventory_series"], 10 * 4, "10 VMs x 4 cpu/mem metrics");
    assert_eq!(m["series_discovered"], 40);
    // The plan command uses the inventory too.
    let out = with_keys(bin().args(["plan", p.to_str().unwrap()]), RIGHT_SECRET);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("pcc-37-187-228-180_datacenter869, pcc-37-187-228-180_datacenter870"),
        "{stdout}"
    );
}

/// `source.protocol = "warp10"` with the token from API v6 and no `source.url`: the token's
/// `warpEndpoint` (the simulator's `/warp10`) is read, with the issued token, and the table
/// holds exactly what the simulator stores.
#[test]
fn without_source_url_warp10_reads_the_tokens_warp_endpoint() {
    let sim = token_sim();
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "protocol = \"warp10\"\nrequests_per_second = 0\n[source.ovh]\nendpoint = \"{url}/1.0\"\n\
         application_key = \"vscope-sim-ak\"\napplication_secret = \"${{TEST_OVH_SECRET}}\"\n\
         consumer_key = \"${{TEST_OVH_CK}}\"\nservice_name = \"pcc-37-187-228-180\"\nuser_id = 1",
        url = sim.url
    );
    let p = write_pipeline(dir.path(), "tokwarp", &source, START, END, "6h", VM_TABLE);
    let out = with_keys(
        bin().args(["run", p.to_str().unwrap(), "--json"]),
        RIGHT_SECRET,
    );
    assert!(out.status.success(), "{}", describe(&out));
    let all = text(&out);
    assert!(!all.contains("metrics-read-token-42"), "{all}");
    let sink = dir.path().join("out");
    assert_eq!(manifest(&sink)["dialect"], "warp10");
    assert_vm_table_is_the_simulators(&sink);
}

#[test]
fn without_source_url_the_token_endpoint_is_used() {
    // The metrics side requires the token API v6 issues, and its metricsToken answer names the
    // simulator itself as opentsdbEndpoint; the pipeline has neither url nor token.
    let sim = token_sim();
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "requests_per_second = 0\n[source.ovh]\nendpoint = \"{url}/1.0\"\n\
         application_key = \"vscope-sim-ak\"\napplication_secret = \"${{TEST_OVH_SECRET}}\"\n\
         consumer_key = \"${{TEST_OVH_CK}}\"\nservice_name = \"pcc-37-187-228-180\"\nuser_id = 1",
        url = sim.url
    );
    let p = write_pipeline(dir.path(), "tokurl", &source, START, END, "6h", VM_TABLE);
    // validate needs no network: a missing url is fine when the token comes from API v6.
    let out = with_keys(bin().args(["validate", p.to_str().unwrap()]), RIGHT_SECRET);
    assert!(out.status.success(), "{}", describe(&out));
    let out = with_keys(
        bin().args(["run", p.to_str().unwrap(), "--json"]),
        RIGHT_SECRET,
    );
    assert!(out.status.success(), "{}", describe(&out));
    let all = text(&out);
    assert!(!all.contains("metrics-read-token-42"), "{all}");
    assert!(
        !all.contains("another OpenTSDB endpoint"),
        "no warning when the endpoint comes from the token: {all}"
    );
    assert_vm_table_is_the_simulators(&dir.path().join("out"));

    // Without [source.ovh] user_id there is no token to take the endpoint from.
    let text_no_user = std::fs::read_to_string(&p)
        .unwrap()
        .replace("user_id = 1", "");
    std::fs::write(&p, text_no_user).unwrap();
    let out = with_keys(bin().args(["validate", p.to_str().unwrap()]), RIGHT_SECRET);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let all = text(&out);
    assert!(
        all.contains("source.url") && all.contains("is not set") && all.contains("user_id"),
        "{all}"
    );
}

#[test]
fn the_manifest_reports_series_only_in_the_inventory_or_only_on_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "url = \"sim\"\nrequests_per_second = 0\n{SIZES}\ninventory_drift = 1\n[source.ovh]\nuser_id = 1"
    );
    let p = write_pipeline(dir.path(), "drift", &source, START, END, "6h", VM_TABLE);
    let out = run(&["run", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    let r = manifest(&dir.path().join("out"))["inventory"]["reconciliation"].clone();
    // Per datacenter one VM deleted from the API and one API-only VM, 4 metrics each.
    assert_eq!(r["missing_on_server_count"], 2 * 4, "{r}");
    assert_eq!(r["not_in_inventory_count"], 2 * 4, "{r}");
    let missing: BTreeSet<&str> = r["missing_on_server"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"].as_str().unwrap())
        .collect();
    let drifted = PccObjects::new(&SimConfig {
        inventory_drift: 1,
        ..cfg()
    });
    let new_vms: BTreeSet<&str> = drifted
        .datacenters
        .iter()
        .flat_map(|d| {
            d.vms
                .iter()
                .filter(|v| !v.has_series)
                .map(|v| v.mo_ref.as_str())
        })
        .collect();
    assert_eq!(missing, new_vms);
}

#[test]
fn duckdb_joins_every_metric_row_with_its_object() {
    let py = venv_python();
    let dir = tempfile::tempdir().unwrap();
    let source =
        format!("url = \"sim\"\nrequests_per_second = 0\n{SIZES}\n[source.ovh]\nuser_id = 1");
    let p = write_pipeline(dir.path(), "join", &source, START, END, "6h", ALL_TABLES);
    let out = run(&["run", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    let out = Command::new(&py)
        .arg(format!(
            "{}/tests/py/inventory_join.py",
            env!("CARGO_MANIFEST_DIR")
        ))
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    let facts: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (table, objects) in [
        ("vm_metrics", 10),
        ("host_metrics", 4),
        ("filer_metrics", 4),
    ] {
        let f = &facts[table];
        let rows = expected_rows(
            &cfg(),
            &format!("vscope.{}.", &table[..table.find('_').unwrap()]),
            ms(START),
            ms(END),
        )
        .len();
        assert_eq!(f["rows"].as_u64().unwrap() as usize, rows, "{table}: {f}");
        assert_eq!(
            f["unmatched"], 0,
            "{table}: every metric row finds its object"
        );
        assert_eq!(f["matched"], f["rows"], "{table}");
        assert_eq!(
            f["with_attr"], f["rows"],
            "{table}: joined attributes are there"
        );
        assert_eq!(f["objects"], objects, "{table}");
        assert_eq!(
            f["types"]["snapshot_ts"], "TIMESTAMP WITH TIME ZONE",
            "{table}"
        );
    }
    let vms = &facts["vm_metrics"]["types"];
    assert_eq!(vms["vm_id"], "BIGINT");
    assert_eq!(vms["cpu_max"], "DOUBLE");
    assert_eq!(vms["datastores"], "VARCHAR[]");
    assert_eq!(facts["host_metrics"]["types"]["in_maintenance"], "BOOLEAN");
    assert_eq!(facts["vm_cpu_by_name"][0][1], "poweredOn");
}

#[test]
fn inventory_and_token_need_a_source_ovh_section() {
    let dir = tempfile::tempdir().unwrap();
    let p = write_pipeline(
        dir.path(),
        "plain",
        "url = \"sim\"",
        START,
        END,
        "6h",
        VM_TABLE,
    );
    for cmd in ["inventory", "token"] {
        let out = run(&[cmd, p.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(text(&out).contains("[source.ovh]"), "{}", describe(&out));
        let out = run(&[cmd, "--help"]);
        assert!(out.status.success());
    }
}

#[test]
fn shipped_api_v6_examples_validate() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = run(&["validate", &format!("{root}/pipelines/demo-inventory.toml")]);
    assert!(out.status.success(), "{}", describe(&out));
    // The commented [source.ovh] example of the real pipeline, uncommented, and the url and
    // token lines deleted as its comment says: both come from API v6.
    let real = std::fs::read_to_string(format!("{root}/pipelines/vscope.toml")).unwrap();
    let mut toml = String::new();
    for line in real.lines() {
        if line.starts_with("url = \"${VSCOPE_WARP_ENDPOINT}\"")
            || line.starts_with("token = \"${VSCOPE_METRICS_TOKEN}\"")
        {
            continue;
        }
        let line = line
            .strip_prefix("#[source.ovh]")
            .map(|_| "[source.ovh]".to_string())
            .or_else(|| {
                [
                    "endpoint",
                    "application_key",
                    "application_secret",
                    "consumer_key",
                    "service_name",
                    "user_id",
                ]
                .iter()
                .find(|k| line.starts_with(&format!("#{k} ")))
                .map(|_| line[1..].to_string())
            })
            .unwrap_or_else(|| line.to_string());
        toml.push_str(&line);
        toml.push('\n');
    }
    assert!(
        toml.contains("\n[source.ovh]\n")
            && toml.contains("\nuser_id = ")
            && !toml.contains("\nurl = \"${")
            && !toml.contains("\ntoken = "),
        "{toml}"
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("vscope.toml");
    std::fs::write(&p, toml).unwrap();
    let out = bin()
        .args(["validate", p.to_str().unwrap()])
        .env("OVH_APPLICATION_KEY", "ak")
        .env("OVH_APPLICATION_SECRET", "as-secret-value")
        .env("OVH_CONSUMER_KEY", "ck-secret-value")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!text(&out).contains("secret-value"));
}
