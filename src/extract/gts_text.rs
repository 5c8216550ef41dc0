//! Decoding Warp 10's GTS text format (`/api/v0/fetch?format=text`) straight into per-series
//! columns, line by line as the body streams in, with no per-point allocation.
//!
//! The format, as `EgressFetchHandler.textDump` writes it (senx/warp10-platform 2.9.0):
//!
//! ```text
//! 1793491260000000// vscope.vm.cpu.usage.perc{datacenter=pcc-1_datacenter869,vm=vm-01254} 4.38
//! =1793491200000000// 4.21
//! ```
//!
//! A series' first point carries `TS/LAT:LON/ELEV class{labels} VALUE`, each next point of the
//! same series `=TS/LAT:LON/ELEV VALUE` (the name is written again only when it changes).
//! Class, label names and values are percent-encoded (`GTSHelper.encodeName`); a value is a
//! `Long` (`42`), a `Double` as Java prints it (`4.38`, `1.2345678E7`, `NaN`, `Infinity`), a
//! boolean `T`/`F`, a string `'...'` or `b64:...` bytes (`GTSHelper.encodeValue`). Timestamps
//! are microseconds. Points come newest first (the store's row keys hold `Long.MAX_VALUE -
//! timestamp`, `MultiScanGTSDecoderIterator`), so each series is sorted at the end.
//!
//! The rules for odd input are those of the OpenTSDB decoder ([`DecodeStats`]): a value that is
//! not a finite number becomes a null `value`, counted (NaN in `null_values`; infinities,
//! booleans, strings and bytes in `invalid_values`); points outside `[start, end)` are dropped
//! and counted; a repeated timestamp keeps one point. A series of another class than the one
//! asked for fails the answer ([`DecodeError::WrongMetric`]). A line `# ERROR: ...`, which Warp
//! writes when a fetch fails after its answer started and the request set `showerrors`
//! (`Constants.EGRESS_FETCH_ERROR_PREFIX`), fails the answer: what came before it is not the
//! whole range.

use std::collections::BTreeMap;

use super::decode::{DecodeError, DecodeStats, SeriesData, normalize};

/// What starts the line Warp 10 writes when a fetch fails mid-answer (`showerrors`).
const ERROR_PREFIX: &[u8] = b"# ERROR: ";

/// Bytes of the body kept for error messages.
const SNIPPET_BYTES: usize = 200;

/// The series being filled: its identity and its points so far (as they came).
#[derive(Debug)]
struct Current {
    tags: BTreeMap<String, String>,
    ts: Vec<i64>,
    values: Vec<f64>,
}

/// A streaming decoder of one `/api/v0/fetch` text answer: [`GtsTextStream::push`] each piece
/// of the decoded body, then [`GtsTextStream::finish`].
#[derive(Debug)]
pub struct GtsTextStream {
    start_ms: i64,
    end_ms: i64,
    asked: String,
    /// The end of the body not yet decoded: the start of a line cut by the piece boundary.
    carry: Vec<u8>,
    /// Lines decoded so far, for error messages.
    line: usize,
    current: Option<Current>,
    /// Points of the last series, the capacity of the next one's columns.
    points_hint: usize,
    series: Vec<SeriesData>,
    stats: DecodeStats,
    head: Vec<u8>,
}

impl GtsTextStream {
    /// A decoder keeping the points of class `asked` with `start_ms <= ts < end_ms`.
    pub fn new(start_ms: i64, end_ms: i64, asked: &str) -> GtsTextStream {
        GtsTextStream {
            start_ms,
            end_ms,
            asked: asked.to_string(),
            carry: Vec::new(),
            line: 0,
            current: None,
            points_hint: 0,
            series: Vec::new(),
            stats: DecodeStats::default(),
            head: Vec::new(),
        }
    }

    /// Takes the next bytes of the body and decodes every line they complete. After an error
    /// the decoder must not be fed again.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        if self.head.len() < SNIPPET_BYTES {
            let take = (SNIPPET_BYTES - self.head.len()).min(bytes.len());
            self.head.extend_from_slice(&bytes[..take]);
        }
        let mut rest = bytes;
        if !self.carry.is_empty() {
            // Complete the cut line first, then read the rest in place.
            let Some(nl) = memchr::memchr(b'\n', rest) else {
                self.carry.extend_from_slice(rest);
                return Ok(());
            };
            let mut line = std::mem::take(&mut self.carry);
            line.extend_from_slice(&rest[..nl]);
            self.line(&line)?;
            rest = &rest[nl + 1..];
        }
        while let Some(nl) = memchr::memchr(b'\n', rest) {
            self.line(&rest[..nl])?;
            rest = &rest[nl + 1..];
        }
        self.carry.extend_from_slice(rest);
        Ok(())
    }

    /// The series and counters of the whole answer. An empty body is an answer with no series:
    /// Warp 10 prints nothing for a selection without points in range.
    pub fn finish(mut self) -> Result<(Vec<SeriesData>, DecodeStats), DecodeError> {
        if !self.carry.is_empty() {
            let line = std::mem::take(&mut self.carry);
            self.line(&line)?;
        }
        self.close_current();
        // A series may come in several runs (one per store decoder); merge them.
        self.series.sort_by(|a, b| a.tags.cmp(&b.tags));
        let mut merged: Vec<SeriesData> = Vec::with_capacity(self.series.len());
        for s in self.series.drain(..) {
            match merged.last_mut() {
                Some(last) if last.tags == s.tags => {
                    last.ts.extend_from_slice(&s.ts);
                    last.values.extend_from_slice(&s.values);
                    let (ts, values, _, dups) =
                        normalize(&mut last.ts, &mut last.values, self.start_ms, self.end_ms);
                    self.stats.duplicates += dups;
                    self.stats.points -= dups;
                    last.ts = ts;
                    last.values = values;
                }
                _ => merged.push(s),
            }
        }
        Ok((merged, self.stats))
    }

    /// Decodes one line (without its `\n`).
    fn line(&mut self, line: &[u8]) -> Result<(), DecodeError> {
        self.line += 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Ok(());
        }
        if line.starts_with(ERROR_PREFIX) {
            // `URLEncoder` wrote the stack trace: `+` for a space.
            let text = percent_decode(&line[ERROR_PREFIX.len()..]).replace('+', " ");
            let first = text.lines().next().unwrap_or("").to_string();
            return Err(self.malformed(format!(
                "Warp 10 reported an error after its answer had started, so the answer is \
                 incomplete: {first}"
            )));
        }
        let (continued, rest) = match line.strip_prefix(b"=") {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let (ts_us, rest) = self.timestamp(rest)?;
        let value_text = if continued {
            if self.current.is_none() {
                return Err(self.malformed("a '=' line before any series".into()));
            }
            rest
        } else {
            let sp = rest
                .iter()
                .position(|&c| c == b' ')
                .ok_or_else(|| self.malformed("no value after the class and labels".into()))?;
            self.start_series(&rest[..sp])?;
            &rest[sp + 1..]
        };
        let value = self.value(value_text);
        let cur = self.current.as_mut().expect("a series is open");
        cur.ts.push(ts_us.div_euclid(1000));
        cur.values.push(value);
        Ok(())
    }

    /// Reads `TS/LAT:LON/ELEV ` and returns the timestamp (µs) and what follows the space.
    fn timestamp<'a>(&self, s: &'a [u8]) -> Result<(i64, &'a [u8]), DecodeError> {
        let slash = s
            .iter()
            .position(|&c| c == b'/')
            .ok_or_else(|| self.malformed("no '/' after the timestamp".into()))?;
        let ts = parse_i64(&s[..slash])
            .ok_or_else(|| self.malformed("the timestamp is not an integer".into()))?;
        let sp = s[slash..]
            .iter()
            .position(|&c| c == b' ')
            .ok_or_else(|| self.malformed("no space after the location and elevation".into()))?;
        Ok((ts, &s[slash + sp + 1..]))
    }

    /// Opens the series named `class{labels}`, unless it is the one open.
    fn start_series(&mut self, name: &[u8]) -> Result<(), DecodeError> {
        let (class, tags) = parse_name(name)
            .ok_or_else(|| self.malformed("the series name is not class{labels}".into()))?;
        if class != self.asked {
            return Err(DecodeError::WrongMetric {
                asked: self.asked.clone(),
                answered: class,
            });
        }
        if self.current.as_ref().is_some_and(|c| c.tags == tags) {
            return Ok(());
        }
        self.close_current();
        self.current = Some(Current {
            tags,
            ts: Vec::with_capacity(self.points_hint),
            values: Vec::with_capacity(self.points_hint),
        });
        Ok(())
    }

    /// Sorts, clips and de-duplicates the open series and keeps it when it has points left.
    fn close_current(&mut self) {
        let Some(mut cur) = self.current.take() else {
            return;
        };
        self.points_hint = cur.ts.len();
        // Newest first, as Warp's store reads them: reversed in place, which leaves `normalize`
        // a sorted series to clip instead of one to sort.
        if cur.ts.windows(2).all(|w| w[0] > w[1]) {
            cur.ts.reverse();
            cur.values.reverse();
        }
        let (ts, values, dropped, dups) =
            normalize(&mut cur.ts, &mut cur.values, self.start_ms, self.end_ms);
        self.stats.out_of_window += dropped;
        self.stats.duplicates += dups;
        self.stats.points += ts.len() as u64;
        if !ts.is_empty() {
            self.series.push(SeriesData {
                metric: self.asked.clone(),
                tags: cur.tags,
                ts,
                values,
            });
        }
    }

    /// A value as a double; NaN (counted) for what is not a finite number.
    fn value(&mut self, text: &[u8]) -> f64 {
        if let Some(v) = parse_i64(text) {
            return v as f64;
        }
        if let Some(v) = fast_f64(text) {
            return v;
        }
        // Java's `Double.toString` forms (`4.38`, `1.0E7`, `NaN`, `Infinity`) all parse; a
        // boolean (`T`), a string (`'...'`) or bytes (`b64:...`) do not.
        let parsed = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse::<f64>().ok());
        match parsed {
            Some(v) if v.is_finite() => v,
            Some(v) if v.is_nan() => {
                self.stats.null_values += 1;
                f64::NAN
            }
            _ => {
                self.stats.invalid_values += 1;
                f64::NAN
            }
        }
    }

    fn malformed(&self, message: String) -> DecodeError {
        DecodeError::Malformed {
            message: format!("line {}: {message}", self.line),
            snippet: String::from_utf8_lossy(&self.head).into_owned(),
        }
    }
}

/// The class and labels of a series name `class{label=value,...}`, percent-decoded; `None`
/// when it is not of that shape. Names and values are percent-encoded by Warp, so the first `{`
/// opens the labels and no `,` or `=` inside a name or value is syntax.
pub(super) fn parse_name(name: &[u8]) -> Option<(String, BTreeMap<String, String>)> {
    let open = name.iter().position(|&c| c == b'{')?;
    if !name.ends_with(b"}") || name.len() < open + 2 {
        return None;
    }
    let mut tags = BTreeMap::new();
    for pair in name[open + 1..name.len() - 1]
        .split(|&c| c == b',')
        .filter(|p| !p.is_empty())
    {
        let eq = pair.iter().position(|&c| c == b'=')?;
        tags.insert(percent_decode(&pair[..eq]), percent_decode(&pair[eq + 1..]));
    }
    Some((percent_decode(&name[..open]), tags))
}

/// Exact powers of ten representable in an f64 (10^0 ..= 10^22).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// `-?D+(.D+)?([eE]-?D+)?` as an f64 when Clinger's fast path applies (a mantissa of at most
/// 2^53 and a power of ten within ±22: one exact operand each, so one correctly rounded
/// multiplication or division gives exactly what `str::parse` gives); `None` otherwise, and
/// the caller parses it the slow way. Java's `Double.toString` of a vScope value (`4.38`,
/// `1.2345678E7`) nearly always takes it.
#[inline]
fn fast_f64(t: &[u8]) -> Option<f64> {
    let neg = t.first() == Some(&b'-');
    let mut i = usize::from(neg);
    let mut mantissa: u64 = 0;
    let mut digits = 0u32;
    let int_start = i;
    while let Some(&c) = t.get(i).filter(|c| c.is_ascii_digit()) {
        mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
        digits += 1;
        i += 1;
    }
    if i == int_start {
        return None;
    }
    let mut frac = 0i32;
    if t.get(i) == Some(&b'.') {
        i += 1;
        let frac_start = i;
        while let Some(&c) = t.get(i).filter(|c| c.is_ascii_digit()) {
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
            digits += 1;
            i += 1;
        }
        frac = i32::try_from(i - frac_start).ok()?;
        if frac == 0 {
            return None;
        }
    }
    let mut exp = 0i32;
    if matches!(t.get(i), Some(b'e' | b'E')) {
        i += 1;
        let eneg = t.get(i) == Some(&b'-');
        i += usize::from(eneg);
        let exp_start = i;
        while let Some(&c) = t.get(i).filter(|c| c.is_ascii_digit()) {
            if i - exp_start >= 4 {
                return None;
            }
            exp = exp * 10 + i32::from(c - b'0');
            i += 1;
        }
        if i == exp_start {
            return None;
        }
        if eneg {
            exp = -exp;
        }
    }
    // 19 digits always fit a u64, so the wrapping arithmetic above never wrapped.
    if i != t.len() || digits > 19 || mantissa > (1u64 << 53) {
        return None;
    }
    let e10 = exp - frac;
    let m = mantissa as f64;
    let v = match e10 {
        0..=22 => m * POW10[e10 as usize],
        -22..=-1 => m / POW10[(-e10) as usize],
        _ => return None,
    };
    Some(if neg { -v } else { v })
}

/// A decimal `i64` (optional sign), `None` for anything else.
fn parse_i64(raw: &[u8]) -> Option<i64> {
    let (neg, digits) = match raw.first() {
        Some(b'-') => (true, &raw[1..]),
        Some(b'+') => (false, &raw[1..]),
        _ => (false, raw),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        // 18 digits never overflow; only a 19th needs the checks.
        v = if digits.len() <= 18 {
            v * 10 + i64::from(c - b'0')
        } else {
            v.checked_mul(10)?.checked_add(i64::from(c - b'0'))?
        };
    }
    Some(if neg { -v } else { v })
}

/// `%XX` decoded (`WarpURLDecoder`: `+` stays `+`); a malformed escape is kept as it is.
fn percent_decode(s: &[u8]) -> String {
    if !s.contains(&b'%') {
        return String::from_utf8_lossy(s).into_owned();
    }
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex = (s[i] == b'%')
            .then(|| s.get(i + 1..i + 3))
            .flatten()
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match hex {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(s[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `s` percent-encoded for a Warp 10 selector (`WarpURLDecoder` decodes it): ASCII letters,
/// digits and `.-_` as they are, every other byte `%XX`, so that no character of the value
/// (`{`, `}`, `,`, `=`, `~`, `+`, a space) can be read as selector syntax.
pub fn encode_selector_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_') {
            out.push(c as char);
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &str = "vscope.vm.cpu.usage.perc";

    fn decode(pieces: &[&[u8]], start: i64, end: i64) -> (Vec<SeriesData>, DecodeStats) {
        let mut d = GtsTextStream::new(start, end, M);
        for p in pieces {
            d.push(p).unwrap();
        }
        d.finish().unwrap()
    }

    #[test]
    fn points_newest_first_are_sorted_and_clipped_to_the_window() {
        let body = b"3000000// vscope.vm.cpu.usage.perc{datacenter=dc%201,vm=vm-1} 3.5\n\
                     =2000000// 2\n=1000000// 1.0E7\n\
                     2000000// vscope.vm.cpu.usage.perc{datacenter=dc%201,vm=vm-2} NaN\n";
        let (series, stats) = decode(&[body], 1000, 3000);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].tags["datacenter"], "dc 1");
        assert_eq!(series[0].ts, vec![1000, 2000]);
        assert_eq!(series[0].values, vec![1.0e7, 2.0]);
        assert!(series[1].values[0].is_nan());
        assert_eq!(stats.points, 3);
        assert_eq!(stats.out_of_window, 1);
        assert_eq!(stats.null_values, 1);
    }

    /// Cut anywhere, the body decodes the same.
    #[test]
    fn pieces_cut_anywhere_decode_the_same() {
        let body: &[u8] = b"2000000// vscope.vm.cpu.usage.perc{vm=a} 1.5\r\n=1000000// T\n\
                            1000000// vscope.vm.cpu.usage.perc{vm=b} 'x'\n";
        // Compared through Debug: the null values are NaN, which is not equal to itself.
        let whole = decode(&[body], 0, 10_000);
        for cut in 1..body.len() {
            let got = decode(&[&body[..cut], &body[cut..]], 0, 10_000);
            assert_eq!(format!("{got:?}"), format!("{whole:?}"), "{cut}");
        }
        assert_eq!(whole.1.invalid_values, 2);
    }

    #[test]
    fn a_series_in_two_runs_is_merged_and_duplicates_counted() {
        let body = b"2000000// vscope.vm.cpu.usage.perc{vm=a} 2\n\
                     1000000// vscope.vm.cpu.usage.perc{vm=b} 1\n\
                     1000000// vscope.vm.cpu.usage.perc{vm=a} 1\n=2000000// 2\n";
        let (series, stats) = decode(&[body], 0, 10_000);
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].ts, vec![1000, 2000]);
        assert_eq!(stats.duplicates, 1);
        assert_eq!(stats.points, 3);
    }

    #[test]
    fn errors_wrong_classes_and_garbage_fail_the_answer() {
        let mut d = GtsTextStream::new(0, 10, M);
        let e = d
            .push(b"1000// vscope.vm.cpu.usage.perc{} 1\n\n# ERROR: java.io.IOException%3A+boom\n")
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("incomplete: java.io.IOException: boom"),
            "{e}"
        );
        let mut d = GtsTextStream::new(0, 10, M);
        assert!(matches!(
            d.push(b"1000// other{} 1\n"),
            Err(DecodeError::WrongMetric { .. })
        ));
        for bad in [
            &b"=1000// 1\n"[..],
            b"x// m{} 1\n",
            b"1000 m{} 1\n",
            b"1000// m 1\n",
        ] {
            let mut d = GtsTextStream::new(0, 10, M);
            assert!(d.push(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(GtsTextStream::new(0, 10, M).finish().unwrap().0, vec![]);
    }

    #[test]
    fn integers_parse_up_to_i64_and_refuse_the_rest() {
        assert_eq!(parse_i64(b"1793491200000000"), Some(1_793_491_200_000_000));
        assert_eq!(parse_i64(b"-42"), Some(-42));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"99999999999999999999"), None);
        for bad in [&b""[..], b"-", b"1.0", b"1e3", b" 1"] {
            assert_eq!(parse_i64(bad), None);
        }
    }

    /// The fast path gives exactly what `str::parse` gives, or leaves the text to it.
    #[test]
    fn fast_doubles_equal_the_standard_parse() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut taken = 0;
        for n in 0..200_000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = match n % 4 {
                0 => (x % 10_000_000) as f64 / 1000.0,
                1 => f64::from_bits(x >> 2),
                2 => (x % 100_000) as f64 / 7.0,
                _ => -((x % 1_000_000_000) as f64) * 1e-9,
            };
            let mut java = String::new();
            push_java_like(&mut java, v);
            for text in [java, format!("{v}"), format!("{v:e}")] {
                let want: f64 = text.parse().unwrap();
                if let Some(got) = fast_f64(text.as_bytes()) {
                    taken += 1;
                    assert_eq!(got.to_bits(), want.to_bits(), "{text}");
                }
            }
        }
        assert!(taken > 300_000, "the fast path serves most values: {taken}");
        for bad in [
            "",
            "-",
            ".5",
            "5.",
            "1e",
            "1E+",
            "1.0E12345",
            "NaN",
            "T",
            "'4'",
            "1.0.0",
        ] {
            assert_eq!(fast_f64(bad.as_bytes()), None, "{bad}");
        }
        assert!(fast_f64(b"-0.0").unwrap().is_sign_negative());
    }

    /// Java's `Double.toString` layout (what Warp prints): `4.38`, `1.2345678E7`, `1.0E-4`.
    fn push_java_like(out: &mut String, v: f64) {
        let abs = v.abs();
        if abs == 0.0 || (1e-3..1e7).contains(&abs) {
            let s = format!("{v}");
            out.push_str(&s);
            if !s.contains('.') {
                out.push_str(".0");
            }
        } else {
            let s = format!("{v:e}");
            let (m, e) = s.split_once('e').unwrap();
            out.push_str(m);
            if !m.contains('.') {
                out.push_str(".0");
            }
            out.push('E');
            out.push_str(e);
        }
    }

    #[test]
    fn selector_parts_escape_every_syntax_character() {
        assert_eq!(encode_selector_part("^[a-c].*$"), "%5E%5Ba-c%5D.%2A%24");
        assert_eq!(encode_selector_part("dc 1,x=y"), "dc%201%2Cx%3Dy");
        assert_eq!(
            percent_decode(encode_selector_part("a+b{}").as_bytes()),
            "a+b{}"
        );
    }
}
