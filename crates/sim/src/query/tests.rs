//! Request parsing and planning of both dialects.
use super::json::*;
use super::opentsdb::*;
use super::output::*;
use super::ovh::*;
use super::*;

#[test]
fn m_parameter_is_parsed() {
    let s = parse_m("none:rate{counter,100,5}:explicit_tags:vscope.vm.cpu.ready{vm=vm-01254|vm-01257}{datacenter=wildcard(*869)}").unwrap();
    assert_eq!(s.aggregator.as_deref(), Some("none"));
    assert_eq!(s.metric.as_deref(), Some("vscope.vm.cpu.ready"));
    assert!(s.rate && s.explicit_tags);
    assert_eq!(
        s.rate_options,
        RateOptions {
            counter: true,
            counter_max: Some(100),
            reset_value: Some(5),
            drop_resets: false
        }
    );
    assert_eq!(s.tags["vm"], "vm-01254|vm-01257");
    assert_eq!(s.filters[0].kind, "wildcard");
    assert_eq!(s.filters[0].filter, "*869");
    let d = parse_m("sum:1h-avg:vscope.vm.cpu.ready").unwrap();
    assert_eq!(d.downsample.as_deref(), Some("1h-avg"));
    assert!(parse_m("vscope.vm.cpu.ready").is_err());
    assert!(parse_m("none:m{a=b").is_err());
    assert!(parse_m("none:m{ab}").is_err());
}

#[test]
fn wildcards_and_tag_conversion_follow_opentsdb() {
    assert!(star_match("*", ""));
    assert!(star_match("vm-*", "vm-01254"));
    assert!(star_match("*869", "pcc_datacenter869"));
    assert!(star_match("a*b*c", "axxbyyc"));
    assert!(!star_match("a*b*c", "axxbyy"));
    assert!(!star_match("ab*ba", "aba"));
    let tags: BTreeMap<String, String> = [("host".to_owned(), "Web01".to_owned())]
        .into_iter()
        .collect();
    // A value with `*` becomes a case-insensitive wildcard.
    assert!(tag_to_filter("host", "web*").unwrap().matches(&tags));
    assert!(!tag_to_filter("host", "web01").unwrap().matches(&tags));
    assert!(tag_to_filter("host", "Web01|x").unwrap().matches(&tags));
    assert!(tag_to_filter("host", "regexp(eb0)").unwrap().matches(&tags));
    assert!(
        tag_to_filter("host", "iliteral_or(web01)")
            .unwrap()
            .matches(&tags)
    );
    assert!(tag_to_filter("nic", "not_key()").unwrap().matches(&tags));
    assert!(
        tag_to_filter("nic", "not_literal_or(ab)")
            .unwrap()
            .matches(&tags)
    );
    assert!(tsdb_filter("wildcard", "host", "web").is_err());
    assert!(tsdb_filter("literal_or", "host", "|").is_err());
    assert!(tsdb_filter("bogus", "host", "x").is_err());
    assert!(tsdb_filter("regexp", "host", "(x").is_err());
}

#[test]
fn erlenmeyer_picks_its_automatic_span() {
    let span = |range_ms: i64| auto_downsample(0, range_ms).unwrap().interval_ms;
    assert_eq!(span(3_600_000), 5_000);
    assert_eq!(span(86_400_000), 600_000);
    assert_eq!(span(7 * 86_400_000), 900_000);
    assert_eq!(span(30 * 86_400_000), 3_600_000);
    assert_eq!(span(i64::MAX), 604_800_000);
}

#[test]
fn opentsdb_scan_bounds_match_the_reference_vectors() {
    // reference/api.md §1.11 item 24.
    let m: DownsampleSpec = "1m-avg".parse().unwrap();
    assert_eq!(
        opentsdb_scan(1_356_998_400_000, 1_357_041_600_000, Some(&m)),
        (1_356_998_400_000, 1_357_045_200_000)
    );
    let q: DownsampleSpec = "15m-avg".parse().unwrap();
    let now = 1_427_415_547_000;
    assert_eq!(
        opentsdb_scan(now - 12 * 3_600_000, now, Some(&q)),
        (1_427_371_200_000, 1_427_418_000_000)
    );
}

#[test]
fn warp_reducers_and_rate() {
    assert_eq!(
        warp_reduce(Aggregator::P50, &[1.0, 2.0, 3.0, 4.0]),
        Some(2.0)
    );
    assert_eq!(
        warp_reduce(Aggregator::Dev, &[1.0, 2.0]),
        Some(0.5f64.sqrt())
    );
    assert_eq!(warp_reduce(Aggregator::Sum, &[1.0, 2.0]), Some(3.0));
    assert_eq!(warp_reduce(Aggregator::Count, &[1.0, 2.0]), Some(2.0));
    let mut p = vec![(0, 1.0), (10_000, 3.0), (20_000, 2.0)];
    warp_rate(&mut p, RateOptions::default(), 3);
    assert_eq!(p, vec![(10_000, 0.2), (20_000, -0.1)]);
    let mut p = vec![(0, 1.0), (10_000, 50.0)];
    warp_rate(
        &mut p,
        RateOptions {
            counter: true,
            reset_value: Some(10),
            ..RateOptions::default()
        },
        0,
    );
    assert_eq!(p, vec![(0, 0.0), (10_000, -0.1)]);
}

#[test]
fn rates_follow_rate_span() {
    // TestRateSpan: counter, counterMax 70, resetValue 1 on 40, 50, 40 at 1 s spacing.
    let mut p = vec![(0, 40.0), (1000, 50.0), (2000, 40.0)];
    to_rates(
        &mut p,
        RateOptions {
            counter: true,
            counter_max: Some(70),
            reset_value: Some(1),
            drop_resets: false,
        },
    );
    assert_eq!(p, vec![(1000, 10.0), (2000, 0.0)]);
    // dropResets on 40, 50, 40, 50.
    let mut p = vec![(0, 40.0), (1000, 50.0), (2000, 40.0), (3000, 50.0)];
    to_rates(
        &mut p,
        RateOptions {
            counter: true,
            drop_resets: true,
            ..RateOptions::default()
        },
    );
    assert_eq!(p, vec![(1000, 10.0), (3000, 10.0)]);
    // Plain rate, negative allowed.
    let mut p = vec![(0, 40.0), (2000, 30.0)];
    to_rates(&mut p, RateOptions::default());
    assert_eq!(p, vec![(2000, -5.0)]);
}

#[test]
fn strict_decoding_refuses_wrong_types() {
    assert!(
        parse_strict(
            br#"{"start":1,"queries":[{"metric":"m","aggregator":"none","rate":"true"}]}"#
        )
        .is_err()
    );
    assert!(parse_strict(br#"{"start":1,"msResolution":"true"}"#).is_err());
    assert!(parse_strict(br#"{"start":"now"}"#).is_err());
    assert!(parse_strict(br#"{"start":true}"#).is_err());
    assert!(parse_strict(b"[1]").is_err());
    assert_eq!(parse_strict(b"null").unwrap(), RawRequest::default());
    let ok = parse_strict(br#"{"START":"1h-ago","MSResolution":true,"queries":null}"#).unwrap();
    assert_eq!(ok.start.as_deref(), Some("1h-ago"));
    assert!(ok.ms_resolution);
    let lenient = parse_lenient(
        br#"{"start":1,"queries":[{"metric":"m","aggregator":"none","rate":"true"}]}"#,
    )
    .unwrap();
    assert!(lenient.queries[0].rate);
    assert!(parse_lenient(b"{").is_err());
}
