//! A small parser for Kubernetes quantity strings (`100m`, `1.5`, `2Gi`,
//! `1e3`, `500M`). Values are exact: the result is in milli-units, rounded
//! up the way Kubernetes' `MilliValue` rounds, so no request is ever
//! under-counted. Negative quantities are rejected: a request or capacity
//! below zero is an input error here.

/// Why a quantity string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string is empty.
    #[error("empty quantity")]
    Empty,
    /// The string is negative.
    #[error("negative quantity {0:?}")]
    Negative(String),
    /// The number or suffix is not a Kubernetes quantity.
    #[error("unparsable quantity {0:?}")]
    Invalid(String),
    /// The value does not fit in 64 bits.
    #[error("quantity {0:?} is too large")]
    Overflow(String),
}

/// Parses a quantity into milli-units (`"1"` is 1000, `"100m"` is 100), rounding up.
pub fn parse_milli(s: &str) -> Result<u64, QuantityError> {
    let s = s.trim();
    if s.is_empty() {
        return Err(QuantityError::Empty);
    }
    let invalid = || QuantityError::Invalid(s.to_string());
    let overflow = || QuantityError::Overflow(s.to_string());
    let (negative, body) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let num_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (number, suffix) = body.split_at(num_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return Err(invalid());
    }
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    // mantissa = int_part.frac_part as an integer, scale = 10^-frac_len
    let mut mantissa: u128 = 0;
    for c in int_part.bytes().chain(frac_part.bytes()) {
        mantissa = mantissa
            .checked_mul(10)
            .and_then(|m| m.checked_add(u128::from(c - b'0')))
            .ok_or_else(overflow)?;
    }
    let frac_len = i32::try_from(frac_part.len()).map_err(|_| invalid())?;
    // multiplier as (numerator, decimal exponent)
    let (bin, dec_exp): (u128, i32) = match suffix {
        "" => (1, 0),
        "n" => (1, -9),
        "u" => (1, -6),
        "m" => (1, -3),
        "k" => (1, 3),
        "M" => (1, 6),
        "G" => (1, 9),
        "T" => (1, 12),
        "P" => (1, 15),
        "E" => (1, 18),
        "Ki" => (1 << 10, 0),
        "Mi" => (1 << 20, 0),
        "Gi" => (1 << 30, 0),
        "Ti" => (1 << 40, 0),
        "Pi" => (1 << 50, 0),
        "Ei" => (1 << 60, 0),
        other => {
            let exp = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))
                .ok_or_else(invalid)?;
            let e: i32 = exp.parse().map_err(|_| invalid())?;
            if !(-30..=30).contains(&e) {
                return Err(overflow());
            }
            (1, e)
        }
    };
    if negative && mantissa != 0 {
        return Err(QuantityError::Negative(s.to_string()));
    }
    // milli = mantissa * bin * 10^(dec_exp + 3 - frac_len), rounded up.
    let exp = dec_exp + 3 - frac_len;
    let base = mantissa.checked_mul(bin).ok_or_else(overflow)?;
    let value = if exp >= 0 {
        let p = 10u128
            .checked_pow(exp.unsigned_abs())
            .ok_or_else(overflow)?;
        base.checked_mul(p).ok_or_else(overflow)?
    } else {
        match 10u128.checked_pow(exp.unsigned_abs()) {
            Some(p) => base.div_ceil(p),
            None => u128::from(base != 0),
        }
    };
    u64::try_from(value).map_err(|_| overflow())
}

/// Parses a quantity into whole units, rounded up (`"1500m"` is 2, `"1Ki"` is 1024).
pub fn parse_value(s: &str) -> Result<u64, QuantityError> {
    parse_milli(s).map(|m| m.div_ceil(1000))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn table() {
        let ok: &[(&str, u64)] = &[
            ("1", 1000),
            ("0", 0),
            ("-0", 0),
            ("100m", 100),
            ("1.5", 1500),
            ("0.1", 100),
            (".5", 500),
            ("2Ki", 2048 * 1000),
            ("1Gi", (1 << 30) * 1000),
            ("1k", 1_000_000),
            ("1e3", 1_000_000),
            ("1E-3", 1),
            ("1n", 1),
            ("1u", 1),
            ("2500u", 3),
            ("+4", 4000),
        ];
        for (s, want) in ok {
            assert_eq!(parse_milli(s).unwrap(), *want, "{s}");
        }
        assert_eq!(parse_value("1500m").unwrap(), 2);
        assert_eq!(parse_value("64Mi").unwrap(), 64 << 20);
        for bad in ["", "abc", "1Q", "1..2", ".", "1e", "m", "1 Gi", "1ee3"] {
            assert!(parse_milli(bad).is_err(), "{bad}");
        }
        assert!(matches!(parse_milli("-1"), Err(QuantityError::Negative(_))));
        assert!(matches!(
            parse_milli("100000000000000000000"),
            Err(QuantityError::Overflow(_))
        ));
        assert!(parse_milli("1e99").is_err());
    }
}
