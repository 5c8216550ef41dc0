//! Partition paths and file names (design §4):
//! `<table>/[metric=<m>/]date=YYYY-MM-DD/part-<window-start>-<window-end>.parquet`, or
//! `month=YYYY-MM` in place of `date=` (a month folder holds a file per window until `compact`
//! merges it).
//!
//! Names are a pure function of (table, partition, window), so a rerun of a window replaces
//! its files instead of adding copies.

use crate::config::{PartitionKey, PartitionPeriod};
use crate::semantics::time::format_window_stamp;

pub use vscope_core::path_value::{escape_path_value, unescape_path_value};
pub use vscope_core::semantics::time::date_string;

/// The partition directory of a row group: `<table>/[metric=<m>/]date=<d>` (or `month=<m>`).
pub fn partition_dir(
    table: &str,
    keys: &[PartitionKey],
    metric: &str,
    day_start_ms: i64,
) -> String {
    let mut dir = table.to_string();
    for k in keys {
        match k {
            PartitionKey::Metric => {
                dir.push_str("/metric=");
                dir.push_str(&escape_path_value(metric));
            }
            PartitionKey::Date => {
                dir.push_str("/date=");
                dir.push_str(&date_string(day_start_ms));
            }
            PartitionKey::Month => {
                dir.push_str("/month=");
                dir.push_str(&PartitionPeriod::Month.label(day_start_ms));
            }
        }
    }
    dir
}

/// The file name of a window's part: `part-<start>-<end>.parquet` in `YYYYMMDDTHHMMSSZ`.
pub fn part_file_name(window_start_ms: i64, window_end_ms: i64) -> String {
    format!(
        "part-{}-{}.parquet",
        format_window_stamp(window_start_ms),
        format_window_stamp(window_end_ms)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::semantics::time::DAY_MS;
    use proptest::prelude::*;

    #[test]
    fn escapes_like_hive() {
        assert_eq!(
            escape_path_value("vscope.vm.cpu.usage.perc"),
            "vscope.vm.cpu.usage.perc"
        );
        assert_eq!(escape_path_value("a/b=c%d"), "a%2Fb%3Dc%25d");
        assert_eq!(escape_path_value("été 🙂"), "été 🙂");
        assert_eq!(escape_path_value("x\ny"), "x%0Ay");
        assert_eq!(escape_path_value(""), "__HIVE_DEFAULT_PARTITION__");
    }

    #[test]
    fn paths_follow_the_layout() {
        let day = 1_793_491_200_000; // 2026-11-01
        assert_eq!(
            partition_dir("vm_metrics", &[PartitionKey::Date], "m", day),
            "vm_metrics/date=2026-11-01"
        );
        assert_eq!(
            partition_dir(
                "vm_metrics",
                &[PartitionKey::Metric, PartitionKey::Date],
                "a/b",
                day
            ),
            "vm_metrics/metric=a%2Fb/date=2026-11-01"
        );
        assert_eq!(
            partition_dir("vm_metrics", &[PartitionKey::Month], "m", day),
            "vm_metrics/month=2026-11"
        );
        assert_eq!(
            partition_dir(
                "vm_metrics",
                &[PartitionKey::Metric, PartitionKey::Month],
                "m",
                day + 29 * DAY_MS
            ),
            "vm_metrics/metric=m/month=2026-11"
        );
        assert_eq!(
            part_file_name(day, day + 21_600_000),
            "part-20261101T000000Z-20261101T060000Z.parquet"
        );
    }

    /// The names that need escaping: the partition folder the sink writes is
    /// `metric=<escaped>` exactly (escaped once, not again by the object store), so a reader
    /// applying Hive's unescape rule gets back the name the `metric` column holds.
    const AWKWARD: [&str; 6] = [
        "a/b",
        "100%",
        "k=v",
        "with space",
        "été/🙂 %2F",
        "x~y|z<>{}`",
    ];

    #[tokio::test]
    async fn the_sink_writes_the_escaped_value_once_and_hive_unescaping_gives_the_name() {
        let day = 1_793_491_200_000; // 2026-11-01
        for metric in AWKWARD {
            let dir = tempfile::tempdir().unwrap();
            let sink = crate::load::Sink::open(dir.path().to_str().unwrap()).unwrap();
            let part = format!(
                "{}/part.parquet",
                partition_dir(
                    "t",
                    &[PartitionKey::Metric, PartitionKey::Date],
                    metric,
                    day
                )
            );
            sink.put(&part, b"x".to_vec()).await.unwrap();
            let folders: Vec<String> = std::fs::read_dir(dir.path().join("t"))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert_eq!(
                folders,
                [format!("metric={}", escape_path_value(metric))],
                "{metric}"
            );
            let value = folders[0].strip_prefix("metric=").unwrap();
            assert_eq!(hive_unescape(value), metric, "{metric}: {value}");
            // What the sink lists is what it wrote: listing, then deleting by that name works.
            let dirs = part.rsplit_once('/').unwrap().0;
            assert_eq!(
                sink.list_dir(dirs).await.unwrap(),
                ["part.parquet"],
                "{metric}"
            );
            sink.delete_if_exists(&part).await.unwrap();
            assert!(sink.list_dir(dirs).await.unwrap().is_empty(), "{metric}");
        }
    }

    /// Hive's and Spark's `unescapePathName`, written from its definition (a `%` followed by
    /// two hex digits is that byte; anything else is kept), independent of ours.
    fn hive_unescape(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%'
                && i + 2 < b.len()
                && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
            {
                out.push(v);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    }

    proptest! {
        #[test]
        fn escape_round_trips_and_stays_one_segment(s in "\\PC{1,40}") {
            let e = escape_path_value(&s);
            prop_assert!(!e.contains('/'));
            prop_assert_eq!(unescape_path_value(&e), s);
        }
    }
}
