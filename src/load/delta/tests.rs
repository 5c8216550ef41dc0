use super::*;

fn commit(table: &str, version: i64, adds: &[&str], removes: &[&str]) -> TableCommit {
    TableCommit {
        table: table.into(),
        txn: Txn {
            app_id: app_id("p"),
            version,
            last_updated: None,
        },
        adds: adds
            .iter()
            .map(|p| AddedFile {
                path: (*p).into(),
                size: 10,
                rows: 3,
                stats: None,
            })
            .collect(),
        removes: removes.iter().map(|p| (*p).to_string()).collect(),
        data_change: true,
        operation: "WRITE".into(),
        schema_string: r#"{"type":"struct","fields":[]}"#.into(),
        partition_columns: vec!["date".into()],
    }
}

fn sink() -> (tempfile::TempDir, Sink) {
    let dir = tempfile::tempdir().unwrap();
    let sink = Sink::open(dir.path().to_str().unwrap()).unwrap();
    (dir, sink)
}

#[tokio::test]
async fn a_table_is_created_by_its_first_commit_and_a_replayed_txn_is_not_applied_twice() {
    let (_d, sink) = sink();
    let first = commit("t", 1, &["date=2026-11-01/a.parquet"], &[]);
    assert_eq!(
        commit_table(&sink, &first).await.unwrap(),
        Committed::Version(0)
    );
    assert_eq!(
        commit_table(&sink, &first).await.unwrap(),
        Committed::AlreadyThere,
        "a publication completed again after a crash"
    );
    let second = commit(
        "t",
        2,
        &["date=2026-11-01/b.parquet"],
        &["date=2026-11-01/a.parquet", "date=2026-11-01/never.parquet"],
    );
    assert_eq!(
        commit_table(&sink, &second).await.unwrap(),
        Committed::Version(1)
    );
    let snap = Snapshot::load(&sink, "t").await.unwrap();
    assert_eq!(snap.version, 1);
    assert_eq!(
        snap.files.keys().collect::<Vec<_>>(),
        ["date=2026-11-01/b.parquet"]
    );
    assert_eq!(
        snap.files["date=2026-11-01/b.parquet"].partition_values["date"].as_deref(),
        Some("2026-11-01")
    );
    assert_eq!(snap.txns[&app_id("p")], 2);
    assert_eq!(snap.metadata.unwrap().partition_columns, ["date"]);
    // A remove is written only for a file the table has.
    let log = sink
        .get_opt("t/_delta_log/00000000000000000001.json")
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&log);
    assert_eq!(text.matches("\"remove\"").count(), 1, "{text}");
    assert!(!text.contains("never.parquet"));
}

#[tokio::test]
async fn a_version_taken_by_another_writer_is_retried_on_top_unless_it_removed_our_file() {
    let (_d, sink) = sink();
    commit_table(&sink, &commit("t", 1, &["date=2026-11-01/a.parquet"], &[]))
        .await
        .unwrap();
    // Another writer commits version 1 behind our back (as a concurrent compaction would).
    let other = TableCommit {
        txn: Txn {
            app_id: "other".into(),
            version: 1,
            last_updated: None,
        },
        ..commit("t", 0, &["date=2026-11-02/c.parquet"], &[])
    };
    commit_table(&sink, &other).await.unwrap();
    let ours = commit("t", 2, &["date=2026-11-01/b.parquet"], &[]);
    assert_eq!(
        commit_table(&sink, &ours).await.unwrap(),
        Committed::Version(2)
    );
    // A writer that loads the snapshot, then loses the version to a commit removing the file
    // it removes too.
    let (_d2, sink2) = super::tests::sink();
    commit_table(&sink2, &commit("t", 1, &["date=2026-11-01/a.parquet"], &[]))
        .await
        .unwrap();
    let stale = Snapshot::load(&sink2, "t").await.unwrap();
    let compaction = TableCommit {
        txn: Txn {
            app_id: "compact".into(),
            version: 1,
            last_updated: None,
        },
        ..commit(
            "t",
            0,
            &["date=2026-11-01/z.parquet"],
            &["date=2026-11-01/a.parquet"],
        )
    };
    commit_table(&sink2, &compaction).await.unwrap();
    let err = commit_on(
        &sink2,
        stale,
        &commit(
            "t",
            2,
            &["date=2026-11-01/b.parquet"],
            &["date=2026-11-01/a.parquet"],
        ),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, DeltaError::Conflict { .. }), "{err}");
}

#[tokio::test]
async fn a_checkpoint_every_ten_commits_opens_to_the_same_state() {
    let (_d, sink) = sink();
    for v in 1..=23 {
        let add = format!("date=2026-11-01/f{v}.parquet");
        let remove = format!("date=2026-11-01/f{}.parquet", v - 1);
        commit_table(&sink, &commit("t", v, &[&add], &[&remove]))
            .await
            .unwrap();
    }
    let last = sink.get_opt("t/_delta_log/_last_checkpoint").await.unwrap();
    let last: serde_json::Value = serde_json::from_slice(&last.unwrap()).unwrap();
    assert_eq!(last["version"], 20);
    let from_checkpoint = Snapshot::load(&sink, "t").await.unwrap();
    // The same state replayed from the commits alone.
    sink.delete_if_exists("t/_delta_log/_last_checkpoint")
        .await
        .unwrap();
    let replayed = Snapshot::load(&sink, "t").await.unwrap();
    assert_eq!(from_checkpoint.version, 22);
    assert_eq!(from_checkpoint.version, replayed.version);
    assert_eq!(from_checkpoint.files, replayed.files);
    assert_eq!(from_checkpoint.txns, replayed.txns);
    assert_eq!(from_checkpoint.metadata, replayed.metadata);
    assert_eq!(
        from_checkpoint.files.keys().collect::<Vec<_>>(),
        ["date=2026-11-01/f23.parquet"]
    );
}

#[test]
fn paths_are_uris_and_partition_values_are_unescaped() {
    assert_eq!(
        uri_path("metric=a%2Fb/date=2026-11-01/part x.parquet"),
        "metric=a%252Fb/date=2026-11-01/part%20x.parquet"
    );
    let v = partition_values("metric=a%2Fb/date=2026-11-01/part.parquet");
    assert_eq!(v["metric"].as_deref(), Some("a/b"));
    assert_eq!(v["date"].as_deref(), Some("2026-11-01"));
}
