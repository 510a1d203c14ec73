//! Kubernetes quantities (`500m`, `2Gi`, `1.5`, `1e3`) parsed to exact
//! milli-units. k8s-openapi's `Quantity` is only a string; this gives it a value.

use thiserror::Error;

/// Why a string is not a Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum QuantityError {
    /// The string is empty.
    #[error("quantity is empty")]
    Empty,
    /// The string does not follow the quantity grammar.
    #[error(
        "quantity {0:?} must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    )]
    Syntax(String),
    /// The suffix is not a known SI, binary SI or exponent suffix.
    #[error("quantity {0:?} has an unknown suffix")]
    Suffix(String),
    /// The value does not fit the range hami accounts in.
    #[error("quantity {0:?} is out of range")]
    OutOfRange(String),
}

/// Parses a Kubernetes quantity into milli-units (`"1"` is 1000, `"500m"` is 500,
/// `"1Ki"` is 1_024_000). Fractions below one milli-unit round away from zero,
/// as Kubernetes rounds `MilliValue`.
pub fn parse_quantity(s: &str) -> Result<i128, QuantityError> {
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let negative = match bytes.first() {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let num_start = i;
    let mut int_digits = String::new();
    let mut frac_digits = String::new();
    let mut seen_dot = false;
    while i < bytes.len() {
        match bytes[i] {
            b'0'..=b'9' if seen_dot => frac_digits.push(bytes[i] as char),
            b'0'..=b'9' => int_digits.push(bytes[i] as char),
            b'.' if !seen_dot => seen_dot = true,
            _ => break,
        }
        i += 1;
    }
    if i == num_start || (int_digits.is_empty() && frac_digits.is_empty()) {
        return Err(QuantityError::Syntax(s.to_string()));
    }
    let (exp10, exp2) = parse_suffix(&s[i..]).ok_or_else(|| {
        if s[i..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'+')
        {
            QuantityError::Suffix(s.to_string())
        } else {
            QuantityError::Syntax(s.to_string())
        }
    })?;
    let out_of_range = || QuantityError::OutOfRange(s.to_string());

    // value = digits * 10^(exp10 - frac_len + 3) * 2^exp2, in milli-units.
    let mut digits: String = int_digits + &frac_digits;
    let frac_len = i64::try_from(frac_digits.len()).map_err(|_| out_of_range())?;
    let mut scale = exp10
        .checked_sub(frac_len)
        .and_then(|v| v.checked_add(3))
        .ok_or_else(out_of_range)?;
    let trimmed = digits.trim_start_matches('0');
    if trimmed.is_empty() {
        return Ok(0);
    }
    digits = trimmed.to_string();
    // Keep at most 38 significant digits (an i128 holds 38); remember whether
    // any dropped digit was non-zero so that rounding stays upward.
    let mut sticky = false;
    if digits.len() > 38 {
        let dropped = digits.split_off(38);
        sticky = dropped.bytes().any(|b| b != b'0');
        let n = i64::try_from(dropped.len()).map_err(|_| out_of_range())?;
        scale = scale.checked_add(n).ok_or_else(out_of_range)?;
    }
    let mantissa: i128 = digits.parse().map_err(|_| out_of_range())?;
    let pow2 = 1i128.checked_shl(exp2).ok_or_else(out_of_range)?;
    let scaled = mantissa.checked_mul(pow2).ok_or_else(out_of_range)?;
    let magnitude = if scale >= 0 {
        if sticky {
            // Dropped digits were above the milli position: the value is huge.
            return Err(out_of_range());
        }
        let e = u32::try_from(scale).map_err(|_| out_of_range())?;
        let p = 10i128.checked_pow(e).ok_or_else(out_of_range)?;
        scaled.checked_mul(p).ok_or_else(out_of_range)?
    } else {
        let e = u32::try_from(-scale).map_err(|_| out_of_range())?;
        match 10i128.checked_pow(e) {
            Some(p) => {
                let q = scaled / p;
                if scaled % p != 0 || sticky { q + 1 } else { q }
            }
            // Divisor beyond i128: a positive value far below one milli-unit.
            None => 1,
        }
    };
    Ok(if negative { -magnitude } else { magnitude })
}

/// The power of ten and power of two a suffix stands for; `None` if unknown.
fn parse_suffix(suffix: &str) -> Option<(i64, u32)> {
    let v = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => {
            let rest = suffix.strip_prefix(['e', 'E'])?;
            let digits = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 6
            {
                return None;
            }
            let e: i64 = rest.parse().ok()?;
            (e, 0)
        }
    };
    Some(v)
}

/// Formats milli-units as a plain Kubernetes quantity: whole units when exact
/// (`"3"`), milli-units otherwise (`"1500m"`).
pub fn format_milli(milli: i128) -> String {
    if milli % 1000 == 0 {
        format!("{}", milli / 1000)
    } else {
        format!("{milli}m")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let cases: &[(&str, Result<i128, QuantityError>)] = &[
            ("0", Ok(0)),
            ("1", Ok(1000)),
            ("+1", Ok(1000)),
            ("-1", Ok(-1000)),
            ("500m", Ok(500)),
            ("1.5", Ok(1500)),
            (".5", Ok(500)),
            ("5.", Ok(5000)),
            ("0.1", Ok(100)),
            ("1k", Ok(1_000_000)),
            ("1M", Ok(1_000_000_000)),
            ("1G", Ok(1_000_000_000_000)),
            ("1E", Ok(1_000_000_000_000_000_000_000)),
            ("1Ki", Ok(1_024_000)),
            ("2Gi", Ok(2 * 1024 * 1024 * 1024 * 1000)),
            ("1.5Gi", Ok(1_610_612_736_000)),
            ("1Ei", Ok(1_152_921_504_606_846_976_000)),
            ("1e3", Ok(1_000_000)),
            ("1E3", Ok(1_000_000)),
            ("1e-3", Ok(1)),
            ("1e+3", Ok(1_000_000)),
            ("100u", Ok(1)),
            ("1n", Ok(1)),
            ("-1n", Ok(-1)),
            ("1500u", Ok(2)),
            ("0.0001", Ok(1)),
            ("000012", Ok(12_000)),
            ("0.000", Ok(0)),
            ("1e-400", Ok(1)),
            ("", Err(QuantityError::Empty)),
            ("-", Err(QuantityError::Syntax("-".into()))),
            (".", Err(QuantityError::Syntax(".".into()))),
            ("abc", Err(QuantityError::Syntax("abc".into()))),
            ("1..2", Err(QuantityError::Syntax("1..2".into()))),
            ("1 Gi", Err(QuantityError::Syntax("1 Gi".into()))),
            ("1Gb", Err(QuantityError::Suffix("1Gb".into()))),
            ("1K", Err(QuantityError::Suffix("1K".into()))),
            ("1e", Err(QuantityError::Suffix("1e".into()))),
            ("1ki", Err(QuantityError::Suffix("1ki".into()))),
            ("--1", Err(QuantityError::Syntax("--1".into()))),
            ("1e40", Err(QuantityError::OutOfRange("1e40".into()))),
            (
                "1e999999",
                Err(QuantityError::OutOfRange("1e999999".into())),
            ),
            ("1e9999999", Err(QuantityError::Suffix("1e9999999".into()))),
            (
                "999999999999999999999999999999999999999999",
                Err(QuantityError::OutOfRange(
                    "999999999999999999999999999999999999999999".into(),
                )),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(&parse_quantity(input), want, "input {input:?}");
        }
    }

    #[test]
    fn long_fraction_rounds_up() {
        let s = format!("1.{}1", "0".repeat(50));
        assert_eq!(parse_quantity(&s), Ok(1001));
        let s = format!("1.{}", "0".repeat(50));
        assert_eq!(parse_quantity(&s), Ok(1000));
    }

    #[test]
    fn format_round_trips() {
        for v in [0i128, 1000, 1500, -2000, 1] {
            assert_eq!(parse_quantity(&format_milli(v)), Ok(v));
        }
    }
}
