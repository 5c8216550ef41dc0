//! The commands other than `run`: validate, plan, metrics, sim, help; exit codes and messages.

use crate::common::*;

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn every_command_has_help() {
    for cmd in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["plan", "--help"],
        vec!["validate", "--help"],
        vec!["metrics", "--help"],
        vec!["sim", "--help"],
    ] {
        let out = run(&cmd);
        assert!(out.status.success(), "{cmd:?}: {}", describe(&out));
        assert!(stdout(&out).contains("Usage"), "{cmd:?}");
    }
}

#[test]
fn shipped_pipelines_validate() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = validate_with_token_env(&[
        &format!("{root}/pipelines/demo.toml"),
        &format!("{root}/pipelines/vscope.toml"),
    ]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!stdout(&out).contains("test-token-value"));
    // Without the token variable, the real pipeline names the variable and the key.
    let out = bin()
        .args(["validate", &format!("{root}/pipelines/vscope.toml")])
        .env_remove("VSCOPE_METRICS_TOKEN")
        .env(
            "VSCOPE_WARP_ENDPOINT",
            "https://warp10.gra1-ovh.metrics.ovh.net",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("VSCOPE_METRICS_TOKEN") && err.contains("source.token"),
        "{err}"
    );
    // Without the endpoint variable: the key, the variable, and both ways to give it.
    let out = bin()
        .args(["validate", &format!("{root}/pipelines/vscope.toml")])
        .env("VSCOPE_METRICS_TOKEN", "test-token-value")
        .env_remove("VSCOPE_WARP_ENDPOINT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = stderr(&out);
    assert!(
        err.contains("source.url")
            && err.contains("VSCOPE_WARP_ENDPOINT is not set")
            && err.contains("warpEndpoint")
            && err.contains("leave source.url out when [source.ovh] user_id"),
        "{err}"
    );
}

#[test]
fn invalid_pipelines_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[scope]\nstart = \"1d-ago\"\nwindow = \"7h\"",
            "scope.window",
        ),
        ("[scope]\nstart = \"yesterday\"", "scope.start"),
        ("[scope]\nstart = \"1d-ago\"\nmetric = [\"x\"]", "metric"),
    ];
    for (i, (scope, key)) in cases.iter().enumerate() {
        let text = format!(
            "name = \"bad\"\n[source]\nurl = \"sim\"\n{scope}\n[[table]]\nname = \"vm_metrics\"\nmetrics = [\"vscope.vm.*\"]\n[sink]\nurl = \"{}\"\n",
            dir.path().join("out").display()
        );
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let out = run(&["validate", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(stderr(&out).contains(key), "{key}: {}", describe(&out));
        let out = run(&["run", path.to_str().unwrap()]);
        assert_eq!(
            out.status.code(),
            Some(2),
            "run must refuse it too: {}",
            describe(&out)
        );
    }
    assert!(
        !dir.path().join("out").exists(),
        "nothing written for an invalid pipeline"
    );
}

#[test]
fn metrics_lists_the_catalogue() {
    let out = run(&["metrics", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let metrics = v.as_array().unwrap();
    assert_eq!(
        metrics.iter().filter(|m| m["documented"] == true).count(),
        20
    );
    let text = stdout(&run(&["metrics"]));
    assert!(text.contains("vscope.host.net.rx") && text.contains("nicname"));
}

#[test]
fn plan_shows_units_without_fetching_data() {
    let sim = SimProcess::start(&["--dialect", "opentsdb", "--token", "plan-token"]);
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "url = \"{}\"\ntoken = \"plan-token\"\ndialect = \"auto\"",
        sim.url
    );
    let p = write_pipeline(
        dir.path(),
        "plan",
        &source,
        "2026-11-01T00:00:00Z",
        "2026-11-02T00:00:00Z",
        "6h",
        TABLES,
    );
    let out = run(&["plan", p.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    let text = stdout(&out);
    assert!(text.contains("dialect opentsdb"), "{text}");
    // 23 metrics × 2 datacenters per window, 4 windows.
    assert!(
        text.contains("units    46 per window, 184 in all"),
        "{text}"
    );
    assert!(
        text.contains("[2026-11-01T18:00:00Z, 2026-11-02T00:00:00Z)"),
        "{text}"
    );
    let out = run(&["run", p.to_str().unwrap(), "--dry-run"]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(
        !dir.path().join("out/vm_metrics").exists(),
        "dry run writes no data"
    );
}

#[test]
fn a_refused_token_exits_3_without_printing_it() {
    let sim = SimProcess::start(&["--dialect", "ovh", "--token", "right-token-123"]);
    let dir = tempfile::tempdir().unwrap();
    let source = format!(
        "url = \"{}\"\ntoken = \"wrong-token-456\"\ndialect = \"ovh\"\nmax_attempts = 2",
        sim.url
    );
    let p = write_pipeline(
        dir.path(),
        "auth",
        &source,
        "2026-11-01T00:00:00Z",
        "2026-11-01T01:00:00Z",
        "1h",
        TABLES,
    );
    let out = bin()
        .args(["run", p.to_str().unwrap()])
        .env("RUST_LOG", "trace")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", describe(&out));
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(all.contains("refused the read token"), "{all}");
    assert!(
        !all.contains("wrong-token-456") && !all.contains("right-token-123"),
        "a token leaked:\n{all}"
    );
}

#[test]
fn sim_serves_until_killed() {
    let sim = SimProcess::start(&[]);
    assert!(sim.url.starts_with("http://127.0.0.1:"));
}
