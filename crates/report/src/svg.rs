//! Hand-written, self-contained SVG charts (no chart crate: three chart kinds are a few hundred
//! lines, and `plotters` would add build time for nothing the report needs). Every chart has a
//! title, labelled axes with units and, for time axes, UTC dates.

use std::fmt::Write;

use vscope_core::semantics::time::{DAY_MS, HOUR_MS};

/// Colours of successive series (colour-blind friendly, Okabe-Ito).
const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
];

/// The colour of series `i`.
pub fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Escapes text for SVG/HTML content and attributes.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A label of at most `max` characters: a long one loses its middle ("dc-paris/…/host-12"),
/// so that both the datacenter at its start and the object at its end stay readable.
pub fn shorten(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max || max < 3 {
        s.to_string()
    } else {
        let tail_len = (max - 1) / 2 + (max - 1) % 2;
        let head_len = max - 1 - tail_len;
        let head: String = s.chars().take(head_len).collect();
        let tail: String = s.chars().skip(n - tail_len).collect();
        format!("{head}…{tail}")
    }
}

/// "Nice" tick values covering `[lo, hi]` (1, 2, 5 × 10^k steps), at most about `n` of them.
pub fn ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(lo.is_finite() && hi.is_finite()) || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / n.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// A number for an axis label: compact, no needless decimals.
pub fn fmt_num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 || (a > 0.0 && a < 1e-3) {
        format!("{v:.2e}")
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

fn header(out: &mut String, w: f64, h: f64, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12" role="img" aria-label="{t}"><rect width="{w}" height="{h}" fill="white"/><text x="{x}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{t}</text>"#,
        t = esc(title),
        x = w / 2.0
    );
}

fn legend(out: &mut String, names: &[(String, &'static str, bool)], x: f64, y: f64) {
    let mut cx = x;
    for (name, col, dashed) in names {
        let dash = if *dashed {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<line x1="{cx}" y1="{y}" x2="{x2}" y2="{y}" stroke="{col}" stroke-width="3"{dash}/><text x="{tx}" y="{ty}">{n}</text>"#,
            x2 = cx + 18.0,
            tx = cx + 22.0,
            ty = y + 4.0,
            n = esc(name)
        );
        cx += 36.0 + 6.6 * name.chars().count() as f64;
    }
}

/// One group of horizontal bars per category, one bar per series; `None` values leave a gap.
/// `marker` draws a labelled vertical line (e.g. the threshold).
pub struct BarChart<'a> {
    /// Chart title.
    pub title: &'a str,
    /// Axis label with its unit, e.g. `CPU p95 (%)`.
    pub value_label: &'a str,
    /// Category labels (one group of bars each).
    pub categories: Vec<String>,
    /// Series names and their value per category.
    pub series: Vec<(String, Vec<Option<f64>>)>,
    /// An optional reference line: its value and label.
    pub marker: Option<(f64, String)>,
}

impl BarChart<'_> {
    /// Renders the chart as an `<svg>` element.
    pub fn render(&self) -> String {
        let (w, left, right, top) = (900.0, 250.0, 30.0, 62.0);
        let nser = self.series.len().max(1) as f64;
        let bar_h = 9.0;
        let group_h = bar_h * nser + 6.0;
        let plot_h = (group_h * self.categories.len().max(1) as f64).max(60.0);
        let h = top + plot_h + 50.0;
        let mut max = self
            .series
            .iter()
            .flat_map(|s| s.1.iter().flatten())
            .fold(0.0f64, |a, b| a.max(*b));
        if let Some((m, _)) = &self.marker {
            max = max.max(*m);
        }
        if max <= 0.0 {
            max = 1.0;
        }
        let ts = ticks(0.0, max * 1.05, 6);
        let hi = ts.last().copied().unwrap_or(max).max(max);
        let pw = w - left - right;
        let sx = |v: f64| left + v / hi * pw;
        let mut o = String::new();
        header(&mut o, w, h, self.title);
        let names: Vec<_> = self
            .series
            .iter()
            .enumerate()
            .map(|(i, s)| (s.0.clone(), colour(i), false))
            .collect();
        legend(&mut o, &names, left, 40.0);
        for t in &ts {
            let x = sx(*t);
            let _ = write!(
                o,
                r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{y2}" stroke="#ddd"/><text x="{x}" y="{ty}" text-anchor="middle">{l}</text>"##,
                y2 = top + plot_h,
                ty = top + plot_h + 16.0,
                l = fmt_num(*t)
            );
        }
        for (ci, cat) in self.categories.iter().enumerate() {
            let gy = top + ci as f64 * group_h;
            let _ = write!(
                o,
                r#"<text x="{x}" y="{y}" text-anchor="end" font-size="11"><title>{full}</title>{c}</text>"#,
                x = left - 6.0,
                y = gy + group_h / 2.0 + 3.0,
                full = esc(cat),
                c = esc(&shorten(cat, 36))
            );
            for (si, (name, vals)) in self.series.iter().enumerate() {
                if let Some(Some(v)) = vals.get(ci) {
                    let _ = write!(
                        o,
                        r#"<rect x="{left}" y="{y}" width="{bw:.1}" height="{bar_h}" fill="{c}"><title>{cat} {n}: {v}</title></rect>"#,
                        y = gy + 3.0 + si as f64 * bar_h,
                        bw = (sx(v.max(0.0)) - left).max(0.5),
                        c = colour(si),
                        cat = esc(cat),
                        n = esc(name),
                        v = fmt_num(*v)
                    );
                }
            }
        }
        if let Some((m, label)) = &self.marker {
            let x = sx(*m);
            // Near the right edge the label goes on the left of the line.
            let (tx, anchor) = if x > left + pw * 0.75 {
                (x - 4.0, "end")
            } else {
                (x + 4.0, "start")
            };
            let _ = write!(
                o,
                r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{y2}" stroke="#c00" stroke-width="2" stroke-dasharray="5 3"/><text x="{tx}" y="{ty}" fill="#c00" font-size="11" text-anchor="{anchor}">{l}</text>"##,
                y2 = top + plot_h,
                ty = top - 4.0,
                l = esc(label)
            );
        }
        let _ = write!(
            o,
            r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{y2}" stroke="black"/><line x1="{left}" y1="{y2}" x2="{x2}" y2="{y2}" stroke="black"/><text x="{cx}" y="{ly}" text-anchor="middle">{l}</text></svg>"#,
            y2 = top + plot_h,
            x2 = left + pw,
            cx = left + pw / 2.0,
            ly = h - 12.0,
            l = esc(self.value_label)
        );
        o
    }
}

/// A line over a UTC time axis.
pub struct Line {
    /// Legend name.
    pub name: String,
    /// `(ms since epoch, value)`, ascending.
    pub points: Vec<(i64, f64)>,
    /// Dashed (a trend or forecast) rather than solid (observed data).
    pub dashed: bool,
    /// Palette index.
    pub colour: usize,
}

/// A shaded band over a UTC time axis (a prediction interval).
pub struct Band {
    /// Legend name.
    pub name: String,
    /// `(ms since epoch, low, high)`, ascending.
    pub points: Vec<(i64, f64, f64)>,
    /// Palette index.
    pub colour: usize,
}

/// Lines over time with a UTC date axis, optional shaded bands, horizontal reference lines
/// (thresholds) and a vertical one (the period end, where the forecast starts).
pub struct LineChart<'a> {
    /// Chart title.
    pub title: &'a str,
    /// Y axis label with its unit.
    pub y_label: &'a str,
    /// The lines.
    pub lines: Vec<Line>,
    /// Shaded bands, drawn under the lines.
    pub bands: Vec<Band>,
    /// Horizontal reference lines `(y, label)`.
    pub marks: Vec<(f64, String)>,
    /// A vertical reference line `(ms, label)`.
    pub now: Option<(i64, String)>,
}

impl LineChart<'_> {
    /// Renders the chart as an `<svg>` element.
    pub fn render(&self) -> String {
        let (w, h, left, right, top, bottom) = (900.0, 420.0, 80.0, 45.0, 30.0, 60.0);
        let pts = self.lines.iter().flat_map(|l| l.points.iter().copied());
        let band_pts = self
            .bands
            .iter()
            .flat_map(|b| b.points.iter().flat_map(|p| [(p.0, p.1), (p.0, p.2)]));
        let (mut x0, mut x1, mut y0, mut y1) = (i64::MAX, i64::MIN, f64::MAX, f64::MIN);
        for (x, y) in pts.chain(band_pts) {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
        if x0 <= x1 {
            for (m, _) in &self.marks {
                y0 = y0.min(*m);
                y1 = y1.max(*m);
            }
        }
        if x0 > x1 {
            (x0, x1, y0, y1) = (0, 1, 0.0, 1.0);
        }
        if x1 == x0 {
            x1 = x0 + 1;
        }
        if y1 <= y0 {
            y1 = y0 + 1.0;
        }
        let pad = (y1 - y0) * 0.05;
        let yt = ticks(y0 - pad, y1 + pad, 6);
        let (ylo, yhi) = (
            yt.first().copied().unwrap_or(y0).min(y0),
            yt.last().copied().unwrap_or(y1).max(y1),
        );
        // Legend rows below the title.
        let per_row = 3usize;
        let named = self.lines.iter().filter(|l| !l.name.is_empty()).count()
            + self.bands.iter().filter(|b| !b.name.is_empty()).count();
        let legend_rows = named.div_ceil(per_row).max(1);
        let top = top + 18.0 * legend_rows as f64;
        let h = h + 18.0 * legend_rows as f64;
        let (pw, ph) = (w - left - right, h - top - bottom);
        let sx = |x: i64| left + (x - x0) as f64 / (x1 - x0) as f64 * pw;
        let sy = |y: f64| top + ph - (y - ylo) / (yhi - ylo) * ph;
        let mut o = String::new();
        header(&mut o, w, h, self.title);
        // Lines and bands without a name stay out of the legend (e.g. each datastore's trend
        // and band, drawn in its line's colour).
        let entries: Vec<_> = self
            .lines
            .iter()
            .map(|l| (shorten(&l.name, 34), colour(l.colour), l.dashed))
            .chain(
                self.bands
                    .iter()
                    .map(|b| (shorten(&b.name, 34), colour(b.colour), false)),
            )
            .filter(|e| !e.0.is_empty())
            .collect();
        for (r, chunk) in entries.chunks(per_row).enumerate() {
            legend(&mut o, chunk, left, 40.0 + 18.0 * r as f64);
        }
        for t in &yt {
            let y = sy(*t);
            let _ = write!(
                o,
                r##"<line x1="{left}" y1="{y}" x2="{x2}" y2="{y}" stroke="#ddd"/><text x="{tx}" y="{ty}" text-anchor="end">{l}</text>"##,
                x2 = left + pw,
                tx = left - 5.0,
                ty = y + 4.0,
                l = fmt_num(*t)
            );
        }
        // Time ticks: whole UTC days when the range spans several, else whole hours.
        let span = x1 - x0;
        let step = [
            HOUR_MS,
            6 * HOUR_MS,
            DAY_MS,
            2 * DAY_MS,
            7 * DAY_MS,
            14 * DAY_MS,
            30 * DAY_MS,
        ]
        .into_iter()
        .find(|s| span / s <= 8)
        .unwrap_or(90 * DAY_MS);
        let mut t = (x0 + step - 1).div_euclid(step) * step;
        while t <= x1 {
            let x = sx(t);
            let fmt = if step >= DAY_MS {
                "%Y-%m-%d"
            } else {
                "%m-%d %H:%M"
            };
            let label = chrono::DateTime::from_timestamp_millis(t)
                .map(|d| d.format(fmt).to_string())
                .unwrap_or_default();
            let _ = write!(
                o,
                r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{y2}" stroke="#eee"/><text x="{x}" y="{ty}" text-anchor="middle">{label}</text>"##,
                y2 = top + ph,
                ty = top + ph + 16.0
            );
            t += step;
        }
        for b in &self.bands {
            if b.points.is_empty() {
                continue;
            }
            let mut d = String::new();
            for (i, (x, _, hi)) in b.points.iter().enumerate() {
                let _ = write!(
                    d,
                    "{}{:.1},{:.1}",
                    if i == 0 { "M" } else { " L" },
                    sx(*x),
                    sy(*hi)
                );
            }
            for (x, lo, _) in b.points.iter().rev() {
                let _ = write!(d, " L{:.1},{:.1}", sx(*x), sy(*lo));
            }
            let _ = write!(
                o,
                r#"<path d="{d} Z" fill="{c}" fill-opacity="0.18" stroke="none"><title>{n}</title></path>"#,
                c = colour(b.colour),
                n = esc(&b.name)
            );
        }
        for (m, label) in &self.marks {
            let y = sy(*m);
            let _ = write!(
                o,
                r##"<line x1="{left}" y1="{y}" x2="{x2}" y2="{y}" stroke="#c00" stroke-width="1.5" stroke-dasharray="5 3"/><text x="{tx}" y="{ty}" fill="#c00" font-size="11" text-anchor="end">{l}</text>"##,
                x2 = left + pw,
                tx = left + pw - 3.0,
                ty = y - 4.0,
                l = esc(label)
            );
        }
        if let Some((t, label)) = &self.now {
            let x = sx(*t);
            let _ = write!(
                o,
                r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{y2}" stroke="#555" stroke-dasharray="2 3"/><text x="{tx}" y="{ty}" fill="#555" font-size="11">{l}</text>"##,
                y2 = top + ph,
                tx = x + 3.0,
                ty = top + 12.0,
                l = esc(label)
            );
        }
        for l in &self.lines {
            if l.points.is_empty() {
                continue;
            }
            let mut d = String::new();
            for (i, (x, y)) in l.points.iter().enumerate() {
                let _ = write!(
                    d,
                    "{}{:.1},{:.1}",
                    if i == 0 { "M" } else { " L" },
                    sx(*x),
                    sy(*y)
                );
            }
            let dash = if l.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let _ = write!(
                o,
                r#"<path d="{d}" fill="none" stroke="{c}" stroke-width="{sw}"{dash}><title>{n}</title></path>"#,
                c = colour(l.colour),
                sw = if l.dashed { 1.5 } else { 2.0 },
                n = esc(&l.name)
            );
        }
        let _ = write!(
            o,
            r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{y2}" stroke="black"/><line x1="{left}" y1="{y2}" x2="{x2}" y2="{y2}" stroke="black"/><text x="{cx}" y="{ly}" text-anchor="middle">time (UTC)</text><text transform="translate(16 {cy}) rotate(-90)" text-anchor="middle">{yl}</text></svg>"#,
            y2 = top + ph,
            x2 = left + pw,
            cx = left + pw / 2.0,
            ly = h - 14.0,
            cy = top + ph / 2.0,
            yl = esc(self.y_label)
        );
        o
    }
}

/// Labelled points on two value axes, with optional threshold lines on each axis.
pub struct Scatter<'a> {
    /// Chart title.
    pub title: &'a str,
    /// X axis label with its unit.
    pub x_label: &'a str,
    /// Y axis label with its unit.
    pub y_label: &'a str,
    /// `(label, x, y, palette index)`.
    pub points: Vec<(String, f64, f64, usize)>,
    /// Vertical reference lines `(x, label)`.
    pub x_marks: Vec<(f64, String)>,
    /// Horizontal reference lines `(y, label)`.
    pub y_marks: Vec<(f64, String)>,
    /// Fixed axis ranges (e.g. 0..100 for percentages); computed from the data when `None`.
    pub range: Option<(f64, f64)>,
}

impl Scatter<'_> {
    /// Renders the chart as an `<svg>` element.
    pub fn render(&self) -> String {
        let (w, h, left, right, top, bottom) = (900.0, 520.0, 80.0, 30.0, 40.0, 60.0);
        let (lo, hi) = self.range.unwrap_or_else(|| {
            let m = self
                .points
                .iter()
                .map(|p| p.1.max(p.2))
                .fold(1.0f64, f64::max);
            (0.0, m * 1.05)
        });
        let (pw, ph) = (w - left - right, h - top - bottom);
        let sx = |x: f64| left + (x - lo) / (hi - lo) * pw;
        let sy = |y: f64| top + ph - (y - lo) / (hi - lo) * ph;
        let mut o = String::new();
        header(&mut o, w, h, self.title);
        for t in ticks(lo, hi, 10) {
            let (x, y) = (sx(t), sy(t));
            let _ = write!(
                o,
                r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{yb}" stroke="#eee"/><text x="{x}" y="{ty}" text-anchor="middle">{l}</text><line x1="{left}" y1="{y}" x2="{xr}" y2="{y}" stroke="#eee"/><text x="{lx}" y="{ly}" text-anchor="end">{l}</text>"##,
                yb = top + ph,
                ty = top + ph + 16.0,
                xr = left + pw,
                lx = left - 5.0,
                ly = y + 4.0,
                l = fmt_num(t)
            );
        }
        for (v, label) in &self.x_marks {
            let x = sx(*v);
            let _ = write!(
                o,
                r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{yb}" stroke="#c00" stroke-dasharray="5 3"/><text x="{tx}" y="{ty}" fill="#c00" font-size="11">{l}</text>"##,
                yb = top + ph,
                tx = x + 3.0,
                ty = top + 12.0,
                l = esc(label)
            );
        }
        for (v, label) in &self.y_marks {
            let y = sy(*v);
            let _ = write!(
                o,
                r##"<line x1="{left}" y1="{y}" x2="{xr}" y2="{y}" stroke="#c00" stroke-dasharray="5 3"/><text x="{tx}" y="{ty}" fill="#c00" font-size="11" text-anchor="end">{l}</text>"##,
                xr = left + pw,
                tx = left + pw - 3.0,
                ty = y - 4.0,
                l = esc(label)
            );
        }
        for (label, x, y, c) in &self.points {
            let _ = write!(
                o,
                r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="5" fill="{col}" fill-opacity="0.75"><title>{l}: {xv}, {yv}</title></circle>"#,
                cx = sx(*x),
                cy = sy(*y),
                col = colour(*c),
                l = esc(label),
                xv = fmt_num(*x),
                yv = fmt_num(*y)
            );
        }
        let _ = write!(
            o,
            r#"<line x1="{left}" y1="{top}" x2="{left}" y2="{yb}" stroke="black"/><line x1="{left}" y1="{yb}" x2="{xr}" y2="{yb}" stroke="black"/><text x="{cx}" y="{ly}" text-anchor="middle">{xl}</text><text transform="translate(16 {cy}) rotate(-90)" text-anchor="middle">{yl}</text></svg>"#,
            yb = top + ph,
            xr = left + pw,
            cx = left + pw / 2.0,
            ly = h - 14.0,
            cy = top + ph / 2.0,
            xl = esc(self.x_label),
            yl = esc(self.y_label)
        );
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_labels_lose_their_middle_not_the_host() {
        let s = shorten("datacenter-paris-east/esxi-host-172-16-0-12.example", 24);
        assert_eq!(s.chars().count(), 24);
        assert!(s.starts_with("datacenter") && s.ends_with("example"), "{s}");
        assert!(s.contains('…'));
        assert_eq!(shorten("dc1/h1", 24), "dc1/h1");
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 100.0, 5),
            vec![0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
        );
        let t = ticks(0.0, 7.3, 6);
        assert_eq!(t.first(), Some(&0.0));
        assert!(*t.last().unwrap() >= 6.0 && t.iter().all(|v| *v <= 7.3));
        assert_eq!(ticks(5.0, 5.0, 4), vec![5.0]);
    }

    #[test]
    fn charts_carry_title_axis_labels_and_escape_text() {
        let bar = BarChart {
            title: "CPU <p95>",
            value_label: "CPU p95 (%)",
            categories: vec!["h1".into(), "h2".into()],
            series: vec![("p95".into(), vec![Some(50.0), None])],
            marker: Some((80.0, "threshold 80 %".into())),
        }
        .render();
        assert!(bar.starts_with("<svg") && bar.ends_with("</svg>"));
        assert!(bar.contains("CPU &lt;p95&gt;") && bar.contains("CPU p95 (%)"));
        assert_eq!(
            bar.matches("<rect x=").count(),
            1,
            "one bar: the None is a gap"
        );
        let line = LineChart {
            title: "Used",
            y_label: "used (GB)",
            lines: vec![Line {
                name: "ds1".into(),
                points: vec![(1_793_491_200_000, 1.0), (1_793_750_400_000, 2.0)],
                dashed: false,
                colour: 0,
            }],
            bands: vec![Band {
                name: "95 % band".into(),
                points: vec![(1_793_491_200_000, 0.5, 1.5), (1_793_750_400_000, 1.0, 3.0)],
                colour: 0,
            }],
            marks: vec![(4.0, "usable 4".into())],
            now: Some((1_793_750_400_000, "period end".into())),
        }
        .render();
        assert!(line.contains("fill-opacity=\"0.18\"") && line.contains("usable 4"));
        assert!(line.contains("period end"));
        assert!(line.contains("time (UTC)") && line.contains("used (GB)"));
        assert!(line.contains("2026-11-01"), "UTC date ticks");
    }
}
