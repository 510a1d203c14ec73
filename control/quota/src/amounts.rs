//! Resource amounts in exact milli-units, keyed by resource name, with
//! checked arithmetic: an overflow is an error naming the resource, never a wrap.

use std::collections::BTreeMap;

use hami_api::common::ResourceList;
use hami_api::quantity::{QuantityError, format_milli, parse_quantity};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Why amounts could not be read or combined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// A quantity is malformed.
    #[error("{resource}: {source}")]
    Quantity {
        /// The resource name.
        resource: String,
        /// The parse error.
        source: QuantityError,
    },
    /// A quantity is below zero.
    #[error("{resource}: {value:?} must be greater than or equal to 0")]
    Negative {
        /// The resource name.
        resource: String,
        /// The value given.
        value: String,
    },
    /// A sum or product left the range hami accounts in.
    #[error("{resource}: amount out of range")]
    Overflow {
        /// The resource name.
        resource: String,
    },
}

/// Milli-units per resource name. A missing name is zero.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Amounts(BTreeMap<String, i128>);

impl Amounts {
    /// No amounts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a ResourceList; malformed or negative quantities are errors.
    pub fn from_resource_list(list: &ResourceList) -> Result<Self, AmountError> {
        let mut out = BTreeMap::new();
        for (name, q) in list {
            let v = parse_quantity(&q.0).map_err(|source| AmountError::Quantity {
                resource: name.clone(),
                source,
            })?;
            if v < 0 {
                return Err(AmountError::Negative {
                    resource: name.clone(),
                    value: q.0.clone(),
                });
            }
            out.insert(name.clone(), v);
        }
        Ok(Self(out))
    }

    /// The amount of `name` in milli-units (0 when absent).
    pub fn get(&self, name: &str) -> i128 {
        self.0.get(name).copied().unwrap_or(0)
    }

    /// Sets the amount of `name`.
    pub fn set(&mut self, name: impl Into<String>, milli: i128) {
        self.0.insert(name.into(), milli);
    }

    /// Whether `name` has an entry (a limit names it, even at 0).
    pub fn contains(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Names and amounts in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i128)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Resource names in order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Whether every amount is zero.
    pub fn is_zero(&self) -> bool {
        self.0.values().all(|v| *v == 0)
    }

    /// Adds `milli` to `name`.
    pub fn add(&mut self, name: &str, milli: i128) -> Result<(), AmountError> {
        let e = self.0.entry(name.to_string()).or_insert(0);
        *e = e.checked_add(milli).ok_or_else(|| overflow(name))?;
        Ok(())
    }

    /// Adds every amount of `other`.
    pub fn add_all(&mut self, other: &Amounts) -> Result<(), AmountError> {
        for (k, v) in other.iter() {
            self.add(k, v)?;
        }
        Ok(())
    }

    /// Subtracts every amount of `other`.
    pub fn sub_all(&mut self, other: &Amounts) -> Result<(), AmountError> {
        for (k, v) in other.iter() {
            let neg = v.checked_neg().ok_or_else(|| overflow(k))?;
            self.add(k, neg)?;
        }
        Ok(())
    }

    /// Every amount times `n`.
    pub fn times(&self, n: i128) -> Result<Amounts, AmountError> {
        let mut out = BTreeMap::new();
        for (k, v) in &self.0 {
            out.insert(k.clone(), v.checked_mul(n).ok_or_else(|| overflow(k))?);
        }
        Ok(Self(out))
    }

    /// Drops zero entries (for comparing charges by what they hold).
    pub fn without_zeros(mut self) -> Self {
        self.0.retain(|_, v| *v != 0);
        self
    }

    /// The amounts of `names` (zero where absent) as a ResourceList, in the
    /// plain form `format_milli` writes.
    pub fn to_resource_list<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> ResourceList {
        names
            .into_iter()
            .map(|n| (n.to_string(), Quantity(format_milli(self.get(n)))))
            .collect()
    }
}

impl FromIterator<(String, i128)> for Amounts {
    fn from_iter<T: IntoIterator<Item = (String, i128)>>(iter: T) -> Self {
        Self(iter.into_iter().collect())
    }
}

pub(crate) fn overflow(resource: &str) -> AmountError {
    AmountError::Overflow {
        resource: resource.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn list(items: &[(&str, &str)]) -> ResourceList {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
            .collect()
    }

    #[test]
    fn parses_and_formats() {
        let a = Amounts::from_resource_list(&list(&[("cpu", "1500m"), ("memory", "1Ki")])).unwrap();
        assert_eq!(a.get("cpu"), 1500);
        assert_eq!(a.get("memory"), 1_024_000);
        assert_eq!(a.get("pods"), 0);
        let out = a.to_resource_list(["cpu", "memory", "pods"]);
        assert_eq!(out["cpu"].0, "1500m");
        assert_eq!(out["memory"].0, "1024");
        assert_eq!(out["pods"].0, "0");
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(
            Amounts::from_resource_list(&list(&[("cpu", "-1")])),
            Err(AmountError::Negative { resource, .. }) if resource == "cpu"
        ));
        assert!(matches!(
            Amounts::from_resource_list(&list(&[("cpu", "x")])),
            Err(AmountError::Quantity { resource, .. }) if resource == "cpu"
        ));
    }

    #[test]
    fn overflow_is_an_error_not_a_wrap() {
        let mut a = Amounts::new();
        a.set("cpu", i128::MAX);
        assert_eq!(a.add("cpu", 1), Err(overflow("cpu")));
        assert_eq!(a.times(2), Err(overflow("cpu")));
        assert_eq!(a.get("cpu"), i128::MAX);
    }
}
