//! Groups of series for a query that is too large even over the smallest time slice: the
//! series of one (metric, datacenter) are cut into groups by tag filters on their labels (the
//! VM's moRef, the host's IP then its NIC, the datastore's name), each group fetched on its own.
//! A [`SeriesGroup`] holds one class of values per label; a split cuts the class of the first
//! label whose known values still differ within the group.
//!
//! The groups must cover every series the server holds, including one that appeared after
//! discovery (a VM created during the run): a group made of the discovered values would miss
//! it, silently. So a group is not a list of values but a class of values defined by their
//! last characters, and every split cuts a class in two classes that together are exactly the
//! class cut:
//!
//! - "the character at position p from the end is in S", and
//! - "it is not in S, or the value is shorter than p".
//!
//! The discovered values only choose `S` (half of the distinct characters at that position,
//! balanced by count), so the groups are balanced for the series we know and complete for all.
//! Identifiers in vScope end in digits (`vm-01254`, `172.17.86.51`, `pcc-000443`), so the last
//! characters spread series well.
//!
//! A group is sent as a `regexp` filter, anchored (`^...$`: OpenTSDB's `regexp` filter is a
//! `find()`, Warp 10's label selector a full match, `reference/api.md` §1.3 and §2.2), with only
//! ASCII letters, digits and `._:@/` inside its classes: Erlenmeyer copies the expression into
//! a single-quoted WarpScript string unescaped (ovh/erlenmeyer `proto/opentsdb/query.go`,
//! `processFilters`), so nothing that could end or escape that string is ever written. Any
//! other character simply falls on the "not in S" side.

use std::collections::{BTreeMap, BTreeSet};

/// The constraint on the character at one position from the end.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cut {
    /// Characters of the cut, all of them safe to write in a class; never empty.
    chars: BTreeSet<char>,
    /// True for "not in `chars`, or the value is too short to have this position".
    negated: bool,
}

/// A class of values of one label: every value, cut down by constraints on the characters at
/// positions 1, 2, 3... from the end.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LabelClass {
    label: String,
    /// `cuts[i]` constrains the character at position `i + 1` from the end (`None`: any, or
    /// none at all).
    cuts: Vec<Option<Cut>>,
}

/// Characters written inside a regex class as themselves.
fn is_safe(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '/')
}

/// What a value shows at one position, as far as a cut can tell: a safe character, an unsafe
/// one (never written, so never told from another unsafe one), or nothing (too short).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Seen {
    Absent,
    Unsafe,
    Safe(char),
}

fn seen_at(value: &[char], position: usize) -> Seen {
    match value.len().checked_sub(position).map(|k| value[k]) {
        None => Seen::Absent,
        Some(c) if is_safe(c) => Seen::Safe(c),
        Some(_) => Seen::Unsafe,
    }
}

impl LabelClass {
    /// Every value of `label`.
    pub fn all(label: &str) -> LabelClass {
        LabelClass {
            label: label.to_string(),
            cuts: Vec::new(),
        }
    }

    /// The label the group filters on.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// True for the group of every value (no filter needed).
    pub fn is_all(&self) -> bool {
        self.cuts.iter().all(Option::is_none)
    }

    /// Whether `value` belongs to the group (the same rule as [`LabelClass::regex`]).
    pub fn contains(&self, value: &str) -> bool {
        let chars: Vec<char> = value.chars().collect();
        self.cuts.iter().enumerate().all(|(i, cut)| {
            let Some(cut) = cut else { return true };
            let at = chars.len().checked_sub(i + 1).map(|k| chars[k]);
            let inside = at.is_some_and(|c| cut.chars.contains(&c));
            inside != cut.negated
        })
    }

    /// The anchored regular expression of the group (Java `Pattern` syntax, which OpenTSDB and
    /// Warp 10 both use). Built from the deepest position outwards: `left` is what may precede
    /// the positions already written; a position that is not required to hold a character
    /// (negated or unconstrained) may also be missing (the value is shorter), which only values
    /// with nothing required further left can be.
    pub fn regex(&self) -> String {
        let mut left = ".*".to_string();
        let mut may_be_empty = true;
        for cut in self.cuts.iter().rev() {
            let class = match cut {
                None => ".".to_string(),
                Some(c) => {
                    let chars: String = c.chars.iter().collect();
                    if c.negated {
                        format!("[^{chars}]")
                    } else {
                        format!("[{chars}]")
                    }
                }
            };
            if cut.as_ref().is_some_and(|c| !c.negated) {
                left = format!("{left}{class}");
                may_be_empty = false;
            } else if may_be_empty {
                left = format!("({left}{class})?");
            } else {
                left = format!("{left}{class}");
            }
        }
        format!("^{left}$")
    }

    /// Cuts the group in two so that its known `values` fall about half on each side, at the
    /// first position from the end where they differ in a way a class can say. `None` when
    /// they cannot be told apart (zero or one of them, equal ones, or ones that differ only
    /// by characters never written in a class): as far as we know the group is one series,
    /// and only time can be split further. Both sides always keep some known value, so
    /// repeated splits end.
    pub fn split(&self, values: &[String]) -> Option<(LabelClass, LabelClass)> {
        let members: Vec<Vec<char>> = values
            .iter()
            .filter(|v| self.contains(v))
            .map(|v| v.chars().collect())
            .collect();
        let longest = members.iter().map(Vec::len).max().unwrap_or(0);
        for position in 1..=longest {
            let seen: Vec<Seen> = members.iter().map(|v| seen_at(v, position)).collect();
            let mut counts: BTreeMap<char, usize> = BTreeMap::new();
            for s in &seen {
                if let Seen::Safe(c) = s {
                    *counts.entry(*c).or_default() += 1;
                }
            }
            let differ = seen.iter().any(|s| *s != seen[0]);
            if !differ || counts.is_empty() {
                continue;
            }
            let chars = balanced_half(&counts, members.len());
            return Some((
                self.cut(position, &chars, false),
                self.cut(position, &chars, true),
            ));
        }
        None
    }

    /// This group with `chars` required (`negated` false) or excluded at `position`, combined
    /// with the constraint already there.
    fn cut(&self, position: usize, chars: &BTreeSet<char>, negated: bool) -> LabelClass {
        let mut g = self.clone();
        if g.cuts.len() < position {
            g.cuts.resize(position, None);
        }
        let slot = &mut g.cuts[position - 1];
        *slot = Some(match (slot.take(), negated) {
            (None, _) => Cut {
                chars: chars.clone(),
                negated,
            },
            // Already required in P: in P and S, or in P and not S.
            (
                Some(Cut {
                    chars: p,
                    negated: false,
                }),
                false,
            ) => Cut {
                chars: p.intersection(chars).copied().collect(),
                negated: false,
            },
            (
                Some(Cut {
                    chars: p,
                    negated: false,
                }),
                true,
            ) => Cut {
                chars: p.difference(chars).copied().collect(),
                negated: false,
            },
            // Already excluded from N: in S (S holds none of N), or in neither.
            (Some(Cut { negated: true, .. }), false) => Cut {
                chars: chars.clone(),
                negated: false,
            },
            (
                Some(Cut {
                    chars: n,
                    negated: true,
                }),
                true,
            ) => Cut {
                chars: n.union(chars).copied().collect(),
                negated: true,
            },
        });
        g
    }
}

/// A group of the series of one (metric, datacenter): one class of values per label, every
/// series whose label values all fall in their classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesGroup {
    classes: Vec<LabelClass>,
    /// The sides taken at each split, for [`SeriesGroup::tag`].
    path: String,
}

impl SeriesGroup {
    /// Every series: no constraint on `labels` (the metric's labels other than `datacenter`,
    /// in catalogue order: the order splits try them).
    pub fn all(labels: &[String]) -> SeriesGroup {
        SeriesGroup {
            classes: labels.iter().map(|l| LabelClass::all(l)).collect(),
            path: String::new(),
        }
    }

    /// True for the group of every series (no filter needed).
    pub fn is_all(&self) -> bool {
        self.classes.iter().all(LabelClass::is_all)
    }

    /// The `(label, anchored regex)` filters that select the group (none for
    /// [`SeriesGroup::is_all`]).
    pub fn filters(&self) -> Vec<(String, String)> {
        self.classes
            .iter()
            .filter(|c| !c.is_all())
            .map(|c| (c.label().to_string(), c.regex()))
            .collect()
    }

    /// Whether a series with these tags is in the group. A series without a constrained label
    /// is not (a tag filter needs the tag).
    pub fn contains(&self, tags: &BTreeMap<String, String>) -> bool {
        self.classes
            .iter()
            .all(|c| c.is_all() || tags.get(c.label()).is_some_and(|v| c.contains(v)))
    }

    /// Whether a discovered series, given as its values of the group's labels in order, is in
    /// the group.
    fn contains_row(&self, row: &[String]) -> bool {
        self.classes.iter().zip(row).all(|(c, v)| c.contains(v))
    }

    /// A short, stable name of the group for file names: `g` and one digit per split, `0` for
    /// the side "in S" and `1` for the other (e.g. `g01`).
    pub fn tag(&self) -> String {
        format!("g{}", self.path)
    }

    /// Cuts the group in two, on the first label whose known values (`known`: each discovered
    /// series as its values of the group's labels, in order) still differ within the group;
    /// `None` when they cannot be told apart any more. Both sides keep some known series.
    pub fn split(&self, known: &[Vec<String>]) -> Option<(SeriesGroup, SeriesGroup)> {
        let members: Vec<&Vec<String>> = known.iter().filter(|r| self.contains_row(r)).collect();
        for (i, class) in self.classes.iter().enumerate() {
            let values: Vec<String> = members.iter().filter_map(|r| r.get(i).cloned()).collect();
            if let Some((inside, outside)) = class.split(&values) {
                let side = |class: LabelClass, bit: char| {
                    let mut g = self.clone();
                    g.classes[i] = class;
                    g.path.push(bit);
                    g
                };
                return Some((side(inside, '0'), side(outside, '1')));
            }
        }
        None
    }
}

/// About half of `total` members by count, whole characters at a time, in character order;
/// never every character of `counts` (both sides must keep a member).
fn balanced_half(counts: &BTreeMap<char, usize>, total: usize) -> BTreeSet<char> {
    let mut chars = BTreeSet::new();
    let mut taken = 0;
    let present: usize = counts.values().sum();
    for (&c, &n) in counts {
        let overshoots = taken > 0 && (taken + n) * 2 > total + n;
        // Taking the last character would leave the other side without a member when every
        // member has a safe character here.
        let takes_all = taken + n == present && present == total;
        if overshoots || (takes_all && !chars.is_empty()) {
            break;
        }
        chars.insert(c);
        taken += n;
        if taken * 2 >= total {
            break;
        }
    }
    chars
}

/// The discovered series of one (metric, datacenter), as rows of label values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownSeries {
    /// The labels, in catalogue order. A label some discovered series lacks is left out: a tag
    /// filter on it would drop that series.
    pub labels: Vec<String>,
    /// One row per series: its values of `labels`.
    pub rows: Vec<Vec<String>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn values(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Splits a group until each holds at most one known value; returns the leaves.
    fn leaves(group: LabelClass, known: &[String], depth: usize) -> Vec<LabelClass> {
        assert!(depth < 64, "splitting does not converge");
        match group.split(known) {
            None => vec![group],
            Some((a, b)) => {
                let mut out = leaves(a, known, depth + 1);
                out.extend(leaves(b, known, depth + 1));
                out
            }
        }
    }

    #[test]
    fn vm_morefs_split_by_their_last_digits() {
        let known = values(&["vm-01254", "vm-01255", "vm-01256", "vm-01257"]);
        let all = LabelClass::all("vm");
        assert_eq!(all.regex(), "^.*$");
        let (a, b) = all.split(&known).unwrap();
        assert_eq!(a.regex(), "^.*[45]$");
        assert_eq!(b.regex(), "^(.*[^45])?$");
        assert!(a.contains("vm-01254") && !a.contains("vm-01256"));
        assert!(b.contains("vm-01256") && b.contains(""), "{b:?}");
        let (aa, ab) = a.split(&known).unwrap();
        // Both known values of `a` share the digit before last: the last one is cut again.
        assert_eq!(aa.regex(), "^.*[4]$");
        assert_eq!(ab.regex(), "^.*[5]$");
        let (ba, bb) = b.split(&known).unwrap();
        assert_eq!(ba.regex(), "^.*[6]$");
        assert_eq!(
            bb.regex(),
            "^(.*[^456])?$",
            "still every value not ending in 4, 5, 6"
        );
        let all_leaves = leaves(LabelClass::all("vm"), &known, 0);
        for v in &known {
            assert_eq!(all_leaves.iter().filter(|g| g.contains(v)).count(), 1);
        }
    }

    /// A host's four NICs: the `host` label cannot tell them apart, so the group is cut on
    /// `nicname`; the filters, tags and membership follow.
    #[test]
    fn series_groups_cut_the_first_label_that_still_differs() {
        let labels = values(&["host", "nicname"]);
        let rows: Vec<Vec<String>> = (0..4)
            .map(|n| values(&["172.17.86.51", &format!("vmnic{n}")]))
            .collect();
        let all = SeriesGroup::all(&labels);
        assert!(all.is_all() && all.filters().is_empty());
        let (a, b) = all.split(&rows).unwrap();
        assert_eq!(
            a.filters(),
            vec![("nicname".to_string(), "^.*[01]$".to_string())]
        );
        assert_eq!((a.tag().as_str(), b.tag().as_str()), ("g0", "g1"));
        let tags = |host: &str, nic: &str| {
            BTreeMap::from([
                ("host".to_string(), host.to_string()),
                ("nicname".to_string(), nic.to_string()),
            ])
        };
        assert!(a.contains(&tags("172.17.86.51", "vmnic1")));
        assert!(!a.contains(&tags("172.17.86.51", "vmnic2")));
        assert!(
            b.contains(&tags("10.0.0.9", "vmnic7")),
            "an unknown series has a group"
        );
        let (aa, ab) = a.split(&rows).unwrap();
        assert_eq!((aa.tag().as_str(), ab.tag().as_str()), ("g00", "g01"));
        assert!(aa.split(&rows).is_none(), "one series left");
        // A series without a constrained label is in no group but the whole one.
        let no_nic = BTreeMap::from([("host".to_string(), "172.17.86.51".to_string())]);
        assert!(all.contains(&no_nic) && !a.contains(&no_nic) && !b.contains(&no_nic));
    }

    #[test]
    fn one_known_value_or_equal_values_cannot_be_split() {
        assert!(LabelClass::all("vm").split(&values(&["vm-1"])).is_none());
        assert!(
            LabelClass::all("vm")
                .split(&values(&["vm-1", "vm-1"]))
                .is_none()
        );
        assert!(LabelClass::all("vm").split(&[]).is_none());
    }

    #[test]
    fn unsafe_characters_never_reach_the_expression() {
        let known = values(&["a'b", "a'c", "x]", "y\\"]);
        for g in leaves(LabelClass::all("vm"), &known, 0) {
            let re = g.regex();
            assert!(
                !re.contains('\'') && !re.contains('\\') && !re.contains("]]"),
                "{re}"
            );
        }
    }

    /// The expression means what `contains` says, checked with the `regex` crate (the same
    /// syntax on these patterns as Java's `Pattern`).
    fn check_regex_agrees(group: &LabelClass, probes: &[String]) {
        let re = regex::Regex::new(&group.regex()).unwrap();
        for p in probes {
            assert_eq!(
                re.is_match(p),
                group.contains(p),
                "{} on {p:?}",
                group.regex()
            );
        }
    }

    proptest! {
        /// Whatever the known values: the leaves are disjoint and cover every value, known or
        /// not (completeness is what keeps a new VM from being lost), and the regex agrees with
        /// `contains`. Unsafe characters (`'`, `-`) are never written, so values that differ
        /// only by them may share a leaf: that costs requests, never rows.
        #[test]
        fn groups_partition_every_value(
            known in proptest::collection::vec("[a-c0-3.'-]{0,5}", 0..24),
            probes in proptest::collection::vec("[a-d0-4.'-]{0,6}", 0..40),
        ) {
            let leaves = leaves(LabelClass::all("vm"), &known, 0);
            let everything: Vec<String> = known.iter().chain(&probes).cloned().collect();
            for v in &everything {
                prop_assert_eq!(leaves.iter().filter(|g| g.contains(v)).count(), 1, "{}", v);
            }
            for g in &leaves {
                check_regex_agrees(g, &everything);
            }
        }

        /// With label values as vScope writes them (non-empty, letters, digits, dots), every
        /// known value ends alone in its leaf: a fetch limit can always be met down to one
        /// series.
        #[test]
        fn safe_values_are_told_apart_down_to_one_per_group(
            known in proptest::collection::vec("[a-c0-3.]{1,5}", 0..24),
        ) {
            for g in leaves(LabelClass::all("vm"), &known, 0) {
                let mut inside: Vec<&String> = known.iter().filter(|v| g.contains(v)).collect();
                inside.sort();
                inside.dedup();
                prop_assert!(inside.len() <= 1, "{:?} holds {:?}", g.regex(), inside);
            }
        }
    }
}
