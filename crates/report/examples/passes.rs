//! Times the report's streaming passes over a dataset (development aid).
fn main() {
    let dir = std::env::args().nth(1).expect("dataset dir");
    let table = std::env::args().nth(2).unwrap_or("vm_metrics".into());
    let ds = futures::executor::block_on(vscope_report::data::Dataset::open(
        vscope_report::Location::Local(dir),
        None,
    ))
    .unwrap();
    let t = ds.tables.get(&table).unwrap().clone();
    let d = vscope_report::layout::dates(&ds, &t);
    let from = chrono::NaiveDate::parse_from_str(&d[0], "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis();
    let to = chrono::NaiveDate::parse_from_str(d.last().unwrap(), "%Y-%m-%d")
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_millis()
        + 86_400_000;
    let t0 = std::time::Instant::now();
    let p = ds.profile(&t, from, to).unwrap();
    eprintln!("profile {:.2}s", t0.elapsed().as_secs_f64());
    let metrics: Vec<String> = p
        .all()
        .map(|(_, k, _)| k.0.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let m: Vec<&str> = metrics.iter().map(|s| s.as_str()).take(11).collect();
    let t1 = std::time::Instant::now();
    let st = vscope_report::data::series_stats(&ds, &t, &m, from, to).unwrap();
    eprintln!(
        "p95 of {} series {:.2}s",
        st.len(),
        t1.elapsed().as_secs_f64()
    );
    let t2 = std::time::Instant::now();
    let c = vscope_report::completeness::completeness(&ds, &t, from, to).unwrap();
    eprintln!(
        "completeness {} {:.2}s",
        c.len(),
        t2.elapsed().as_secs_f64()
    );
}
