//! Store keys for objects.
//!
//! * namespaced: `/registry/{group or "core"}/{plural}/{namespace}/{name}`
//! * cluster-scoped: `/registry/{group or "core"}/{plural}/{name}`
//!
//! Every prefix ends with `/`, so listing namespace `a` never matches `ab`.

use super::registry::ResourceKind;

/// The key of one object.
pub fn object_key(kind: &ResourceKind, namespace: Option<&str>, name: &str) -> String {
    match (kind.namespaced, namespace) {
        (true, Some(ns)) => format!("{}{ns}/{name}", kind_prefix(kind)),
        _ => format!("{}{name}", kind_prefix(kind)),
    }
}

/// The prefix of every object of a kind (all namespaces).
pub fn kind_prefix(kind: &ResourceKind) -> String {
    format!("/registry/{}/{}/", kind.store_group(), kind.plural)
}

/// The prefix of a list: one namespace of a namespaced kind, or the whole kind.
pub fn list_prefix(kind: &ResourceKind, namespace: Option<&str>) -> String {
    match (kind.namespaced, namespace) {
        (true, Some(ns)) => format!("{}{ns}/", kind_prefix(kind)),
        _ => kind_prefix(kind),
    }
}

/// Splits a key of `kind` into (namespace, name).
pub fn parse_key<'a>(kind: &ResourceKind, key: &'a str) -> Option<(Option<&'a str>, &'a str)> {
    let rest = key.strip_prefix(&kind_prefix(kind))?;
    if kind.namespaced {
        let (ns, name) = rest.split_once('/')?;
        Some((Some(ns), name))
    } else {
        Some((None, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::registry::Registry;

    #[test]
    fn namespaced_and_cluster_keys() {
        let r = Registry::builtin();
        let deploy = r.lookup("apps", "v1", "deployments").unwrap();
        let ns = r.lookup("", "v1", "namespaces").unwrap();
        assert_eq!(
            object_key(deploy, Some("default"), "web"),
            "/registry/apps/deployments/default/web"
        );
        assert_eq!(
            object_key(ns, None, "default"),
            "/registry/core/namespaces/default"
        );
        assert_eq!(
            list_prefix(deploy, Some("a")),
            "/registry/apps/deployments/a/"
        );
        assert_eq!(list_prefix(deploy, None), "/registry/apps/deployments/");
        assert!(!"/registry/apps/deployments/ab/x".starts_with(&list_prefix(deploy, Some("a"))));
        assert_eq!(
            parse_key(deploy, "/registry/apps/deployments/ns1/web"),
            Some((Some("ns1"), "web"))
        );
        assert_eq!(
            parse_key(ns, "/registry/core/namespaces/x"),
            Some((None, "x"))
        );
    }
}
