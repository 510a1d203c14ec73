//! Subject alternative names: what the serving certificate must cover.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::PkiError;

/// One subject alternative name, normalised so that two spellings of the
/// same name compare equal (DNS names lower-cased, IPs parsed).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum San {
    Ip(IpAddr),
    Dns(String),
}

impl San {
    pub(super) fn to_rcgen(&self) -> Result<rcgen::SanType, rcgen::Error> {
        Ok(match self {
            San::Ip(ip) => rcgen::SanType::IpAddress(*ip),
            San::Dns(name) => rcgen::SanType::DnsName(name.as_str().try_into()?),
        })
    }
}

/// The names every serving certificate carries, whatever was asked.
fn always() -> [San; 3] {
    [
        San::Dns("localhost".to_owned()),
        San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ]
}

/// The asked names plus [`always`], parsed and deduplicated.
pub(super) fn wanted(asked: &[String]) -> Result<BTreeSet<San>, PkiError> {
    let mut out: BTreeSet<San> = always().into_iter().collect();
    for s in asked {
        let san = parse(s).map_err(|reason| PkiError::InvalidSan {
            san: s.clone(),
            reason,
        })?;
        out.insert(san);
    }
    Ok(out)
}

/// An IP address, or a DNS name (RFC 1123 labels, optionally a leading `*.`).
pub(super) fn parse(s: &str) -> Result<San, String> {
    let s = s.trim();
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(San::Ip(ip));
    }
    let name = s.to_ascii_lowercase();
    if name.is_empty() {
        return Err("empty".to_owned());
    }
    if name.len() > 253 {
        return Err("longer than 253 characters".to_owned());
    }
    let labels = name.strip_prefix("*.").unwrap_or(&name);
    for label in labels.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if label.is_empty()
            || label.len() > 63
            || !ok_chars
            || label.starts_with('-')
            || label.ends_with('-')
        {
            return Err(format!(
                "label {label:?} is not a DNS label (1-63 letters, digits or '-', not at either end) and the name is not an IP address"
            ));
        }
    }
    Ok(San::Dns(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises() {
        let cases: &[(&str, Result<San, ()>)] = &[
            ("10.0.0.1", Ok(San::Ip("10.0.0.1".parse().unwrap()))),
            ("fd00::1", Ok(San::Ip("fd00::1".parse().unwrap()))),
            (
                "API.Example.com",
                Ok(San::Dns("api.example.com".to_owned())),
            ),
            ("*.hami.local", Ok(San::Dns("*.hami.local".to_owned()))),
            (" kubernetes ", Ok(San::Dns("kubernetes".to_owned()))),
            ("", Err(())),
            ("a..b", Err(())),
            ("-a.b", Err(())),
            ("a_b.c", Err(())),
            ("[::1]", Err(())),
            ("nå.se", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(&parse(input).map_err(|_| ()), want, "{input:?}");
        }
    }

    #[test]
    fn always_includes_loopback() {
        let got = wanted(&["example.com".to_owned(), "LOCALHOST".to_owned()]).unwrap();
        assert_eq!(got.len(), 4, "{got:?}");
        assert!(got.contains(&San::Dns("localhost".to_owned())));
        assert!(got.contains(&San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST))));
        assert!(matches!(
            wanted(&["bad name".to_owned()]),
            Err(PkiError::InvalidSan { .. })
        ));
    }
}
