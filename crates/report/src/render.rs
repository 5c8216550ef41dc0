//! The output formats: one self-contained HTML file (inline SVG, inline CSS, no script, no
//! external resource), Markdown, one CSV per table, and one JSON document with every table.

use std::fmt::Write;

use super::model::{Report, Table};
use super::svg::esc;

/// An output format of `vscope-etl report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Format {
    /// `report.html`.
    Html,
    /// `report.md`.
    Markdown,
    /// `<table>.csv`, one per table.
    Csv,
    /// `report.json`.
    Json,
}

impl Format {
    /// Parses a `--format` value; `all` gives every format.
    pub fn parse_list(s: &str) -> Result<Vec<Format>, String> {
        match s {
            "html" => Ok(vec![Format::Html]),
            "md" | "markdown" => Ok(vec![Format::Markdown]),
            "csv" => Ok(vec![Format::Csv]),
            "json" => Ok(vec![Format::Json]),
            "all" => Ok(vec![
                Format::Html,
                Format::Markdown,
                Format::Csv,
                Format::Json,
            ]),
            other => Err(format!(
                "unknown format '{other}': use html, md, csv, json or all"
            )),
        }
    }
}

/// Formats ms since the epoch as RFC 3339 UTC with second precision.
pub fn utc(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// The JSON document: the period, the parameters and every table by name.
pub fn json(r: &Report) -> serde_json::Value {
    let mut tables = serde_json::Map::new();
    for t in r.tables() {
        tables.insert(t.name.clone(), t.json());
    }
    let params: serde_json::Map<String, serde_json::Value> = r.parameters.iter().cloned().collect();
    serde_json::json!({
        "title": r.title,
        "period": {"from": utc(r.from_ms), "to": utc(r.to_ms), "from_ms": r.from_ms, "to_ms": r.to_ms},
        "parameters": params,
        "tables": tables,
    })
}

fn html_table(o: &mut String, t: &Table) {
    let _ = write!(o, "<h3 id=\"t-{}\">{}</h3>", esc(&t.name), esc(&t.title));
    if !t.note.is_empty() {
        let _ = write!(o, "<p class=\"note\">{}</p>", esc(&t.note));
    }
    if t.rows.is_empty() {
        o.push_str("<p><em>No rows.</em></p>");
        return;
    }
    o.push_str("<div class=\"scroll\"><table><thead><tr>");
    for i in 0..t.columns.len() {
        let _ = write!(o, "<th>{}</th>", esc(&t.label(i)));
    }
    o.push_str("</tr></thead><tbody>");
    for r in &t.rows {
        o.push_str("<tr>");
        for c in r {
            let class = if matches!(c, super::model::Cell::Num(_) | super::model::Cell::Int(_)) {
                " class=\"n\""
            } else {
                ""
            };
            let _ = write!(o, "<td{class}>{}</td>", esc(&c.display()));
        }
        o.push_str("</tr>");
    }
    o.push_str("</tbody></table></div>");
}

/// The self-contained HTML page.
pub fn html(r: &Report) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>\
body{{font-family:sans-serif;margin:24px;max-width:1000px;color:#222}}h1{{margin-bottom:4px}}\
h2{{border-bottom:2px solid #0072B2;padding-bottom:4px;margin-top:36px}}\
table{{border-collapse:collapse;font-size:12px;margin:8px 0 20px}}th,td{{border:1px solid #ccc;padding:3px 6px}}\
th{{background:#f0f4f8;text-align:left}}td.n{{text-align:right;font-variant-numeric:tabular-nums}}\
.note{{color:#555;font-size:13px}}.scroll{{max-height:520px;overflow:auto}}svg{{display:block;margin:12px 0}}\
nav a{{margin-right:14px}}</style></head><body><h1>{t}</h1><p>Period: <b>{f}</b> to <b>{to}</b> (UTC, end exclusive)</p><nav>",
        t = esc(&r.title),
        f = utc(r.from_ms),
        to = utc(r.to_ms)
    );
    for s in &r.sections {
        let _ = write!(o, "<a href=\"#{}\">{}</a>", esc(&s.id), esc(&s.title));
    }
    o.push_str("</nav>");
    for s in &r.sections {
        let _ = write!(o, "<h2 id=\"{}\">{}</h2>", esc(&s.id), esc(&s.title));
        for p in &s.text {
            let _ = write!(o, "<p>{}</p>", esc(p));
        }
        for c in &s.charts {
            o.push_str(c);
        }
        for t in &s.tables {
            html_table(&mut o, t);
        }
    }
    o.push_str("<h2 id=\"parameters\">Parameters</h2><table><tbody>");
    for (k, v) in &r.parameters {
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = write!(o, "<tr><th>{}</th><td>{}</td></tr>", esc(k), esc(&v));
    }
    o.push_str("</tbody></table></body></html>\n");
    o
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Markdown (GitHub flavour tables), for a terminal or a wiki; charts are left out.
pub fn markdown(r: &Report) -> String {
    let mut o = format!(
        "# {}\n\nPeriod: **{}** to **{}** (UTC, end exclusive)\n",
        r.title,
        utc(r.from_ms),
        utc(r.to_ms)
    );
    for s in &r.sections {
        let _ = write!(o, "\n## {}\n\n", s.title);
        for p in &s.text {
            let _ = writeln!(o, "{p}\n");
        }
        for t in &s.tables {
            let _ = write!(o, "### {}\n\n", t.title);
            if !t.note.is_empty() {
                let _ = write!(o, "_{}_\n\n", md_escape(&t.note));
            }
            if t.rows.is_empty() {
                o.push_str("No rows.\n\n");
                continue;
            }
            let heads: Vec<String> = (0..t.columns.len())
                .map(|i| md_escape(&t.label(i)))
                .collect();
            let _ = writeln!(o, "| {} |", heads.join(" | "));
            let _ = writeln!(o, "|{}", "---|".repeat(heads.len()));
            for row in &t.rows {
                let cells: Vec<String> = row.iter().map(|c| md_escape(&c.display())).collect();
                let _ = writeln!(o, "| {} |", cells.join(" | "));
            }
            o.push('\n');
        }
    }
    o.push_str("## Parameters\n\n");
    for (k, v) in &r.parameters {
        let v = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let _ = writeln!(o, "- **{k}**: {}", md_escape(&v));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::super::model::{Cell, Column, Section};
    use super::*;

    fn sample() -> Report {
        Report {
            title: "Capacity report".into(),
            from_ms: 1_793_491_200_000,
            to_ms: 1_793_577_600_000,
            parameters: vec![("threshold_pct".into(), serde_json::json!(80.0))],
            sections: vec![Section {
                id: "hosts".into(),
                title: "Hosts".into(),
                text: vec!["a <b>".into()],
                charts: vec!["<svg></svg>".into()],
                tables: vec![Table {
                    name: "host_usage".into(),
                    title: "Host usage".into(),
                    note: "p95 | linear".into(),
                    source: None,
                    columns: vec![Column::new("host", None), Column::new("cpu_p95", Some("%"))],
                    rows: vec![vec![Cell::Text("h1".into()), Cell::Num(91.256)]],
                }],
            }],
        }
    }

    #[test]
    fn formats_render_the_same_table() {
        let r = sample();
        let h = html(&r);
        assert!(h.contains("2026-11-01T00:00:00Z") && h.contains("<svg></svg>"));
        assert!(h.contains("a &lt;b&gt;") && h.contains("cpu_p95 (%)") && h.contains("91.26"));
        assert!(!h.contains("<script"), "self-contained and static");
        let m = markdown(&r);
        assert!(m.contains("| host | cpu_p95 (%) |") && m.contains("p95 \\| linear"));
        let j = json(&r);
        assert_eq!(j["tables"]["host_usage"]["rows"][0]["cpu_p95"], 91.256);
        assert_eq!(j["period"]["to"], "2026-11-02T00:00:00Z");
        assert_eq!(j["parameters"]["threshold_pct"], 80.0);
    }

    #[test]
    fn format_list_parses() {
        assert_eq!(Format::parse_list("all").unwrap().len(), 4);
        assert_eq!(Format::parse_list("md").unwrap(), vec![Format::Markdown]);
        assert!(Format::parse_list("pdf").is_err());
    }
}
