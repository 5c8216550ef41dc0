//! The name tables OpenTSDB would have built for the simulated PCC: metric, tag key and tag
//! value UIDs (for TSUIDs in lookup answers) and the sets name resolution checks.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use super::model::Pcc;

/// Name tables of the simulated PCC: the UIDs OpenTSDB would have assigned (in sorted order,
/// from 1) and the sets suggest and name resolution need.
#[derive(Debug, Clone)]
pub(crate) struct Index {
    /// Metric name → UID.
    pub(crate) metrics: BTreeMap<String, u32>,
    /// Tag key → UID.
    pub(crate) tagks: BTreeMap<String, u32>,
    /// Tag value → UID.
    pub(crate) tagvs: BTreeMap<String, u32>,
}

impl Index {
    /// Builds the tables from the series of `pcc`.
    pub(crate) fn new(pcc: &Pcc) -> Index {
        let number = |set: BTreeSet<&str>| -> BTreeMap<String, u32> {
            set.into_iter()
                .zip(1u32..)
                .map(|(k, i)| (k.to_owned(), i))
                .collect()
        };
        let series = pcc.series();
        Index {
            metrics: number(series.iter().map(|s| s.metric.as_str()).collect()),
            tagks: number(
                series
                    .iter()
                    .flat_map(|s| s.tags.keys().map(String::as_str))
                    .collect(),
            ),
            tagvs: number(
                series
                    .iter()
                    .flat_map(|s| s.tags.values().map(String::as_str))
                    .collect(),
            ),
        }
    }

    /// Whether some series has the tag key `k`.
    pub(crate) fn has_tagk(&self, k: &str) -> bool {
        self.tagks.contains_key(k)
    }

    /// Whether some series has the tag value `v` (OpenTSDB resolves values globally).
    pub(crate) fn has_tagv(&self, v: &str) -> bool {
        self.tagvs.contains_key(v)
    }

    /// The TSUID OpenTSDB would print: metric UID then (tagk, tagv) UIDs, 3 bytes each, in
    /// upper-case hex.
    pub(crate) fn tsuid(&self, metric: &str, tags: &BTreeMap<String, String>) -> String {
        let mut out = String::with_capacity(6 + 12 * tags.len());
        let uid = |map: &BTreeMap<String, u32>, k: &str| map.get(k).copied().unwrap_or(0);
        let _ = write!(out, "{:06X}", uid(&self.metrics, metric));
        for (k, v) in tags {
            let _ = write!(
                out,
                "{:06X}{:06X}",
                uid(&self.tagks, k),
                uid(&self.tagvs, v)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsuids_are_upper_case_hex_of_sorted_uids() {
        let pcc = Pcc::new(&crate::SimConfig::default());
        let index = Index::new(&pcc);
        let s = &pcc.series()[0];
        let t = index.tsuid(&s.metric, &s.tags);
        assert_eq!(t.len(), 6 + 12 * s.tags.len());
        assert!(
            t.chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
    }
}
