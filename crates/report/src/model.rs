//! What the report is made of, independent of the output format: sections holding charts and
//! tables of typed cells. Every format renders the same tables, so the JSON a test checks is
//! the data the HTML shows.

use serde_json::{Map, Value as Json};

/// One table cell.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// No value (no data, or not applicable).
    Null,
    /// Text.
    Text(String),
    /// An integer (counts).
    Int(i64),
    /// A real number, kept at full precision in CSV and JSON.
    Num(f64),
}

impl Cell {
    /// A number, or `Null` for `None` and non-finite values.
    pub fn num(v: Option<f64>) -> Cell {
        match v {
            Some(x) if x.is_finite() => Cell::Num(x),
            _ => Cell::Null,
        }
    }

    /// Text, or `Null` for `None`.
    pub fn text(v: Option<&str>) -> Cell {
        v.map_or(Cell::Null, |s| Cell::Text(s.to_string()))
    }

    /// The JSON value (numbers at full precision).
    pub fn json(&self) -> Json {
        match self {
            Cell::Null => Json::Null,
            Cell::Text(s) => Json::String(s.clone()),
            Cell::Int(i) => Json::from(*i),
            Cell::Num(x) => serde_json::Number::from_f64(*x).map_or(Json::Null, Json::Number),
        }
    }

    /// The CSV field (full precision; empty for null).
    pub fn csv(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Text(s) => {
                if s.contains([',', '"', '\n', '\r']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s.clone()
                }
            }
            Cell::Int(i) => i.to_string(),
            Cell::Num(x) => x.to_string(),
        }
    }

    /// For people (HTML, Markdown): numbers rounded to what is worth reading.
    pub fn display(&self) -> String {
        match self {
            Cell::Null => "–".into(),
            Cell::Text(s) => s.clone(),
            Cell::Int(i) => i.to_string(),
            Cell::Num(x) => {
                let a = x.abs();
                if a >= 1e7 {
                    format!("{x:.3e}")
                } else if a >= 100.0 {
                    format!("{x:.1}")
                } else if a >= 0.01 || *x == 0.0 {
                    format!("{x:.2}")
                } else {
                    format!("{x:.3e}")
                }
            }
        }
    }
}

/// A column: its name (the JSON/CSV key), unit and meaning.
#[derive(Debug, Clone)]
pub struct Column {
    /// Key in JSON and CSV header.
    pub name: String,
    /// Unit, e.g. `%`, `ms`, `KB`; `None` for labels and for metrics the catalogue gives no unit.
    pub unit: Option<String>,
}

impl Column {
    /// A column with an optional unit.
    pub fn new(name: &str, unit: Option<&str>) -> Column {
        Column {
            name: name.to_string(),
            unit: unit.map(str::to_string),
        }
    }
}

/// A table of the report.
#[derive(Debug, Clone)]
pub struct Table {
    /// File stem and JSON key, e.g. `host_usage`.
    pub name: String,
    /// Heading shown to people.
    pub title: String,
    /// How the numbers were computed (source table, definitions, thresholds).
    pub note: String,
    /// The dataset table the numbers come from (e.g. `host_metrics_1h`), if any.
    pub source: Option<String>,
    /// Columns.
    pub columns: Vec<Column>,
    /// Rows, each as long as `columns`.
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    /// The JSON object: title, note, source, columns with units, rows as objects.
    pub fn json(&self) -> Json {
        let rows: Vec<Json> = self
            .rows
            .iter()
            .map(|r| {
                let mut m = Map::new();
                for (c, v) in self.columns.iter().zip(r) {
                    m.insert(c.name.clone(), v.json());
                }
                Json::Object(m)
            })
            .collect();
        let columns: Vec<Json> = self
            .columns
            .iter()
            .map(|c| serde_json::json!({"name": c.name, "unit": c.unit}))
            .collect();
        serde_json::json!({
            "title": self.title,
            "note": self.note,
            "source": self.source,
            "columns": columns,
            "rows": rows,
        })
    }

    /// The CSV text: a header line of column names (units in brackets), then the rows.
    pub fn csv(&self) -> String {
        let mut out = self
            .columns
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
            .join(",");
        out.push('\n');
        for r in &self.rows {
            out.push_str(&r.iter().map(Cell::csv).collect::<Vec<_>>().join(","));
            out.push('\n');
        }
        out
    }

    /// The header label of column `i` for people: name and unit.
    pub fn label(&self, i: usize) -> String {
        let c = &self.columns[i];
        match &c.unit {
            Some(u) => format!("{} ({u})", c.name),
            None => c.name.clone(),
        }
    }
}

/// A section: text, charts and tables.
#[derive(Debug, Clone)]
pub struct Section {
    /// Anchor id.
    pub id: String,
    /// Heading.
    pub title: String,
    /// Paragraphs above the charts.
    pub text: Vec<String>,
    /// Self-contained `<svg>` elements.
    pub charts: Vec<String>,
    /// Tables.
    pub tables: Vec<Table>,
}

/// The whole report.
#[derive(Debug, Clone)]
pub struct Report {
    /// Report title.
    pub title: String,
    /// Period start (inclusive), ms UTC.
    pub from_ms: i64,
    /// Period end (exclusive), ms UTC.
    pub to_ms: i64,
    /// The parameters the numbers depend on (thresholds, percentile definition, dataset).
    pub parameters: Vec<(String, Json)>,
    /// Sections in reading order (summary first).
    pub sections: Vec<Section>,
}

impl Report {
    /// Every table of every section.
    pub fn tables(&self) -> impl Iterator<Item = &Table> {
        self.sections.iter().flat_map(|s| s.tables.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_render_per_format() {
        assert_eq!(Cell::num(Some(f64::NAN)), Cell::Null);
        assert_eq!(Cell::Num(0.1 + 0.2).csv(), "0.30000000000000004");
        assert_eq!(Cell::Num(12.3456).display(), "12.35");
        assert_eq!(Cell::Text("a,\"b\"".into()).csv(), "\"a,\"\"b\"\"\"");
        assert_eq!(Cell::Null.json(), Json::Null);
        assert_eq!(Cell::Int(3).json(), Json::from(3));
    }

    #[test]
    fn table_json_has_rows_as_objects_and_units() {
        let t = Table {
            name: "t".into(),
            title: "T".into(),
            note: String::new(),
            source: Some("vm_metrics".into()),
            columns: vec![Column::new("vm", None), Column::new("cpu_p95", Some("%"))],
            rows: vec![vec![Cell::Text("vm-1".into()), Cell::Num(12.5)]],
        };
        let j = t.json();
        assert_eq!(j["rows"][0]["cpu_p95"], 12.5);
        assert_eq!(j["columns"][1]["unit"], "%");
        assert_eq!(t.label(1), "cpu_p95 (%)");
        assert_eq!(t.csv(), "vm,cpu_p95\nvm-1,12.5\n");
    }
}
