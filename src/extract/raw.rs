//! What an answer says, before clipping and de-duplication: the series, their `dps` as columns
//! and each point value as the server wrote it. Both decoders fill these: the hand-rolled
//! scanner ([`super::scan`]) for the plain shape and serde ([`super::decode`]) for the rest, so
//! neither depends on the other's internals.

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;

/// One element of the answer as read, before clipping and de-duplication.
#[derive(Deserialize)]
pub(super) struct RawSeries {
    pub(super) metric: Option<String>,
    #[serde(default)]
    pub(super) tags: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) dps: Dps,
}

/// `dps` decoded into columns, in the order received.
#[derive(Default)]
pub(super) struct Dps {
    pub(super) ts: Vec<i64>,
    /// NaN for no value ([`super::decode::SeriesData::values`]).
    pub(super) values: Vec<f64>,
    pub(super) null_values: u64,
    pub(super) invalid_values: u64,
}

impl Dps {
    /// Empty columns with room for `points`.
    pub(super) fn with_capacity(points: usize) -> Dps {
        Dps {
            ts: Vec::with_capacity(points),
            values: Vec::with_capacity(points),
            ..Dps::default()
        }
    }

    /// Points held.
    pub(super) fn len(&self) -> usize {
        self.ts.len()
    }

    /// The timestamps, in the order received.
    #[cfg(test)]
    pub(super) fn ts(&self) -> &[i64] {
        &self.ts
    }

    #[inline]
    pub(super) fn push(&mut self, ts: i64, v: PointValue) {
        self.ts.push(ts);
        match v {
            PointValue::Number(x) if x.is_finite() => self.values.push(x),
            PointValue::Number(_) | PointValue::Invalid => {
                self.invalid_values += 1;
                self.values.push(f64::NAN);
            }
            PointValue::Null => {
                self.null_values += 1;
                self.values.push(f64::NAN);
            }
        }
    }
}

impl<'de> Deserialize<'de> for Dps {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DpsVisitor)
    }
}

struct DpsVisitor;

impl<'de> Visitor<'de> for DpsVisitor {
    type Value = Dps;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("dps as an object {\"ts\": value} or an array [[ts, value], ...]")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Dps, A::Error> {
        let mut dps = Dps::default();
        if let Some(n) = map.size_hint() {
            dps.ts.reserve(n);
            dps.values.reserve(n);
        }
        while let Some(key) = map.next_key::<TsKey>()? {
            let v = map.next_value::<PointValue>()?;
            dps.push(key.0, v);
        }
        Ok(dps)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Dps, A::Error> {
        let mut dps = Dps::default();
        while let Some(pair) = seq.next_element_seed(PairSeed)? {
            dps.push(pair.0, pair.1);
        }
        Ok(dps)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Dps, E> {
        Ok(Dps::default())
    }
}

/// A `dps` key: an integer timestamp written as a string (object form).
struct TsKey(i64);

impl<'de> Deserialize<'de> for TsKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = TsKey;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer timestamp")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<TsKey, E> {
                s.parse::<i64>()
                    .map(TsKey)
                    .map_err(|_| E::custom(format!("dps key '{s}' is not an integer timestamp")))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<TsKey, E> {
                Ok(TsKey(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<TsKey, E> {
                i64::try_from(v)
                    .map(TsKey)
                    .map_err(|_| E::custom("timestamp out of range"))
            }
        }
        d.deserialize_any(V)
    }
}

/// One point value as the server wrote it.
pub(super) enum PointValue {
    Number(f64),
    Null,
    Invalid,
}

impl<'de> Deserialize<'de> for PointValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PointValueVisitor)
    }
}

/// A quoted point value: OpenTSDB quotes non-finite doubles ("NaN", "Infinity"); a proxy may
/// quote numbers.
pub(super) fn value_of_str(s: &str) -> PointValue {
    if s.eq_ignore_ascii_case("nan") {
        return PointValue::Null;
    }
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() => PointValue::Number(x),
        _ => PointValue::Invalid,
    }
}

struct PointValueVisitor;

impl<'de> Visitor<'de> for PointValueVisitor {
    type Value = PointValue;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number, \"NaN\" or null")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<PointValue, E> {
        Ok(PointValue::Number(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<PointValue, E> {
        Ok(PointValue::Number(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<PointValue, E> {
        Ok(PointValue::Number(v as f64))
    }
    fn visit_unit<E: de::Error>(self) -> Result<PointValue, E> {
        Ok(PointValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<PointValue, E> {
        Ok(PointValue::Null)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<PointValue, E> {
        Ok(value_of_str(s))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<PointValue, E> {
        Ok(PointValue::Invalid)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<PointValue, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(PointValue::Invalid)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PointValue, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(PointValue::Invalid)
    }
}

/// One `[ts, value]` pair of the array form.
struct PairSeed;

impl<'de> DeserializeSeed<'de> for PairSeed {
    type Value = (i64, PointValue);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = (i64, PointValue);
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a [timestamp, value] pair")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let ts: TsKey = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(0, &self))?;
                let v: PointValue = seq
                    .next_element()?
                    .ok_or_else(|| de::Error::invalid_length(1, &self))?;
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok((ts.0, v))
            }
        }
        d.deserialize_seq(V)
    }
}

/// The infinity a JSON number beyond f64's range rounds to (serde_json refuses such a number:
/// "number out of range"); `None` for anything else, including what is not a JSON number.
pub(super) fn overflowing_number(token: &[u8]) -> Option<f64> {
    if !is_json_number(token) {
        return None;
    }
    let v: f64 = std::str::from_utf8(token).ok()?.parse().ok()?;
    v.is_infinite().then_some(v)
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
fn is_json_number(t: &[u8]) -> bool {
    let digits =
        |t: &[u8], from: usize| from + t[from..].iter().take_while(|c| c.is_ascii_digit()).count();
    let mut i = usize::from(t.first() == Some(&b'-'));
    match t.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(t, i),
        _ => return false,
    }
    if t.get(i) == Some(&b'.') {
        let end = digits(t, i + 1);
        if end == i + 1 {
            return false;
        }
        i = end;
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(t.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let end = digits(t, i);
        if end == i {
            return false;
        }
        i = end;
    }
    i == t.len()
}
