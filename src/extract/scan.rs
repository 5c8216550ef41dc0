//! A hand-rolled scanner for the common shape of an `/api/query` answer: the fast path of
//! [`super::stream::decode_query_response`].
//!
//! It reads the body in one pass straight into the per-series columns (`ts`, `values`), with no
//! token tree, no per-point allocation and no per-key string: timestamps are parsed from the key
//! bytes, and numbers with at most 19 significant digits and a small exponent are converted
//! exactly with Clinger's fast path (one multiplication or division by an exact power of ten,
//! correctly rounded by IEEE 754). Anything else (escapes in strings, long mantissas, odd value
//! types, duplicate fields, malformed input) makes it give up and return `None`, and the caller
//! decodes the body with serde_json instead. So the scanner never decides what odd input means:
//! when it answers, its answer equals the serde path's (checked by the property tests in
//! `decode.rs`), and every error message comes from serde_json. The two read the same
//! extensions to JSON, in `dps` values only: the bare words `NaN`, `Infinity`, `-Infinity`, and
//! numbers beyond f64's range (read as infinities).

use std::collections::BTreeMap;

use super::raw::{Dps, PointValue, RawSeries, overflowing_number, value_of_str};

/// serde_json's recursion limit is 128; deeper input goes to serde_json, which decides.
const MAX_DEPTH: usize = 100;

/// Exact powers of ten representable in an f64 (10^0 ..= 10^22).
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Scans `body` whole; `None` means "not the plain shape, ask serde_json". The decoder reads
/// answers element by element ([`series_at`], from `super::stream`); this whole-body form is
/// what the property tests hold against serde_json.
#[cfg(test)]
pub(super) fn scan(body: &[u8]) -> Option<Vec<RawSeries>> {
    let mut p = Scanner {
        b: body,
        i: 0,
        points_hint: 0,
    };
    p.ws();
    p.expect(b'[')?;
    let mut out = Vec::new();
    p.ws();
    if p.peek()? == b']' {
        p.i += 1;
    } else {
        loop {
            p.ws();
            out.push(p.series()?);
            p.ws();
            match p.next()? {
                b',' => continue,
                b']' => break,
                _ => return None,
            }
        }
    }
    p.ws();
    (p.i == body.len()).then_some(out)
}

/// Scans one series object starting at `body[at]`: the series and the offset just past its
/// closing brace, or `None` when the bytes there are not a whole series of the plain shape
/// (cut short by the end of `body`, or odd: the caller tells which). `points_hint` carries
/// the size of the last series read to the next one (the series of one answer are alike).
pub(super) fn series_at(
    body: &[u8],
    at: usize,
    points_hint: &mut usize,
) -> Option<(RawSeries, usize)> {
    let mut p = Scanner {
        b: body,
        i: at,
        points_hint: *points_hint,
    };
    let series = p.series()?;
    *points_hint = p.points_hint;
    Some((series, p.i))
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    /// Points of the last series read: the next one's columns start at that capacity (the
    /// series of one answer are usually alike), instead of growing by doubling and copying.
    points_hint: usize,
}

impl<'a> Scanner<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    #[inline]
    fn expect(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    /// A string without escapes (the cursor is on the opening quote); its raw bytes.
    #[inline]
    fn raw_string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.i;
        let rest = &self.b[start..];
        let len = rest
            .iter()
            .position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        if rest[len] != b'"' {
            return None;
        }
        self.i = start + len + 1;
        Some(&rest[..len])
    }

    /// A string without escapes, checked to be UTF-8 as serde_json does.
    fn string(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.raw_string()?).ok()
    }

    fn series(&mut self) -> Option<RawSeries> {
        self.expect(b'{')?;
        let mut metric: Option<Option<String>> = None;
        let mut tags: Option<BTreeMap<String, String>> = None;
        let mut dps: Option<Dps> = None;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
        } else {
            loop {
                self.ws();
                let key = self.raw_string()?;
                self.ws();
                self.expect(b':')?;
                self.ws();
                match key {
                    b"metric" if metric.is_none() => {
                        metric = Some(if self.peek()? == b'n' {
                            self.literal(b"null")?;
                            None
                        } else {
                            Some(self.string()?.to_string())
                        });
                    }
                    b"tags" if tags.is_none() => tags = Some(self.tags()?),
                    b"dps" if dps.is_none() => dps = Some(self.dps()?),
                    b"metric" | b"tags" | b"dps" => return None,
                    _ => {
                        // serde_json checks that unknown field names are valid UTF-8 too.
                        std::str::from_utf8(key).ok()?;
                        self.skip_value(0)?;
                    }
                }
                self.ws();
                match self.next()? {
                    b',' => continue,
                    b'}' => break,
                    _ => return None,
                }
            }
        }
        Some(RawSeries {
            metric: metric.flatten(),
            tags: tags.unwrap_or_default(),
            dps: dps.unwrap_or_default(),
        })
    }

    fn tags(&mut self) -> Option<BTreeMap<String, String>> {
        self.expect(b'{')?;
        let mut tags = BTreeMap::new();
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(tags);
        }
        loop {
            self.ws();
            let k = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            let v = self.string()?;
            tags.insert(k.to_string(), v.to_string());
            self.ws();
            match self.next()? {
                b',' => continue,
                b'}' => return Some(tags),
                _ => return None,
            }
        }
    }

    fn dps(&mut self) -> Option<Dps> {
        // A little more than the last series had: series of one answer differ by a point or
        // two (the window's edges), and one point over an exact capacity would double the
        // columns (measured with heaptrack at 1,000 VMs: 172 MB of columns for 90 MB of points).
        let mut dps = Dps::with_capacity(self.points_hint + self.points_hint / 32 + 8);
        let dps = self.dps_into(&mut dps).map(|()| dps)?;
        self.points_hint = dps.len();
        Some(dps)
    }

    fn dps_into(&mut self, dps: &mut Dps) -> Option<()> {
        match self.peek()? {
            b'{' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    let ts = self.ts_key()?;
                    self.ws();
                    self.expect(b':')?;
                    self.ws();
                    let v = self.point_value()?;
                    dps.push(ts, v);
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        b'}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    self.expect(b'[')?;
                    self.ws();
                    let ts = self.ts_number()?;
                    self.ws();
                    self.expect(b',')?;
                    self.ws();
                    let v = self.point_value()?;
                    self.ws();
                    // Elements after the value are ignored, as the serde path does.
                    while self.peek()? == b',' {
                        self.i += 1;
                        self.ws();
                        self.skip_value(2)?;
                        self.ws();
                    }
                    self.expect(b']')?;
                    dps.push(ts, v);
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'n' => {
                self.literal(b"null")?;
                Some(())
            }
            _ => None,
        }
    }

    /// An object-form key: a quoted integer of at most 18 digits.
    #[inline]
    fn ts_key(&mut self) -> Option<i64> {
        // The usual key, `"<1 to 18 digits>"`, in one pass (eight digits at a time while at
        // most 16 are read that way, so nothing overflows); anything else in two.
        let start = self.i + 1;
        let mut i = start;
        let mut v: i64 = 0;
        if self.peek()? == b'"' {
            while i - start + 8 <= 16
                && let Some(eight) = self.b.get(i..i + 8).and_then(eight_digits)
            {
                v = v * 100_000_000 + i64::from(eight);
                i += 8;
            }
            while let Some(&c) = self.b.get(i).filter(|c| c.is_ascii_digit()) {
                v = v.wrapping_mul(10).wrapping_add(i64::from(c - b'0'));
                i += 1;
            }
            let digits = i - start;
            if (1..=18).contains(&digits) && self.b.get(i) == Some(&b'"') {
                self.i = i + 1;
                return Some(v);
            }
        }
        let raw = self.raw_string()?;
        parse_i64(raw)
    }

    /// An array-form timestamp: a bare integer of at most 18 digits.
    fn ts_number(&mut self) -> Option<i64> {
        let start = self.i;
        if self.peek()? == b'-' {
            self.i += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        if matches!(self.peek()?, b'.' | b'e' | b'E') {
            return None;
        }
        parse_i64(&self.b[start..self.i])
    }

    /// A point value. Besides JSON's values it reads the bare words `NaN` (a null value),
    /// `Infinity` and `-Infinity` (invalid values) that Jackson writes when it does not quote
    /// non-finite doubles (and Python's `json` always): here only, where a value of `dps` is
    /// expected, as the serde path does ([`super::decode`]'s `quote_bare_values`).
    #[inline]
    fn point_value(&mut self) -> Option<PointValue> {
        match self.peek()? {
            b'N' => {
                self.literal(b"NaN")?;
                Some(PointValue::Null)
            }
            b'I' => {
                self.literal(b"Infinity")?;
                Some(PointValue::Invalid)
            }
            b'-' if self.b.get(self.i + 1) == Some(&b'I') => {
                self.literal(b"-Infinity")?;
                Some(PointValue::Invalid)
            }
            b'-' | b'0'..=b'9' => self.number().map(PointValue::Number),
            b'"' => Some(value_of_str(self.string()?)),
            b'n' => {
                self.literal(b"null")?;
                Some(PointValue::Null)
            }
            b't' => {
                self.literal(b"true")?;
                Some(PointValue::Invalid)
            }
            b'f' => {
                self.literal(b"false")?;
                Some(PointValue::Invalid)
            }
            b'{' | b'[' => {
                self.skip_value(2)?;
                Some(PointValue::Invalid)
            }
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Some(())
        } else {
            None
        }
    }

    /// A JSON number as serde_json reads it into an f64, or an infinity for a number beyond
    /// f64's range (which serde_json refuses; the caller counts it as an invalid value).
    #[inline]
    fn number(&mut self) -> Option<f64> {
        let start = self.i;
        let neg = self.peek()? == b'-';
        if neg {
            self.i += 1;
        }
        let mut mantissa: u64 = 0;
        let mut digits = 0u32;
        // Integer part: "0" or [1-9][0-9]*.
        let first = self.next()?;
        if !first.is_ascii_digit() {
            return None;
        }
        if first != b'0' {
            mantissa = u64::from(first - b'0');
            digits = 1;
            while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
                digits += 1;
                self.i += 1;
            }
        } else if self.peek().is_some_and(|c| c.is_ascii_digit()) {
            return None; // leading zero: invalid JSON
        }
        let mut frac_digits = 0i32;
        let mut is_int = true;
        if self.peek() == Some(b'.') {
            is_int = false;
            self.i += 1;
            let s = self.i;
            while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
                if digits > 0 || c != b'0' {
                    digits += 1;
                }
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(c - b'0'));
                self.i += 1;
            }
            frac_digits = (self.i - s) as i32;
            if frac_digits == 0 {
                return None;
            }
        }
        let mut exp = 0i32;
        if matches!(self.peek(), Some(b'e' | b'E')) {
            is_int = false;
            self.i += 1;
            let eneg = match self.peek()? {
                b'-' => {
                    self.i += 1;
                    true
                }
                b'+' => {
                    self.i += 1;
                    false
                }
                _ => false,
            };
            let s = self.i;
            while let Some(c) = self.peek().filter(u8::is_ascii_digit) {
                if self.i - s < 6 {
                    exp = exp * 10 + i32::from(c - b'0');
                }
                self.i += 1;
            }
            if self.i == s {
                return None;
            }
            if self.i - s >= 6 {
                return self.slow_number(start);
            }
            if eneg {
                exp = -exp;
            }
        }
        if digits > 19 || (neg && mantissa == 0) {
            return self.slow_number(start);
        }
        if is_int {
            if digits > 18 {
                return self.slow_number(start);
            }
            let v = mantissa as i64;
            return Some(if neg { -v } else { v } as f64);
        }
        let e10 = exp - frac_digits;
        if mantissa > (1u64 << 53) || !(-22..=22).contains(&e10) {
            return self.slow_number(start);
        }
        let m = mantissa as f64;
        let v = if e10 >= 0 {
            m * POW10[e10 as usize]
        } else {
            m / POW10[(-e10) as usize]
        };
        Some(if neg { -v } else { v })
    }

    /// The number that ends at the cursor (its syntax already checked), converted by
    /// serde_json itself; a number serde_json refuses as out of range is the infinity of its
    /// sign.
    #[cold]
    fn slow_number(&self, start: usize) -> Option<f64> {
        let text = &self.b[start..self.i];
        match serde_json::from_slice::<f64>(text) {
            Ok(v) => Some(v),
            Err(_) => overflowing_number(text),
        }
    }

    /// Skips any JSON value, checking its syntax; `None` on anything serde_json might read
    /// differently (escapes are left to it).
    fn skip_value(&mut self, depth: usize) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'-' | b'0'..=b'9' => self.number().map(|_| ()),
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'[' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'{' => {
                self.i += 1;
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.ws();
                    self.string()?;
                    self.ws();
                    self.expect(b':')?;
                    self.ws();
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => continue,
                        b'}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            _ => None,
        }
    }
}

/// The value of 8 ASCII digits, or None if one of the bytes is not a digit: all eight at
/// once in a 64-bit word (the bytes' high nibbles checked together, then digits paired into
/// 2-digit, 4-digit and 8-digit values by three multiplications).
#[inline]
fn eight_digits(bytes: &[u8]) -> Option<u32> {
    let x = u64::from_le_bytes(bytes.try_into().ok()?);
    const HIGH: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    // Every byte in 0x30..=0x3F, and still so plus 6 (no carry can cross a byte there):
    // exactly '0'..='9'.
    if x & HIGH != ZEROS || (x + 0x0606_0606_0606_0606) & HIGH != ZEROS {
        return None;
    }
    // The first digit is the lowest byte.
    let d = x - ZEROS;
    let pairs = d.wrapping_mul(10).wrapping_add(d >> 8);
    let lo = (pairs & 0x0000_00FF_0000_00FF).wrapping_mul(100 + (1_000_000 << 32));
    let hi = ((pairs >> 16) & 0x0000_00FF_0000_00FF).wrapping_mul(1 + (10_000 << 32));
    Some((lo.wrapping_add(hi) >> 32) as u32)
}

/// `-?[0-9]{1,18}` as an i64; other forms go to the serde path.
#[inline]
fn parse_i64(raw: &[u8]) -> Option<i64> {
    let (neg, digits) = match raw.first()? {
        b'-' => (true, &raw[1..]),
        _ => (false, raw),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v: i64 = 0;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + i64::from(c - b'0');
    }
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eight_digits_reads_every_number_and_refuses_every_non_digit() {
        let mut v = 0u32;
        while v <= 99_999_999 {
            assert_eq!(eight_digits(format!("{v:08}").as_bytes()), Some(v), "{v}");
            v += 9_973;
        }
        assert_eq!(eight_digits(b"99999999"), Some(99_999_999));
        assert_eq!(eight_digits(b"00000000"), Some(0));
        for at in 0..8 {
            for bad in [b'/', b':', b'a', b' ', b'.', b'"', 0x00, 0xff, 0x3f, 0x40] {
                let mut s = *b"12345678";
                s[at] = bad;
                assert_eq!(eight_digits(&s), None, "{:?}", s);
            }
        }
        assert_eq!(eight_digits(b"1234567"), None, "seven bytes");
    }

    #[test]
    fn keys_of_any_length_read_as_before() {
        for key in [
            "0",
            "7",
            "12345678",
            "123456789",
            "1793491200000",
            "999999999999999999",
        ] {
            let body = format!("[{{\"metric\":\"m\",\"tags\":{{}},\"dps\":{{\"{key}\":1.5}}}}]");
            let series = scan(body.as_bytes()).expect("the plain shape");
            assert_eq!(series[0].dps.ts(), [key.parse::<i64>().unwrap()], "{key}");
        }
        // 19 digits or a non-digit: not the fast path's; the two-pass path decides.
        for key in ["1234567890123456789", "12345678x", "-5"] {
            let body = format!("[{{\"metric\":\"m\",\"tags\":{{}},\"dps\":{{\"{key}\":1.5}}}}]");
            let fast = scan(body.as_bytes()).map(|s| s[0].dps.ts().to_vec());
            let two_pass = parse_i64(key.as_bytes());
            assert_eq!(fast, two_pass.map(|t| vec![t]), "{key}");
        }
    }
}
