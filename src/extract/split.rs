//! Answers too large to take whole (the server's fetch limit, a 413, an answer over
//! `source.max_answer_size`, or an opaque `ovh` 500 taken for one), fetched in pieces: by time
//! first, then by [`SeriesGroup`]s of series below the smallest time slice; each piece handed
//! over as it arrives, so memory holds one at a time.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::client::{MetricsClient, RawAnswer};
use super::error::FetchError;
use super::retry::FailureClass;
use super::series_group::SeriesGroup;

/// One part of a window whose raw answer was too large to take whole: the `index`-th (from 1)
/// of `of` equal slices of the window, `[start_ms, end_ms)`.
#[derive(Debug)]
pub struct RawPiece {
    /// Position of the slice, from 1.
    pub index: u64,
    /// Slices the window (or the group's part of it) is cut into at this depth (a power of two).
    pub of: u64,
    /// The [`SeriesGroup::tag`] of the piece's series when they were split by series too
    /// (`None`: every series of the unit).
    pub group: Option<String>,
    /// Start of the slice (inclusive).
    pub start_ms: i64,
    /// End of the slice (exclusive).
    pub end_ms: i64,
    /// The slice's points.
    pub answer: RawAnswer,
}

/// What [`MetricsClient::query_raw_split`] fetches in pieces: one unit's raw query.
#[derive(Debug, Clone)]
pub struct SplitRequest {
    /// The metric.
    pub metric: String,
    /// The datacenter filter, if any.
    pub datacenter: Option<String>,
    /// The window (or the part of it) to fetch, `[start, end)`.
    pub range: (i64, i64),
    /// Time cuts fall on multiples of this (the rollup bucket, 1 s at least).
    pub align_ms: i64,
    /// The series discovery found in this unit, how series are split; `None` when nothing is
    /// known of them (no discovery), so only time is split.
    pub series: Option<Arc<super::series_group::KnownSeries>>,
}

/// One piece of a split query: `[start, end)` of one group of series, the `index`-th (from 0)
/// of `of` time slices of that group's range.
#[derive(Debug)]
struct Piece {
    start: i64,
    end: i64,
    index: u64,
    of: u64,
    group: Option<SeriesGroup>,
}

impl MetricsClient {
    /// The raw points of a window whose whole answer was too large (`last`), fetched in pieces
    /// sent to `parts` as each arrives, so that only one piece is in memory at a time:
    ///
    /// - **by time** first: halves, recursively, in time order. Cuts fall on multiples of
    ///   `align_ms` (whole seconds at least: Erlenmeyer keeps second precision; the rollup
    ///   bucket when a client-side rollup is made from the parts, so no bucket straddles two
    ///   parts), never below `source.min_split`;
    /// - **by series** when the smallest time slice is still too large (a big datacenter at
    ///   one bucket can hold more points than the server's fetch limit): the slice's group of
    ///   series is cut in two [`SeriesGroup`]s by `split` (the label and the values discovery
    ///   found), and each group is fetched over the rest of the range (from that slice on), by
    ///   time again. Groups cover every series, discovered or not.
    ///
    /// An opaque `ovh` 500 ([`FailureClass::Opaque`]) is taken for a fetch limit here (the caller
    /// checked the token with [`Self::probe_token`] first); where nothing can be split any more,
    /// the token is checked again, so a token refused during the run still ends it (exit 3).
    /// A piece that cannot be split ends the stream with [`FetchError::TooLargeAtMinimum`].
    /// Returns early, without error, when the receiver is gone (the window was abandoned).
    pub async fn query_raw_split(
        &self,
        request: SplitRequest,
        last: FetchError,
        parts: &tokio::sync::mpsc::Sender<Result<RawPiece, FetchError>>,
    ) {
        let SplitRequest {
            metric,
            datacenter,
            range: (start_ms, end_ms),
            align_ms,
            series,
        } = request;
        let dc = datacenter.as_deref();
        let align = align_ms.max(1000);
        let top = series.as_ref().map(|k| SeriesGroup::all(&k.labels));
        // Pieces still to fetch, the next one on top.
        let mut todo: Vec<Piece> = Vec::new();
        let mut next = Some((
            Piece {
                start: start_ms,
                end: end_ms,
                index: 0,
                of: 1,
                group: top,
            },
            last,
        ));
        loop {
            // Room in the channel first: the previous part was taken, so fetching this one
            // keeps at most two parts in memory.
            let Ok(permit) = parts.reserve().await else {
                return;
            };
            if let Some((piece, error)) = next.take() {
                let known = series.as_ref().map(|k| k.rows.as_slice()).unwrap_or(&[]);
                if let Err(e) = self.cut(&metric, dc, piece, align, error, known, &mut todo) {
                    let e = self.recheck_token(&metric, dc, start_ms, e).await;
                    permit.send(Err(e));
                    return;
                }
            }
            let Some(piece) = todo.pop() else {
                return;
            };
            let answer = self
                .query_raw_group(&metric, dc, piece.group.as_ref(), piece.start, piece.end)
                .await;
            match answer {
                Ok(answer) => permit.send(Ok(RawPiece {
                    index: piece.index + 1,
                    of: piece.of,
                    group: piece
                        .group
                        .as_ref()
                        .filter(|g| !g.is_all())
                        .map(SeriesGroup::tag),
                    start_ms: piece.start,
                    end_ms: piece.end,
                    answer,
                })),
                Err(e) if matches!(e.class(), FailureClass::TooLarge | FailureClass::Opaque) => {
                    next = Some((piece, e));
                }
                Err(e) => {
                    permit.send(Err(e));
                    return;
                }
            }
        }
    }

    /// When nothing could be split any more after opaque 500s, asks whether the token still
    /// works: a refused token ends the run (exit 3) instead of failing units one by one.
    async fn recheck_token(
        &self,
        metric: &str,
        datacenter: Option<&str>,
        at_ms: i64,
        e: FetchError,
    ) -> FetchError {
        let opaque = matches!(&e, FetchError::TooLargeAtMinimum { last, .. } if last.class() == FailureClass::Opaque);
        if !opaque {
            return e;
        }
        match self.probe_token(metric, datacenter, at_ms).await {
            Err(refused) if refused.class() == FailureClass::Auth => refused,
            _ => e,
        }
    }

    /// Pushes on `todo` the pieces a too-large `piece` is cut into: its two time halves (right
    /// below left, so the left is fetched first); at the smallest slice, its two series groups
    /// over the rest of its group's range (the pending pieces of that group, all later in time,
    /// are dropped: the new groups cover them). Says why when it cannot be cut.
    #[allow(clippy::too_many_arguments)]
    fn cut(
        &self,
        metric: &str,
        datacenter: Option<&str>,
        piece: Piece,
        align: i64,
        error: FetchError,
        known: &[Vec<String>],
        todo: &mut Vec<Piece>,
    ) -> Result<(), FetchError> {
        let Piece {
            start,
            end,
            index,
            of,
            group,
        } = piece;
        let span = end - start;
        let mid = start + (span / 2) / align * align;
        let floor = self.min_split_ms.max(1);
        if mid > start && mid - start >= floor && end - mid >= floor {
            self.stats.splits.fetch_add(1, Ordering::Relaxed);
            tracing::info!(metric, ?datacenter, start_ms = start, end_ms = end, error = %error,
                "answer too large, splitting the window");
            todo.push(Piece {
                start: mid,
                end,
                index: 2 * index + 1,
                of: 2 * of,
                group: group.clone(),
            });
            todo.push(Piece {
                start,
                end: mid,
                index: 2 * index,
                of: 2 * of,
                group,
            });
            return Ok(());
        }
        let halves = group.as_ref().and_then(|g| g.split(known));
        let (Some(group), Some((inside, outside))) = (group, halves) else {
            return Err(FetchError::TooLargeAtMinimum {
                span_ms: span,
                last: Box::new(error),
            });
        };
        // The rest of this group's range: this piece and the pending pieces of the group.
        let mut group_end = end;
        while todo
            .last()
            .is_some_and(|p| p.group.as_ref() == Some(&group))
        {
            group_end = todo.pop().map_or(group_end, |p| p.end);
        }
        self.stats.splits.fetch_add(1, Ordering::Relaxed);
        tracing::info!(metric, ?datacenter, start_ms = start, end_ms = group_end,
            inside = ?inside.filters(), outside = ?outside.filters(), error = %error,
            "answer too large even for the smallest time slice, splitting the series");
        for group in [outside, inside] {
            todo.push(Piece {
                start,
                end: group_end,
                index: 0,
                of: 1,
                group: Some(group),
            });
        }
        Ok(())
    }
}
