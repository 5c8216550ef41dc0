//! Hand-written JSON output for the simulator: numbers formatted the way each real server's
//! JSON library formats them, and string escaping, appended straight to a `String` so that
//! responses with millions of points never build a `serde_json::Value` tree.

use std::fmt::Write as _;

/// Appends `s` as a JSON string literal (quotes included).
pub(crate) fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends an integer.
pub(crate) fn push_int(out: &mut String, v: i64) {
    let _ = write!(out, "{v}");
}

/// Appends `v` the way Go's `encoding/json` writes a `float64` (Erlenmeyer's `dps` values):
/// shortest round-trip digits, plain notation (`4.38`, `5`, `123456789`) unless
/// `|v| < 1e-6` or `|v| >= 1e21`, then exponent notation with a signed exponent (`1e+21`,
/// `1.5e-7`). Non-finite values are never produced by the simulator; they are written as
/// `null` so the output stays valid JSON.
pub(crate) fn push_go_float(out: &mut String, v: f64) {
    if !v.is_finite() {
        out.push_str("null");
        return;
    }
    let abs = v.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{v:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        if exp < 0 {
            let _ = write!(out, "{mantissa}e-{}", -exp);
        } else {
            let _ = write!(out, "{mantissa}e+{exp:02}");
        }
    } else {
        let _ = write!(out, "{v}");
    }
}

/// Appends `v` the way Jackson writes a Java `double` (`Double.toString`, OpenTSDB's `dps`
/// values): always a decimal point (`5.0`, `4.38`), and exponent notation (`1.2345678E7`,
/// `1.0E-4`) outside `[1e-3, 1e7)`. NaN and infinities are written as the strings Jackson
/// quotes them as (`"NaN"`).
pub(crate) fn push_java_double(out: &mut String, v: f64) {
    if v.is_nan() {
        out.push_str("\"NaN\"");
        return;
    }
    if v.is_infinite() {
        out.push_str(if v > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
        return;
    }
    let abs = v.abs();
    if abs == 0.0 || (1e-3..1e7).contains(&abs) {
        let start = out.len();
        let _ = write!(out, "{v}");
        if !out[start..].contains('.') {
            out.push_str(".0");
        }
    } else {
        let s = format!("{v:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        out.push_str(mantissa);
        if !mantissa.contains('.') {
            out.push_str(".0");
        }
        out.push('E');
        out.push_str(exp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn go(v: f64) -> String {
        let mut s = String::new();
        push_go_float(&mut s, v);
        s
    }

    fn java(v: f64) -> String {
        let mut s = String::new();
        push_java_double(&mut s, v);
        s
    }

    #[test]
    fn go_float_formatting_matches_encoding_json() {
        assert_eq!(go(4.38), "4.38");
        assert_eq!(go(5.0), "5");
        assert_eq!(go(0.0), "0");
        assert_eq!(go(-2.5), "-2.5");
        assert_eq!(go(123_456_789.0), "123456789");
        assert_eq!(go(1e21), "1e+21");
        assert_eq!(go(1.5e-7), "1.5e-7");
        assert_eq!(go(1e-10), "1e-10");
        assert_eq!(go(0.000_001), "0.000001");
        assert_eq!(go(f64::NAN), "null");
    }

    #[test]
    fn java_double_formatting_matches_jackson() {
        assert_eq!(java(4.38), "4.38");
        assert_eq!(java(5.0), "5.0");
        assert_eq!(java(0.0), "0.0");
        assert_eq!(java(0.001), "0.001");
        assert_eq!(java(0.0001), "1.0E-4");
        assert_eq!(java(12_345_678.0), "1.2345678E7");
        assert_eq!(java(1e7), "1.0E7");
        assert_eq!(java(9_999_999.5), "9999999.5");
        assert_eq!(java(f64::NAN), "\"NaN\"");
    }

    #[test]
    fn strings_are_escaped() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\nd\u{1}");
        assert_eq!(s, r#""a\"b\\c\nd\u0001""#);
        assert!(serde_json::from_str::<String>(&s).is_ok());
    }
}
