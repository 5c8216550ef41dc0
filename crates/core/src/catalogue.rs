//! The vScope metric catalogue (`schemas/metrics.json`): which metrics exist, which component
//! (filer, host, vm) each describes and which labels identify one of its series.
//!
//! The catalogue is compiled into the binary so that `vscope-etl metrics` and `validate` work
//! anywhere; the JSON file in `schemas/` stays the one place to edit it.

use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The raw catalogue file, embedded at build time.
const METRICS_JSON: &str = include_str!("../../../schemas/metrics.json");

/// The kind of vSphere object a metric describes; it decides the output table family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Component {
    /// A datastore (OVH API v6 `Filer`), labels `datacenter`, `datastore`.
    Filer,
    /// An ESXi host, labels `datacenter`, `host` and for network metrics `nicname`.
    Host,
    /// A virtual machine, labels `datacenter`, `vm` (the vSphere moRef).
    Vm,
}

impl Component {
    /// All components, in table order.
    pub const ALL: [Component; 3] = [Component::Filer, Component::Host, Component::Vm];

    /// The lower-case name used in metric names, table names and schemas (`filer`, `host`, `vm`).
    pub fn as_str(self) -> &'static str {
        match self {
            Component::Filer => "filer",
            Component::Host => "host",
            Component::Vm => "vm",
        }
    }

    /// The raw table that holds this component's datapoints, e.g. `vm_metrics`.
    pub fn raw_table(self) -> &'static str {
        match self {
            Component::Filer => "filer_metrics",
            Component::Host => "host_metrics",
            Component::Vm => "vm_metrics",
        }
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One metric of the catalogue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricDef {
    /// Full metric name as the server knows it, e.g. `vscope.vm.cpu.usage.perc`.
    pub name: String,
    /// The component the metric describes.
    pub component: Component,
    /// What the metric measures, from the vScope guide.
    pub description: String,
    /// Unit when documented (`%`, `KB`, `ms`...), `None` when the guide does not say.
    pub unit: Option<String>,
    /// Labels that identify one series of this metric, in output column order.
    pub labels: Vec<String>,
    /// `false` for metrics only a third-party UI shows; they may answer `[]`.
    pub documented: bool,
}

#[derive(Debug, Deserialize)]
struct CatalogueFile {
    #[allow(dead_code)]
    description: String,
    #[allow(dead_code)]
    source: String,
    metrics: Vec<MetricDef>,
}

/// The set of known vScope metrics, in file order.
#[derive(Debug, Clone)]
pub struct Catalogue {
    metrics: Vec<MetricDef>,
}

impl Catalogue {
    /// The catalogue compiled into this binary (parsed once).
    pub fn builtin() -> &'static Catalogue {
        static CATALOGUE: OnceLock<Catalogue> = OnceLock::new();
        CATALOGUE.get_or_init(|| {
            Catalogue::from_json(METRICS_JSON)
                .expect("schemas/metrics.json is valid (checked by tests)")
        })
    }

    /// Parses a catalogue document (the format of `schemas/metrics.json`).
    pub fn from_json(text: &str) -> Result<Catalogue, serde_json::Error> {
        let file: CatalogueFile = serde_json::from_str(text)?;
        Ok(Catalogue {
            metrics: file.metrics,
        })
    }

    /// Every metric, in catalogue order.
    pub fn metrics(&self) -> &[MetricDef] {
        &self.metrics
    }

    /// The metric with this exact name.
    pub fn get(&self, name: &str) -> Option<&MetricDef> {
        self.metrics.iter().find(|m| m.name == name)
    }

    /// Metrics whose name matches at least one of `globs` (see [`glob_match`]), in catalogue order.
    pub fn matching<'a>(&'a self, globs: &[String]) -> Vec<&'a MetricDef> {
        self.metrics
            .iter()
            .filter(|m| globs.iter().any(|g| glob_match(g, &m.name)))
            .collect()
    }
}

/// Matches `text` against a shell-style `pattern` where `*` is any run of characters (dots
/// included) and `?` one character; everything else is literal. Used for `metrics = [...]` keys.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative wildcard matching with back-tracking on the last `*`: O(len(p) * len(t)) worst case.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_has_the_twenty_documented_metrics() {
        let c = Catalogue::builtin();
        assert_eq!(c.metrics().iter().filter(|m| m.documented).count(), 20);
        for m in c.metrics() {
            assert!(
                m.name.starts_with(&format!("vscope.{}.", m.component)),
                "{}",
                m.name
            );
            assert_eq!(m.labels[0], "datacenter", "{}", m.name);
        }
        let net = c.get("vscope.host.net.rx").unwrap();
        assert_eq!(net.labels, ["datacenter", "host", "nicname"]);
    }

    /// OVHcloud's vScope API guide, the source of the 20 documented metrics (provenance at the
    /// end of the file).
    const GUIDE: &str = include_str!("../../../docs/vscope-api-guide.en.md");

    /// One row of the guide's metric tables: the section it sits in (`Filers`, `Hosts`,
    /// `Virtual machines`), the metric, its description and its label keys, as written.
    #[derive(Debug)]
    struct GuideRow {
        section: String,
        metric: String,
        description: String,
        labels: Vec<String>,
    }

    /// The rows of the guide's `| Metrics | Description | Labels |` tables. A label cell is
    /// `- key : example` items separated by `<br>` (the leading `\-` is optional); the keys
    /// are kept, in order. Cells are trimmed (the guide has stray spaces).
    fn guide_rows(guide: &str) -> Vec<GuideRow> {
        let mut section = String::new();
        let mut rows = Vec::new();
        for line in guide.lines() {
            if let Some(h) = line.strip_prefix("#### ") {
                section = h.trim().to_string();
                continue;
            }
            let Some(cells) = line
                .trim()
                .strip_prefix('|')
                .and_then(|l| l.strip_suffix('|'))
            else {
                continue;
            };
            let cells: Vec<&str> = cells.split('|').map(str::trim).collect();
            let [metric, description, labels] = cells[..] else {
                continue;
            };
            if !metric.starts_with("vscope.") {
                continue;
            }
            let labels = labels
                .split("<br>")
                .map(|item| {
                    let item = item
                        .trim()
                        .trim_start_matches("\\-")
                        .trim_start_matches('-');
                    item.split(':').next().unwrap_or("").trim().to_string()
                })
                .collect();
            rows.push(GuideRow {
                section: section.clone(),
                metric: metric.to_string(),
                description: description.to_string(),
                labels,
            });
        }
        rows
    }

    #[test]
    fn the_documented_metrics_are_the_guides_exactly() {
        let rows = guide_rows(GUIDE);
        assert_eq!(
            rows.len(),
            20,
            "the guide's tables list 20 metrics: {rows:#?}"
        );
        let c = Catalogue::builtin();
        for row in &rows {
            let m = c
                .get(&row.metric)
                .unwrap_or_else(|| panic!("{} is in the guide, not in the catalogue", row.metric));
            assert!(m.documented, "{}", m.name);
            assert_eq!(m.description, row.description, "{}", m.name);
            assert_eq!(m.labels, row.labels, "{}", m.name);
            let component = match row.section.as_str() {
                "Filers" => Component::Filer,
                "Hosts" => Component::Host,
                "Virtual machines" => Component::Vm,
                other => panic!("{}: unexpected guide section {other:?}", m.name),
            };
            assert_eq!(m.component, component, "{}", m.name);
            // Where the description states a unit, the catalogue has that unit.
            for (words, unit) in [
                ("in KB", "KB"),
                ("in percent", "%"),
                ("in milliseconds", "ms"),
            ] {
                if row.description.contains(words) {
                    assert_eq!(m.unit.as_deref(), Some(unit), "{}", m.name);
                }
            }
        }
        // And nothing else is marked documented.
        let documented: Vec<&str> = c
            .metrics()
            .iter()
            .filter(|m| m.documented)
            .map(|m| m.name.as_str())
            .collect();
        let mut in_guide: Vec<&str> = rows.iter().map(|r| r.metric.as_str()).collect();
        let mut sorted = documented.clone();
        sorted.sort_unstable();
        in_guide.sort_unstable();
        assert_eq!(sorted, in_guide);
    }

    #[test]
    fn the_guide_parser_reads_every_label_form() {
        let rows = guide_rows(
            "#### Hosts\n| Metrics | Description | Labels |\n| --- | --- | --- |\n\
             | vscope.host.net.rx |  Host incoming  | \\- datacenter : dc1, <br>\\- host : 1.2.3.4<br>\\- nicname : vmnic0 |\n\
             | vscope.x | plain | datacenter : dc, <br>datastore : ds |\n| not a metric | x | y |\n",
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].section, "Hosts");
        assert_eq!(rows[0].description, "Host incoming");
        assert_eq!(rows[0].labels, ["datacenter", "host", "nicname"]);
        assert_eq!(rows[1].labels, ["datacenter", "datastore"]);
    }

    #[test]
    fn globs_match_like_a_shell() {
        assert!(glob_match("vscope.*", "vscope.vm.cpu.usage.perc"));
        assert!(glob_match("vscope.vm.*", "vscope.vm.cpu.ready"));
        assert!(!glob_match("vscope.vm.*", "vscope.host.cpu.usage.perc"));
        assert!(glob_match("*.perc", "vscope.vm.cpu.usage.perc"));
        assert!(glob_match("vscope.?m.cpu.ready", "vscope.vm.cpu.ready"));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("", "x"));
    }

    #[test]
    fn matching_keeps_catalogue_order() {
        let c = Catalogue::builtin();
        let got: Vec<&str> = c
            .matching(&["vscope.filer.*".into(), "vscope.host.cpu.*".into()])
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        assert_eq!(
            got,
            [
                "vscope.filer.datastore.diskspace.used",
                "vscope.filer.datastore.diskspace.used.perc",
                "vscope.host.cpu.usage.perc"
            ]
        );
    }
}
