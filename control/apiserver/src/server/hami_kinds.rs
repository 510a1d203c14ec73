//! hami's own kinds on top of the built-ins: the registry `hami up` serves and
//! the validator that rejects invalid hami objects with field causes.

use std::sync::Arc;

use super::Validator;
use super::registry::{Registry, RegistryError};
use super::status::Cause;

/// Built-in kinds plus every CRD from [`hami_api::crds`].
pub fn registry() -> Result<Registry, RegistryError> {
    let mut registry = Registry::builtin();
    for crd in hami_api::crds() {
        let value = serde_json::to_value(&crd).map_err(|_| RegistryError::MissingField("spec"))?;
        registry.add_crd(&value)?;
    }
    Ok(registry)
}

/// [`hami_api::validate`] as a server validator.
pub fn validator() -> Validator {
    Arc::new(|api_version, kind, object| {
        hami_api::validate(api_version, kind, object).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| Cause::new(e.kind.reason(), &e.field, e.message))
                .collect()
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hami_kinds_are_served_with_short_names() {
        let r = registry().unwrap();
        let pp = r
            .kinds()
            .iter()
            .find(|k| k.kind == "PropagationPolicy")
            .unwrap();
        assert_eq!(pp.group, "policy.hami.io");
        assert!(pp.namespaced);
        let cluster = r.kinds().iter().find(|k| k.kind == "Cluster").unwrap();
        assert!(!cluster.namespaced);
    }
}
