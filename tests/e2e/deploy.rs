//! The container image and the Kubernetes manifests (issue 19): the manifests validate against
//! Kubernetes' own schemas (`kubernetes-validate --strict`, in the test venv: unknown or
//! mistyped fields fail), the pipeline they mount passes `vscope-etl validate`, and the Indexed
//! Job says what `--shard auto` needs. The image itself is not built here (no container runtime
//! on the test machine): its Dockerfile is checked for what the issue asks of it.

use std::path::{Path, PathBuf};

use crate::common::*;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

/// A manifest as JSON (PyYAML, which the validator brings into the venv).
fn manifest(name: &str) -> serde_json::Value {
    let out = std::process::Command::new(venv_python())
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(deploy_dir().join(name))
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: {}", describe(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let files = manifests();
    assert!(
        files.len() >= 4,
        "CronJob, Indexed Job, pipeline, Secret: {files:?}"
    );
    for file in files {
        let out = std::process::Command::new(venv_python())
            .args(["-m", "kubernetes_validate", "--strict", "--quiet"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            file.display(),
            describe(&out)
        );
    }
}

#[test]
fn the_mounted_pipeline_validates_and_the_indexed_job_agrees_with_itself() {
    let dir = tempfile::tempdir().unwrap();
    let config = manifest("pipeline.yaml");
    let toml = config["data"]["pipeline.toml"].as_str().unwrap();
    let path = dir.path().join("pipeline.toml");
    std::fs::write(&path, toml).unwrap();
    let out = validate_with_token_env(&[path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("test-token-value"));

    let job = manifest("indexed-job.yaml");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let container = &spec["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.windows(2).any(|w| w == ["--shard", "auto"]),
        "{args:?}"
    );
    let shards = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "VSCOPE_SHARDS")
        .expect("VSCOPE_SHARDS set: Kubernetes does not pass the count");
    assert_eq!(
        shards["value"].as_str().unwrap().parse::<u64>().unwrap(),
        spec["completions"].as_u64().unwrap(),
        "VSCOPE_SHARDS must equal completions"
    );
    assert_eq!(
        spec["parallelism"], spec["completions"],
        "the shards of a pipeline run side by side"
    );
    let cron = manifest("cronjob.yaml");
    for (name, job_spec, action) in [
        ("indexed-job.yaml", spec, "FailIndex"),
        (
            "cronjob.yaml",
            &cron["spec"]["jobTemplate"]["spec"],
            "FailJob",
        ),
    ] {
        let rule = &job_spec["podFailurePolicy"]["rules"][0];
        assert_eq!(rule["action"], action, "{name}");
        assert_eq!(
            rule["onExitCodes"]["values"],
            serde_json::json!([2, 3]),
            "{name}: configuration and authentication errors are not retried"
        );
    }

    // The binary accepts the Job's arguments: `plan` takes the same range and shard flags
    // (run against the demo pipeline, so nothing reaches a network).
    let range: Vec<&str> = args[3..].to_vec();
    let demo = format!("{}/pipelines/demo.toml", env!("CARGO_MANIFEST_DIR"));
    let out = bin()
        .current_dir(dir.path())
        .arg("plan")
        .arg(&demo)
        .args(&range)
        .env("JOB_COMPLETION_INDEX", "0")
        .env("VSCOPE_SHARDS", shards["value"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{range:?}: {}", describe(&out));
}

#[test]
fn the_image_is_multi_stage_non_root_with_the_binary_as_entrypoint() {
    let dockerfile =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Dockerfile")).unwrap();
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert_eq!(
        froms.len(),
        2,
        "a build stage and a runtime stage: {froms:?}"
    );
    assert!(
        froms[1].contains("distroless") && !froms[1].contains("rust"),
        "no toolchain in the runtime image: {}",
        froms[1]
    );
    let runtime = &dockerfile[dockerfile.rfind("FROM ").unwrap()..];
    assert!(runtime.contains("USER nonroot"), "non-root");
    assert!(runtime.contains("ENTRYPOINT [\"/usr/local/bin/vscope-etl\"]"));
    assert!(
        !runtime.contains("COPY . "),
        "no source in the runtime image"
    );
    let ignore =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".dockerignore"))
            .unwrap();
    assert!(
        ignore.lines().any(|l| l == "target"),
        "no build output in the context"
    );
}
