//! The pipeline file: parsing, validation and every refusal with its key.
use super::values::*;
use super::*;

const BASE: &str = r#"
name = "t"
[source]
url = "sim"
[scope]
start = "2026-11-01T00:00:00Z"
end = "2026-11-02T00:00:00Z"
window = "6h"
[[table]]
name = "vm_metrics"
metrics = ["vscope.vm.*"]
[[table]]
name = "vm_metrics_1h"
metrics = ["vscope.vm.cpu.*"]
downsample = "1h"
aggregates = ["avg", "p95", "count"]
[sink]
url = "./out"
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse_str(text: &str) -> Result<Pipeline, ConfigError> {
    parse(text, "test.toml", &no_env)
}

#[test]
fn parses_a_complete_pipeline() {
    let p = parse_str(BASE).unwrap();
    assert_eq!(p.name, "t");
    assert_eq!(p.scope.window_ms, 6 * 3_600_000);
    assert_eq!(p.tables.len(), 2);
    assert_eq!(p.tables[0].component, Component::Vm);
    assert!(p.tables[0].metrics.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        p.tables[1].metrics,
        ["vscope.vm.cpu.ready", "vscope.vm.cpu.usage.perc"]
    );
    assert!(matches!(p.source.endpoint, Endpoint::Sim(_)));
    assert_eq!(p.sink.partition_by, [PartitionKey::Date]);
}

#[test]
fn part_sizes_take_units_and_refuse_tiny_or_malformed_values() {
    assert_eq!(byte_size("k", "16MiB").unwrap(), 16 << 20);
    assert_eq!(byte_size("k", "5MB").unwrap(), 5_000_000);
    assert_eq!(byte_size("k", "65536").unwrap(), 65_536);
    for bad in [
        "1KiB",
        "16 furlongs",
        "MiB",
        "-5MiB",
        "99999999999999999999GiB",
    ] {
        let err = byte_size("sink.s3.part_size", bad).unwrap_err().to_string();
        assert!(err.contains("sink.s3.part_size"), "{bad}: {err}");
    }
    let with = BASE.replace(
        "url = \"./out\"",
        "url = \"s3://b/p\"\n[sink.s3]\npart_size = \"8MiB\"",
    );
    assert_eq!(parse_str(&with).unwrap().sink.s3.part_size, Some(8 << 20));
}

/// Times before 1970-01-01 (OpenTSDB's epoch, where nothing is stored) are refused like
/// `-5` is, whatever the form: a date, an RFC 3339 time, or a relative time that lands
/// before it; the message names the key and the accepted forms.
#[test]
fn scope_times_before_1970_are_refused_naming_the_key_and_the_forms() {
    for (key, value) in [
        ("start", "1969-12-31T23:59:59Z"),
        ("start", "1960/01/01"),
        ("start", "3000y-ago"),
        ("start", "57y-ago"),
        ("start", "-5"),
        ("end", "1969/12/31 12:00"),
    ] {
        let text = BASE.replace(
            &format!(
                "{key} = \"{}\"",
                if key == "start" {
                    "2026-11-01T00:00:00Z"
                } else {
                    "2026-11-02T00:00:00Z"
                }
            ),
            &format!("{key} = \"{value}\""),
        );
        let err = parse_str(&text).unwrap_err().to_string();
        assert!(err.starts_with(&format!("scope.{key}: ")), "{value}: {err}");
        assert!(err.contains(&format!("'{value}'")), "{value}: {err}");
        assert!(err.contains("1970"), "{value}: names the limit: {err}");
        assert!(
            err.contains("-ago") && err.contains("RFC 3339"),
            "{value}: lists the forms: {err}"
        );
    }
    // From 1970 on, every form still works.
    for start in ["1970-01-01T00:00:00Z", "1970/01/01", "0", "10y-ago"] {
        let text = BASE.replace(
            "start = \"2026-11-01T00:00:00Z\"",
            &format!("start = \"{start}\""),
        );
        assert!(parse_str(&text).is_ok(), "{start}");
    }
}

/// S3 refuses parts under 5 MiB (all but the last) with EntityTooSmall, and over 5 GiB:
/// `validate` refuses such a `part_size`, naming the limit and the fix; smaller parts only
/// with `allow_small_parts` (test servers such as moto lowered), down to 64 KiB.
#[test]
fn part_sizes_outside_s3s_limits_are_refused_at_validate() {
    let with = |s3: &str| {
        BASE.replace(
            "url = \"./out\"",
            &format!("url = \"s3://b/p\"\n[sink.s3]\n{s3}"),
        )
    };
    for (small, shown) in [
        ("1MiB", "'1MiB'"),
        ("5242879", "'5242879'"),
        ("5MB", "'5MB'"),
    ] {
        let err = parse_str(&with(&format!("part_size = \"{small}\"")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sink.s3.part_size"), "{small}: {err}");
        assert!(err.contains(shown), "{small}: {err}");
        assert!(err.contains("5MiB"), "names the minimum: {err}");
        assert!(err.contains("EntityTooSmall"), "{err}");
        assert!(err.contains("allow_small_parts"), "{err}");
    }
    let err = parse_str(&with("part_size = \"6GiB\""))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sink.s3.part_size") && err.contains("5GiB"),
        "{err}"
    );
    assert_eq!(
        parse_str(&with("part_size = \"5MiB\""))
            .unwrap()
            .sink
            .s3
            .part_size,
        Some(5 << 20)
    );
    assert_eq!(
        parse_str(&with("part_size = \"5GiB\""))
            .unwrap()
            .sink
            .s3
            .part_size,
        Some(5 << 30)
    );
    let small = with("part_size = \"64KiB\"\nallow_small_parts = true");
    assert_eq!(parse_str(&small).unwrap().sink.s3.part_size, Some(64 << 10));
    let tiny = with("part_size = \"1KiB\"\nallow_small_parts = true");
    let err = parse_str(&tiny).unwrap_err().to_string();
    assert!(err.contains("64KiB"), "{err}");
}

#[test]
fn server_side_downsampling_is_refused_for_aggregates_ovh_computes_otherwise() {
    let ovh = BASE.replace(
        "url = \"sim\"",
        "url = \"sim\"\ndialect = \"ovh\"\nquery_downsample = true",
    );
    let err = parse_str(&ovh).unwrap_err().to_string();
    assert!(
        err.contains("source.query_downsample")
            && err.contains("vm_metrics_1h")
            && err.contains("p95"),
        "{err}"
    );
    let tsdb = ovh.replace("dialect = \"ovh\"", "dialect = \"opentsdb\"");
    assert!(parse_str(&tsdb).unwrap().source.query_downsample);
    let auto = ovh.replace("dialect = \"ovh\"\n", "");
    assert!(parse_str(&auto).is_ok(), "auto is checked after detection");
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let err =
        parse_str(&BASE.replace("window = \"6h\"", "window = \"6h\"\nwindoww = 1")).unwrap_err();
    assert!(err.to_string().contains("windoww"), "{err}");
}

#[test]
fn env_vars_expand_and_missing_ones_name_the_key() {
    let env = |n: &str| (n == "TOK").then(|| "abc".to_string());
    assert_eq!(expand_env("x${TOK}y", "k", &env).unwrap(), "xabcy");
    let err = expand_env("${NOPE}", "source.token", &env)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("source.token") && err.contains("NOPE"),
        "{err}"
    );
    assert!(expand_env("${", "k", &env).is_err());
    assert!(expand_env("${1A}", "k", &env).is_err());
}

#[test]
fn real_endpoints_need_a_token_and_no_userinfo() {
    let text = BASE.replace("url = \"sim\"", "url = \"https://opentsdb.example\"");
    let err = parse_str(&text).unwrap_err().to_string();
    assert!(err.contains("source.token"), "{err}");
    let text = BASE.replace(
        "url = \"sim\"",
        "url = \"https://read:secret@opentsdb.example\"\ntoken = \"x\"",
    );
    let err = parse_str(&text).unwrap_err().to_string();
    assert!(
        err.contains("credentials") && !err.contains("secret@"),
        "{err}"
    );
}

#[test]
fn window_must_divide_a_day_and_buckets_the_window() {
    let err = parse_str(&BASE.replace("window = \"6h\"", "window = \"7h\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("scope.window"), "{err}");
    let err = parse_str(&BASE.replace("downsample = \"1h\"", "downsample = \"5h\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("downsample"), "{err}");
    assert!(parse_str(&BASE.replace("window = \"6h\"", "window = \"2d\"")).is_ok());
}

#[test]
fn retry_budget_deadline_and_sim_faults_are_read_and_checked() {
    use crate::config::RetryBudget;
    let with =
        |extra: &str| parse_str(&BASE.replace("url = \"sim\"", &format!("url = \"sim\"\n{extra}")));
    let p = parse_str(BASE).unwrap();
    assert_eq!(p.source.retry_budget, RetryBudget::Ratio(0.5));
    assert_eq!(p.source.deadline, None);
    let p = with("retry_budget = 0.1\ndeadline = \"50m\"").unwrap();
    assert_eq!(p.source.retry_budget, RetryBudget::Ratio(0.1));
    assert_eq!(p.source.deadline, Some(Duration::from_secs(3000)));
    assert_eq!(
        with("retry_budget = 25").unwrap().source.retry_budget,
        RetryBudget::Count(25)
    );
    assert_eq!(
        with("retry_budget = \"unlimited\"")
            .unwrap()
            .source
            .retry_budget,
        RetryBudget::Unlimited
    );
    for bad in [
        "retry_budget = 10.5",
        "retry_budget = -1",
        "retry_budget = \"lots\"",
    ] {
        let err = with(bad).unwrap_err().to_string();
        assert!(err.contains("source.retry_budget"), "{bad}: {err}");
    }
    let err = with("deadline = \"soon\"").unwrap_err().to_string();
    assert!(err.contains("source.deadline"), "{err}");
    let p = with("[source.sim]\nfaults = [\"503@first=2\", \"transient=0.1\"]\nfault_seed = 9")
        .unwrap();
    let sim = p.source.sim_config().unwrap();
    assert_eq!(sim.faults.len(), 2);
    assert_eq!(sim.fault_seed, 9);
    let err = with("[source.sim]\nfaults = [\"418\"]")
        .unwrap_err()
        .to_string();
    assert!(err.contains("source.sim.faults"), "{err}");
    let p = with(
        "[source.sim]\nerrors = \"head\"\nmax_fetch_points = 5000\nfetch_start = \"included\"",
    )
    .unwrap();
    let sim = p.source.sim_config().unwrap();
    assert_eq!(sim.errors, crate::sim::ErrorMode::Head);
    assert_eq!(sim.max_fetch_points, 5000);
    assert_eq!(sim.fetch_start, crate::sim::FetchStart::Included);
    for (bad, key) in [
        ("errors = \"json\"", "source.sim.errors"),
        ("fetch_start = \"open\"", "source.sim.fetch_start"),
    ] {
        let err = with(&format!("[source.sim]\n{bad}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{bad}: {err}");
    }
}

/// `source.gzip` and `[source.sim] gzip` are on unless turned off, each on its own.
#[test]
fn gzip_is_on_by_default_and_switchable_on_each_side() {
    let with = |extra: &str| {
        parse_str(&BASE.replace("url = \"sim\"", &format!("url = \"sim\"\n{extra}"))).unwrap()
    };
    let p = parse_str(BASE).unwrap();
    assert!(p.source.gzip && p.source.sim_config().unwrap().gzip);
    let p = with("gzip = false");
    assert!(!p.source.gzip && p.source.sim_config().unwrap().gzip);
    let p = with("[source.sim]\ngzip = false");
    assert!(p.source.gzip && !p.source.sim_config().unwrap().gzip);
}

#[test]
fn tables_are_checked() {
    let err = parse_str(&BASE.replace("metrics = [\"vscope.vm.*\"]", "metrics = [\"vscope.*\"]"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("mixes components"), "{err}");
    let err = parse_str(&BASE.replace("\"p95\"", "\"p96\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("aggregates"), "{err}");
    let err = parse_str(&BASE.replace("name = \"vm_metrics_1h\"", "name = \"vm_metrics\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("twice"), "{err}");
}

const OVH: &str = "[source.ovh]\nendpoint = \"ovh-eu\"\napplication_key = \"ak\"\n\
    application_secret = \"${AS}\"\nconsumer_key = \"${CK}\"\nservice_name = \"pcc-1-2-3-4\"\n";

fn real_source(extra: &str, ovh: &str) -> String {
    BASE.replace(
        "url = \"sim\"",
        &format!("url = \"https://opentsdb.example\"\n{extra}\n{ovh}"),
    )
}

#[test]
fn ovh_section_is_validated_and_secrets_wrapped() {
    let env = |n: &str| match n {
        "AS" => Some("app-secret-value".to_string()),
        "CK" => Some("consumer-key-value".to_string()),
        _ => None,
    };
    let text = real_source("token = \"t\"", OVH);
    let p = parse(&text, "t.toml", &env).unwrap();
    let o = p.source.ovh.as_ref().unwrap();
    assert_eq!(
        o.endpoint,
        OvhEndpoint::Url(url::Url::parse("https://eu.api.ovh.com/1.0").unwrap())
    );
    assert_eq!(
        o.credentials.application_secret.expose(),
        "app-secret-value"
    );
    assert_eq!(o.service_name, "pcc-1-2-3-4");
    assert!(!format!("{p:?}").contains("app-secret-value"));
    assert!(!format!("{p:?}").contains("consumer-key-value"));
    // Bad endpoint, bad service name, bad user id.
    for (from, to, key) in [
        ("\"ovh-eu\"", "\"ovh-mars\"", "source.ovh.endpoint"),
        ("\"pcc-1-2-3-4\"", "\"pcc/../x\"", "source.ovh.service_name"),
    ] {
        let err = parse(&text.replace(from, to), "t.toml", &env).unwrap_err();
        assert!(err.to_string().contains(key), "{err}");
    }
    let err = parse(
        &text.replace("service_name", "user_id = 0\nservice_name"),
        "t.toml",
        &env,
    )
    .unwrap_err();
    assert!(err.to_string().contains("source.ovh.user_id"), "{err}");
    let err = parse(&text.replace("service_name", "servic_name"), "t.toml", &env).unwrap_err();
    assert!(
        err.to_string().contains("servic_name"),
        "unknown keys: {err}"
    );
}

#[test]
fn ovh_keys_fall_back_to_the_standard_variables() {
    let env = |n: &str| match n {
        "OVH_ENDPOINT" => Some("ovh-ca".to_string()),
        "OVH_APPLICATION_KEY" => Some("ak-env".to_string()),
        "OVH_APPLICATION_SECRET" => Some("as-env".to_string()),
        "OVH_CONSUMER_KEY" => Some("ck-env".to_string()),
        _ => None,
    };
    let text = real_source("token = \"t\"", "[source.ovh]\nservice_name = \"pcc-x\"\n");
    let p = parse(&text, "t.toml", &env).unwrap();
    let o = p.source.ovh.unwrap();
    assert_eq!(o.credentials.application_key, "ak-env");
    assert_eq!(o.credentials.consumer_key.expose(), "ck-env");
    assert_eq!(
        o.endpoint,
        OvhEndpoint::Url(url::Url::parse("https://ca.api.ovh.com/1.0").unwrap())
    );
    // Without the variables, the error names the key and the variable.
    let err = parse(&text, "t.toml", &no_env).unwrap_err().to_string();
    assert!(
        err.contains("source.ovh.endpoint") && err.contains("OVH_ENDPOINT"),
        "{err}"
    );
    let err = parse(
        &text.replace("service_name", "endpoint = \"ovh-eu\"\nservice_name"),
        "t.toml",
        &no_env,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("source.ovh.application_key") && err.contains("OVH_APPLICATION_KEY"),
        "{err}"
    );
}

#[test]
fn token_may_come_from_the_api_and_discovery_from_the_inventory() {
    let env = |n: &str| Some(format!("value-of-{n}"));
    // No token and no user_id: still an error naming both ways out.
    let err = parse(&real_source("", OVH), "t.toml", &env)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("source.token") && err.contains("user_id"),
        "{err}"
    );
    let p = parse(
        &real_source("discovery = \"inventory\"", &format!("{OVH}user_id = 12\n")),
        "t.toml",
        &env,
    )
    .unwrap();
    assert!(p.source.token.is_empty());
    assert_eq!(p.source.discovery, Discovery::Inventory);
    assert_eq!(p.source.ovh.unwrap().user_id, Some(12));
    let err = parse_str(&BASE.replace("url = \"sim\"", "url = \"sim\"\ndiscovery = \"inventory\""))
        .unwrap_err()
        .to_string();
    assert!(err.contains("[source.ovh]"), "{err}");
}

#[test]
fn the_simulator_serves_api_v6_with_the_pipeline_settings() {
    let env = |n: &str| Some(format!("real-{n}"));
    let text = BASE.replace("url = \"sim\"", "url = \"sim\"\n[source.ovh]\nuser_id = 1");
    let p = parse(&text, "t.toml", &env).unwrap();
    let o = p.source.ovh.as_ref().unwrap();
    assert_eq!(o.endpoint, OvhEndpoint::Sim);
    // The OVH_* variables are not read for the simulator.
    assert_eq!(
        o.credentials.application_key,
        SimConfig::default().ovh_application_key
    );
    let cfg = p.source.sim_config().unwrap();
    assert_eq!(
        cfg.token,
        Some(cfg.issued_token()),
        "the simulator requires its token"
    );
    let text = text.replace(
        "user_id = 1",
        "user_id = 1\nservice_name = \"pcc-9\"\napplication_secret = \"s3\"",
    );
    let cfg = parse(&text, "t.toml", &env)
        .unwrap()
        .source
        .sim_config()
        .unwrap();
    assert_eq!(cfg.service_name, "pcc-9");
    assert_eq!(cfg.ovh_application_secret, "s3");
}

#[test]
fn source_url_may_be_left_out_only_when_the_token_comes_from_api_v6() {
    let env = |n: &str| Some(format!("value-of-{n}"));
    let without_url =
        |extra: &str, ovh: &str| BASE.replace("url = \"sim\"", &format!("{extra}\n{ovh}"));
    let ovh_user = format!("{OVH}user_id = 12\n");
    // No url, token from API v6: the endpoint is the token's.
    let p = parse(&without_url("", &ovh_user), "t.toml", &env).unwrap();
    assert!(matches!(p.source.endpoint, Endpoint::FromToken));
    assert!(p.source.sim_config().is_none());
    // Messages name the token's field of the protocol read.
    assert!(p.source.endpoint_text().contains("its opentsdbEndpoint"));
    let warp = parse(
        &without_url("protocol = \"warp10\"", &ovh_user),
        "t.toml",
        &env,
    )
    .unwrap();
    assert!(warp.source.endpoint_text().contains("its warpEndpoint"));
    // An empty url (e.g. a variable set to "") means the same.
    let p = parse(&without_url("url = \"\"", &ovh_user), "t.toml", &env).unwrap();
    assert!(matches!(p.source.endpoint, Endpoint::FromToken));
    // Otherwise it is an error naming the key and both ways out.
    for (extra, ovh) in [("", ""), ("", OVH), ("token = \"t\"", ovh_user.as_str())] {
        let err = parse(&without_url(extra, ovh), "t.toml", &env)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("source.url: is not set")
                && err.contains("opentsdbEndpoint")
                && err.contains("user_id"),
            "{extra} {ovh}: {err}"
        );
    }
    let err = parse(&without_url("[source.sim]\nseed = 1", ""), "t.toml", &env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("source.sim"), "{err}");
}

#[test]
fn source_url_reads_a_variable_and_an_unset_one_says_what_to_do() {
    let text = BASE.replace(
        "url = \"sim\"",
        "url = \"${VSCOPE_OPENTSDB_ENDPOINT}\"\ntoken = \"t\"",
    );
    let env = |n: &str| {
        (n == "VSCOPE_OPENTSDB_ENDPOINT")
            .then(|| " https://opentsdb.gra1-ovh.metrics.ovh.net ".to_string())
    };
    let p = parse(&text, "t.toml", &env).unwrap();
    match &p.source.endpoint {
        Endpoint::Url(u) => assert_eq!(u.host_str(), Some("opentsdb.gra1-ovh.metrics.ovh.net")),
        other => panic!("expected a URL, got {other:?}"),
    }
    let err = parse_str(&text).unwrap_err().to_string();
    assert!(
        err.starts_with("source.url: environment variable VSCOPE_OPENTSDB_ENDPOINT is not set: ")
            && err.contains("opentsdbEndpoint")
            && err.contains("vscope-etl token")
            && err.contains("leave source.url out when [source.ovh] user_id"),
        "{err}"
    );
    // Even with API v6 issuing the token: an unset variable is an error, never a silent
    // fallback (the url line is removed on purpose, or the variable exported).
    let with_api = format!("{}\n{OVH}user_id = 12\n", text.replace("token = \"t\"", ""));
    let env_api = |n: &str| (n != "VSCOPE_OPENTSDB_ENDPOINT").then(|| format!("v-{n}"));
    let err = parse(&with_api, "t.toml", &env_api)
        .unwrap_err()
        .to_string();
    assert!(err.contains("VSCOPE_OPENTSDB_ENDPOINT is not set"), "{err}");
    // Through Warp 10 the advice names the token's warpEndpoint, set or left out.
    let warp = text.replace(
        "url = \"${VSCOPE_OPENTSDB_ENDPOINT}\"",
        "protocol = \"warp10\"\nurl = \"${VSCOPE_WARP_ENDPOINT}\"",
    );
    let err = parse_str(&warp).unwrap_err().to_string();
    assert!(
        err.contains("VSCOPE_WARP_ENDPOINT is not set")
            && err.contains("warpEndpoint")
            && err.contains("warp10.gra1-ovh.metrics.ovh.net"),
        "{err}"
    );
    let err = parse_str(&warp.replace("url = \"${VSCOPE_WARP_ENDPOINT}\"\n", ""))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("source.url: is not set") && err.contains("warpEndpoint"),
        "{err}"
    );
    // Other keys keep the generic advice.
    let err = expand_env("${NOPE}", "sink.url", &no_env)
        .unwrap_err()
        .to_string();
    assert!(err.contains("export NOPE=..."), "{err}");
}

#[test]
fn rollups_accept_every_opentsdb_downsampling_function_named_as_written() {
    let all = "[\"avg\", \"sum\", \"zimsum\", \"min\", \"max\", \"mimmin\", \"mimmax\", \
        \"count\", \"dev\", \"first\", \"last\", \"p50\", \"p75\", \"p90\", \"p95\", \"p99\", \
        \"p999\", \"pfsum\", \"median\", \"mult\", \"diff\", \"squareSum\", \"ep50r3\", \
        \"ep75r3\", \"ep90r3\", \"ep95r3\", \"ep99r3\", \"ep999r3\", \"ep50r7\", \"ep75r7\", \
        \"ep90r7\", \"ep95r7\", \"ep99r7\", \"ep999r7\"]";
    let text = BASE.replace("[\"avg\", \"p95\", \"count\"]", all);
    let p = parse_str(&text).unwrap();
    let rollup = p.tables[1].rollup.as_ref().unwrap();
    let names: Vec<&str> = rollup.aggregates.iter().map(|a| a.name()).collect();
    let want: Vec<String> = all
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|n| n.trim().trim_matches('"').to_string())
        .collect();
    assert_eq!(names, want);
    // The column names are the names as written, in order; count alone is Int64.
    let schema = crate::schema::rollup_schema(p.tables[1].component, &rollup.aggregates);
    for name in &want {
        let field = schema.field_with_name(name).unwrap();
        let int = *field.data_type() == arrow::datatypes::DataType::Int64;
        assert_eq!(int, name == "count", "{name}");
    }
    // none, an unknown or a miscased name, or a repeat: refused naming the key.
    for (bad, says) in [
        ("[\"none\"]", "'none' cannot be used in a rollup"),
        (
            "[\"squaresum\"]",
            "'squaresum' is not an OpenTSDB downsampling function",
        ),
        (
            "[\"multiply\"]",
            "'multiply' is not an OpenTSDB downsampling function",
        ),
        ("[\"zimsum\", \"zimsum\"]", "'zimsum' is listed twice"),
    ] {
        let err = parse_str(&BASE.replace("[\"avg\", \"p95\", \"count\"]", bad))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("table[1].aggregates") && err.contains(says),
            "{bad}: {err}"
        );
    }
}

#[test]
fn server_side_downsampling_allows_what_the_server_computes_exactly() {
    let with = |dialect: &str, aggs: &str| {
        parse_str(
            &BASE
                .replace(
                    "url = \"sim\"",
                    &format!("url = \"sim\"\ndialect = \"{dialect}\"\nquery_downsample = true"),
                )
                .replace("[\"avg\", \"p95\", \"count\"]", aggs),
        )
    };
    // Erlenmeyer's zimsum, mimmin and mimmax are bucketizer.sum, .min, .max.
    assert!(with("ovh", "[\"zimsum\", \"mimmin\", \"mimmax\", \"first\"]").is_ok());
    for agg in [
        "median",
        "mult",
        "diff",
        "pfsum",
        "squareSum",
        "ep95r7",
        "p50",
        "dev",
    ] {
        let err = with("ovh", &format!("[\"{agg}\"]"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("source.query_downsample") && err.contains(&format!("'{agg}'")),
            "{agg}: {err}"
        );
        assert!(with("opentsdb", &format!("[\"{agg}\"]")).is_ok(), "{agg}");
    }
    let err = with("ovh", "[\"median\"]").unwrap_err().to_string();
    assert!(err.contains("no such downsampling function"), "{err}");
}

#[test]
fn empty_range_is_an_error() {
    let err = parse_str(&BASE.replace(
        "end = \"2026-11-02T00:00:00Z\"",
        "end = \"2026-11-01T00:00:00Z\"",
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("scope.end"), "{err}");
}

/// Issue 19: the shards of a job share the token's request rate unless told otherwise; an
/// unlimited rate stays unlimited; an unknown choice is refused naming the key.
#[test]
fn shards_share_the_request_rate_unless_each_is_asked() {
    let base = BASE.replace("url = \"sim\"", "url = \"sim\"\nrequests_per_second = 20");
    let p = parse_str(&base).unwrap();
    assert_eq!(p.source.shard_rate, ShardRate::Share);
    assert_eq!(p.for_shards(1).source.requests_per_second, 20.0);
    assert_eq!(p.for_shards(4).source.requests_per_second, 5.0);
    let each = parse_str(&base.replace(
        "requests_per_second = 20",
        "requests_per_second = 20\nshard_rate = \"each\"",
    ))
    .unwrap();
    assert_eq!(each.for_shards(4).source.requests_per_second, 20.0);
    let unlimited =
        parse_str(&base.replace("requests_per_second = 20", "requests_per_second = 0")).unwrap();
    assert_eq!(unlimited.for_shards(4).source.requests_per_second, 0.0);
    let err = parse_str(&base.replace(
        "requests_per_second = 20",
        "requests_per_second = 20\nshard_rate = \"all\"",
    ))
    .unwrap_err();
    assert!(err.to_string().contains("source.shard_rate"), "{err}");
}

/// `source.protocol`: `opentsdb` by default, `warp10` on request, anything else refused with
/// the key; Warp 10's fetch serves raw points only, so `query_downsample` needs `opentsdb`.
#[test]
fn the_protocol_is_opentsdb_unless_warp10_is_asked() {
    assert_eq!(parse_str(BASE).unwrap().source.protocol, Protocol::Opentsdb);
    let warp = BASE.replace("url = \"sim\"", "url = \"sim\"\nprotocol = \"warp10\"");
    assert_eq!(parse_str(&warp).unwrap().source.protocol, Protocol::Warp10);
    let bad = BASE.replace("url = \"sim\"", "url = \"sim\"\nprotocol = \"warp\"");
    let e = parse_str(&bad).unwrap_err().to_string();
    assert!(
        e.contains("source.protocol") && e.contains("opentsdb, warp10"),
        "{e}"
    );
    let both = warp.replace(
        "protocol = \"warp10\"",
        "protocol = \"warp10\"\nquery_downsample = true",
    );
    let e = parse_str(&both).unwrap_err().to_string();
    assert!(
        e.contains("source.query_downsample") && e.contains("protocol"),
        "{e}"
    );
}

/// Row groups and value pages follow the partitioning: a metric partition's file is one
/// metric-day, so its row groups are VM slices (64 Ki rows, 64 KiB value pages); a date
/// partition's file holds every metric (256 Ki rows, 1 MiB pages). A written
/// `row_group_rows` wins; the page size is not a setting.
#[test]
fn row_groups_and_value_pages_follow_the_partitioning() {
    let with = |extra: &str| parse_str(&BASE.replace("[sink]", &format!("[sink]\n{extra}")));
    let by_date = parse_str(BASE).unwrap().sink;
    assert_eq!(
        (by_date.row_group_rows, by_date.value_page_bytes()),
        (1 << 18, crate::config::VALUE_PAGE_BYTES)
    );
    let by_metric = with("partition_by = [\"metric\", \"date\"]").unwrap().sink;
    assert_eq!(
        (by_metric.row_group_rows, by_metric.value_page_bytes()),
        (1 << 16, crate::config::SMALL_VALUE_PAGE_BYTES)
    );
    let written = with("partition_by = [\"metric\", \"date\"]\nrow_group_rows = 100000");
    assert_eq!(written.unwrap().sink.row_group_rows, 100_000);
    let err = with("row_group_rows = 10").unwrap_err().to_string();
    assert!(err.contains("sink.row_group_rows"), "{err}");
    // Month files are sorted by series: sliced like metric-day files.
    for layout in ["[\"month\"]", "[\"metric\", \"month\"]"] {
        let sink = with(&format!("partition_by = {layout}")).unwrap().sink;
        assert_eq!(
            (sink.row_group_rows, sink.value_page_bytes(), sink.period()),
            (
                1 << 16,
                crate::config::SMALL_VALUE_PAGE_BYTES,
                PartitionPeriod::Month
            ),
            "{layout}"
        );
    }
    assert_eq!(by_date.period(), PartitionPeriod::Day);
    assert_eq!(by_metric.period(), PartitionPeriod::Day);
}

/// Four layouts; anything else is refused with the list.
#[test]
fn partition_by_is_one_of_four_layouts() {
    let with = |layout: &str| {
        parse_str(&BASE.replace("[sink]", &format!("[sink]\npartition_by = {layout}")))
    };
    for layout in [
        "[\"month\", \"metric\"]",
        "[\"date\", \"month\"]",
        "[\"metric\"]",
        "[\"week\"]",
    ] {
        let err = with(layout).unwrap_err().to_string();
        assert!(err.contains("sink.partition_by"), "{layout}: {err}");
        assert!(
            err.contains("[\"metric\", \"month\"]") || err.contains("'week'"),
            "{err}"
        );
    }
    let sink = with("[\"metric\", \"month\"]").unwrap().sink;
    assert_eq!(sink.partition_names(), ["metric", "month"]);
}

#[test]
fn pages_are_zstd_unless_snappy_or_lz4_is_asked_and_other_codecs_are_refused() {
    let with = |extra: &str| parse_str(&BASE.replace("[sink]", &format!("[sink]\n{extra}")));
    assert_eq!(
        parse_str(BASE).unwrap().sink.compression,
        PageCompression::Zstd(2)
    );
    assert_eq!(
        with("zstd_level = 7").unwrap().sink.compression,
        PageCompression::Zstd(7)
    );
    assert_eq!(
        with("compression = \"snappy\"").unwrap().sink.compression,
        PageCompression::Snappy
    );
    assert_eq!(
        with("compression = \"lz4\"").unwrap().sink.compression,
        PageCompression::Lz4
    );
    let err = with("compression = \"gzip\"").unwrap_err().to_string();
    assert!(
        err.contains("sink.compression") && err.contains("'gzip'") && err.contains("lz4"),
        "{err}"
    );
}

proptest::proptest! {
    /// A month period is the UTC calendar month (chrono's), for dates before and after 1970;
    /// a day period is the UTC day.
    #[test]
    fn periods_are_calendar_months_and_days(ms in -5_000_000_000_000i64..50_000_000_000_000) {
        use chrono::{Datelike, TimeZone};
        let t = chrono::Utc.timestamp_millis_opt(ms).unwrap();
        let first = chrono::Utc
            .with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
            .unwrap();
        let next = if t.month() == 12 {
            chrono::Utc.with_ymd_and_hms(t.year() + 1, 1, 1, 0, 0, 0)
        } else {
            chrono::Utc.with_ymd_and_hms(t.year(), t.month() + 1, 1, 0, 0, 0)
        }
        .unwrap();
        let month = PartitionPeriod::Month;
        let start = month.start_of(ms);
        proptest::prop_assert_eq!(start, first.timestamp_millis());
        proptest::prop_assert_eq!(month.end_of(start), next.timestamp_millis());
        proptest::prop_assert_eq!(month.label(start), first.format("%Y-%m").to_string());
        let day = PartitionPeriod::Day;
        proptest::prop_assert_eq!(day.start_of(ms), ms.div_euclid(86_400_000) * 86_400_000);
        proptest::prop_assert_eq!(day.end_of(day.start_of(ms)) - day.start_of(ms), 86_400_000);
    }
}

#[test]
fn month_periods_know_leap_years_and_the_year_end() {
    let at = |s: &str| crate::semantics::time::parse_time(s, 0).unwrap();
    let month = PartitionPeriod::Month;
    let feb = month.start_of(at("2028-02-29T23:59:59Z"));
    assert_eq!(feb, at("2028-02-01T00:00:00Z"));
    assert_eq!(month.end_of(feb), at("2028-03-01T00:00:00Z"));
    let dec = month.start_of(at("2026-12-31T12:00:00Z"));
    assert_eq!(month.end_of(dec), at("2027-01-01T00:00:00Z"));
    assert_eq!(month.label(dec), "2026-12");
    // Total: the ends of i64 saturate instead of overflowing.
    for ms in [i64::MIN, i64::MAX] {
        for period in [PartitionPeriod::Day, month] {
            period.end_of(period.start_of(ms));
        }
    }
}
