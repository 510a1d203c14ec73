//! Kubernetes quantities as kube-apiserver reads and prints them
//! (apimachinery's `resource.Quantity`): the value, exact to the nano-unit and
//! rounded away from zero below it as `ParseQuantity` rounds, and the text
//! `Quantity.String()` gives back, which kube-apiserver's messages quote
//! (`0.5` prints as `500m`, `1.5Gi` as `1536Mi`, `-3` as itself).
//!
//! `hami_api::parse_quantity` stops at milli-units, which is enough for
//! accounting but not to compare `1001u` with `1002u` as kube-apiserver does.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

/// Nano-units in one unit.
const NANO: i128 = 1_000_000_000;

/// A parsed quantity; quantities compare by value (`1` equals `1000m`).
#[derive(Clone, Debug)]
pub struct Quantity {
    nano: i128,
    text: String,
}

/// Why a value is not a quantity, in `resource.ParseQuantity`'s words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error(
        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Format,
    #[error("unable to parse quantity's suffix")]
    Suffix,
    /// Beyond what hami holds exactly (about 1.7e29 units); kube-apiserver
    /// would accept such a value.
    #[error("unable to parse numeric part of quantity")]
    Numeric,
}

/// The suffix family a quantity is written in; it picks the canonical text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    DecimalSi,
    BinarySi,
    DecimalExponent,
}

/// A quantity's text split as `parseQuantityString` splits it.
struct Parts<'a> {
    negative: bool,
    /// Integer digits without leading zeros ("0" when none are left).
    int: &'a str,
    frac: &'a str,
    suffix: &'a str,
}

impl Quantity {
    /// Parses a quantity's JSON form: a string, a number (`cpu: 2` in YAML) or
    /// null (zero), as `Quantity.UnmarshalJSON` does.
    pub fn from_json(value: &Value) -> Result<Self, QuantityError> {
        match value {
            Value::String(s) => Self::parse(s),
            Value::Number(n) => Self::parse(&n.to_string()),
            Value::Null => Ok(Self {
                nano: 0,
                text: "0".to_owned(),
            }),
            _ => Err(QuantityError::Format),
        }
    }

    /// Parses a quantity's text.
    pub fn parse(raw: &str) -> Result<Self, QuantityError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(QuantityError::Format);
        }
        if s == "0" {
            return Ok(Self {
                nano: 0,
                text: "0".to_owned(),
            });
        }
        let parts = split(s)?;
        let (exp10, exp2, format) = suffix(parts.suffix).ok_or(QuantityError::Suffix)?;
        let magnitude = magnitude(&parts, exp10, exp2, format)?;
        let nano = if parts.negative {
            -magnitude
        } else {
            magnitude
        };
        let text = if kept_as_written(&parts, exp10, exp2, format) {
            s.to_owned()
        } else {
            canonical(nano, format)
        };
        Ok(Self { nano, text })
    }

    pub fn is_negative(&self) -> bool {
        self.nano < 0
    }

    /// Whole units, rounded away from zero (`Quantity.Value()`).
    pub fn units(&self) -> i128 {
        self.nano / NANO + (self.nano % NANO).signum()
    }

    /// kube-apiserver's integer test: `MilliValue() % 1000 == 0`, the value
    /// rounded away from zero to milli-units first.
    pub fn is_whole(&self) -> bool {
        let micro = 1_000_000;
        let milli = self.nano / micro + (self.nano % micro).signum();
        milli % 1000 == 0
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nano == other.nano
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nano.cmp(&other.nano)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Sign, digits and suffix; anything else in the text is a format error.
fn split(s: &str) -> Result<Parts<'_>, QuantityError> {
    let b = s.as_bytes();
    let mut i = 0;
    let negative = match b.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    while b.get(i) == Some(&b'0') {
        i += 1;
    }
    let int_start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let int = match &s[int_start..i] {
        "" => "0",
        digits => digits,
    };
    let mut frac = "";
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        frac = &s[start..i];
    }
    let suffix_start = i;
    while b.get(i).is_some_and(|c| b"eEinumkKMGTP".contains(c)) {
        i += 1;
    }
    if matches!(b.get(i), Some(b'-' | b'+')) {
        i += 1;
    }
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    if i < b.len() {
        return Err(QuantityError::Format);
    }
    Ok(Parts {
        negative,
        int,
        frac,
        suffix: &s[suffix_start..],
    })
}

/// The power of ten, the power of two and the format a suffix stands for.
fn suffix(suffix: &str) -> Option<(i32, u32, Format)> {
    let decimal = |e| Some((e, 0, Format::DecimalSi));
    let binary = |e| Some((0, e, Format::BinarySi));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            let exponent: i64 = exponent.parse().ok()?;
            Some((i32::try_from(exponent).ok()?, 0, Format::DecimalExponent))
        }
    }
}

/// The value's magnitude in nano-units, rounded away from zero; a binary-SI
/// value is capped at 2^63-1 units as kube-apiserver caps it.
fn magnitude(
    parts: &Parts<'_>,
    exp10: i32,
    exp2: u32,
    format: Format,
) -> Result<i128, QuantityError> {
    let numeric = QuantityError::Numeric;
    let digits = format!("{}{}", parts.int, parts.frac);
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0);
    }
    let frac_len = i32::try_from(parts.frac.len()).map_err(|_| numeric)?;
    // value = digits * 10^scale * 2^exp2 nano-units
    let mut scale = exp10
        .checked_sub(frac_len)
        .and_then(|s| s.checked_add(9))
        .ok_or(numeric)?;
    // An i128 holds 38 digits; digits dropped beyond them only round up.
    let (kept, dropped) = digits.split_at(digits.len().min(38));
    let sticky = dropped.bytes().any(|b| b != b'0');
    scale = scale
        .checked_add(i32::try_from(dropped.len()).map_err(|_| numeric)?)
        .ok_or(numeric)?;
    let mantissa: i128 = kept.parse().map_err(|_| numeric)?;
    let scaled = mantissa
        .checked_mul(1i128.checked_shl(exp2).ok_or(numeric)?)
        .ok_or(numeric)?;
    let nano = if scale >= 0 {
        if sticky {
            return Err(numeric);
        }
        let p = 10i128
            .checked_pow(u32::try_from(scale).map_err(|_| numeric)?)
            .ok_or(numeric)?;
        scaled.checked_mul(p).ok_or(numeric)?
    } else {
        match 10i128.checked_pow(scale.unsigned_abs()) {
            Some(p) if scaled % p != 0 || sticky => scaled / p + 1,
            Some(p) => scaled / p,
            // Below one nano-unit: rounded up to one.
            None => 1,
        }
    };
    let cap = i128::from(i64::MAX) * NANO;
    Ok(if format == Format::BinarySi {
        nano.min(cap)
    } else {
        nano
    })
}

/// Whether `ParseQuantity` keeps the text as written (its fast path, for text
/// already in canonical form) rather than printing the value anew.
fn kept_as_written(parts: &Parts<'_>, exp10: i32, exp2: u32, format: Format) -> bool {
    let digits = parts.int.len() + parts.frac.len();
    match format {
        Format::BinarySi => {
            let decimal_places = exp2 * 3 / 10;
            let fits = parts.frac.is_empty()
                && usize::try_from(15 - 1 - i64::from(decimal_places))
                    .is_ok_and(|room| parts.int.len() <= room);
            fits && parts
                .int
                .parse::<i64>()
                .ok()
                .is_some_and(|v| v.checked_mul(1 << exp2).is_some() && v & 7 != 0)
        }
        Format::DecimalSi | Format::DecimalExponent => {
            let scale = i64::from(exp10)
                .saturating_sub(i64::try_from(parts.frac.len()).unwrap_or(i64::MAX));
            let shifted = format!("{}{}", parts.int, parts.frac);
            digits <= 18
                && scale >= -9
                && scale % 3 == 0
                && !shifted.ends_with("000")
                && !shifted.starts_with('0')
        }
    }
}

/// `Quantity.String()` of a value not kept as written.
fn canonical(nano: i128, format: Format) -> String {
    if nano == 0 {
        return "0".to_owned();
    }
    if format == Format::BinarySi
        && nano.unsigned_abs() >= 1024 * NANO.unsigned_abs()
        && nano % NANO == 0
    {
        let mut units = nano / NANO;
        let mut power = 0;
        while power < 6 && units % 1024 == 0 {
            units /= 1024;
            power += 1;
        }
        let suffix = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"][power];
        return format!("{units}{suffix}");
    }
    let (mut mantissa, mut exponent) = (nano, -9i32);
    while mantissa % 10 == 0 {
        mantissa /= 10;
        exponent += 1;
    }
    while exponent % 3 != 0 {
        mantissa *= 10;
        exponent -= 1;
    }
    let suffix = match (format, exponent) {
        (_, 0) => String::new(),
        (Format::DecimalExponent, e) => format!("e{e}"),
        (_, -9) => "n".to_owned(),
        (_, -6) => "u".to_owned(),
        (_, -3) => "m".to_owned(),
        (_, 3) => "k".to_owned(),
        (_, 6) => "M".to_owned(),
        (_, 9) => "G".to_owned(),
        (_, 12) => "T".to_owned(),
        (_, 15) => "P".to_owned(),
        (_, 18) => "E".to_owned(),
        (_, e) => format!("e{e}"),
    };
    format!("{mantissa}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> String {
        Quantity::parse(s).unwrap().to_string()
    }

    fn nano(s: &str) -> i128 {
        Quantity::parse(s).unwrap().nano
    }

    #[test]
    fn values_are_exact_to_the_nano_unit() {
        let cases: &[(&str, i128)] = &[
            ("0", 0),
            ("1", NANO),
            ("+1", NANO),
            ("-3", -3 * NANO),
            ("500m", NANO / 2),
            ("0.5", NANO / 2),
            (".5", NANO / 2),
            ("5.", 5 * NANO),
            ("1k", 1000 * NANO),
            ("1Ki", 1024 * NANO),
            ("1.5Gi", 1_610_612_736 * NANO),
            ("1e3", 1000 * NANO),
            ("1E3", 1000 * NANO),
            ("1e-3", NANO / 1000),
            ("1E", 1_000_000_000_000_000_000 * NANO),
            ("1n", 1),
            ("1001u", 1_001_000),
            ("1002u", 1_002_000),
            ("0.0000000001", 1),
            ("-0.0000000001", -1),
            ("1e-400", 1),
            ("000012", 12 * NANO),
            // kube-apiserver reads an empty number as zero.
            ("-", 0),
            ("Ki", 0),
        ];
        for (input, want) in cases {
            assert_eq!(nano(input), *want, "{input}");
        }
        assert!(Quantity::parse("1001u").unwrap() < Quantity::parse("1002u").unwrap());
        assert_eq!(
            Quantity::parse("1").unwrap(),
            Quantity::parse("1000m").unwrap()
        );
    }

    #[test]
    fn errors_follow_parse_quantity() {
        let cases: &[(&str, QuantityError)] = &[
            ("", QuantityError::Format),
            ("abc", QuantityError::Format),
            ("1..2", QuantityError::Format),
            ("1 Gi", QuantityError::Format),
            ("1Gb", QuantityError::Format),
            ("1K", QuantityError::Suffix),
            ("1ki", QuantityError::Suffix),
            ("1e", QuantityError::Suffix),
            ("--1", QuantityError::Suffix),
            ("1e40", QuantityError::Numeric),
        ];
        for (input, want) in cases {
            assert_eq!(Quantity::parse(input), Err(*want), "{input}");
        }
        assert_eq!(
            Quantity::from_json(&serde_json::json!(true)),
            Err(QuantityError::Format)
        );
    }

    #[test]
    fn text_is_what_quantity_string_prints() {
        let cases: &[(&str, &str)] = &[
            ("-3", "-3"),
            ("+1", "+1"),
            ("1500m", "1500m"),
            ("2000m", "2"),
            ("0.5", "500m"),
            ("1.0", "1"),
            ("1.500", "1.500"),
            ("1000", "1k"),
            ("1500", "1500"),
            ("100Mi", "100Mi"),
            ("1024Ki", "1Mi"),
            ("8Gi", "8Gi"),
            ("1.5Gi", "1536Mi"),
            ("0.5Ki", "512"),
            ("1e3", "1e3"),
            ("1.5e3", "1500"),
            ("12e6", "12e6"),
            ("00", "0"),
        ];
        for (input, want) in cases {
            assert_eq!(text(input), *want, "{input}");
        }
        assert_eq!(
            Quantity::from_json(&serde_json::json!(2))
                .unwrap()
                .to_string(),
            "2"
        );
    }

    #[test]
    fn whole_is_kube_apiservers_integer_test() {
        for (input, whole) in [
            ("1", true),
            ("2k", true),
            ("500m", false),
            ("1.0001", false),
            // MilliValue rounds 999.5m up to 1000m.
            ("999500u", true),
            ("-1", true),
        ] {
            assert_eq!(Quantity::parse(input).unwrap().is_whole(), whole, "{input}");
        }
    }
}
