//! How each list of a built-in kind merges: the patch merge keys that Kubernetes declares
//! with `patchStrategy:"merge" patchMergeKey:"..."` in its Go types (k8s.io/api, 1.32).
//!
//! One table serves both strategic merge patch and server-side apply, so the two can
//! never disagree about which lists are associative. Paths are the map keys from the
//! object root; list items add no segment (`spec.template.spec.containers.env` is the
//! `env` list of any container of a Deployment's pod template).

/// How the elements of one list field combine with a patch or an applied configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// Replaced as a whole (no patch strategy declared).
    Atomic,
    /// A list of objects merged by the value of one field (the patch merge key).
    Keyed(&'static str),
    /// A list of scalars merged as a set (`finalizers`, `podCIDRs`).
    Set,
}

/// A built-in kind whose lists follow Kubernetes' declared strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Builtin {
    Pod,
    Service,
    ConfigMap,
    Secret,
    Namespace,
    Node,
    Event,
    ServiceAccount,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    Job,
    CronJob,
}

impl Builtin {
    /// The built-in kind for `apiVersion` and `kind`, or `None` for anything else
    /// (custom resources, or a built-in name under another group).
    pub fn from_gvk(api_version: &str, kind: &str) -> Option<Builtin> {
        let b = match (api_version, kind) {
            ("v1", "Pod") => Builtin::Pod,
            ("v1", "Service") => Builtin::Service,
            ("v1", "ConfigMap") => Builtin::ConfigMap,
            ("v1", "Secret") => Builtin::Secret,
            ("v1", "Namespace") => Builtin::Namespace,
            ("v1", "Node") => Builtin::Node,
            ("v1", "Event") => Builtin::Event,
            ("v1", "ServiceAccount") => Builtin::ServiceAccount,
            ("apps/v1", "Deployment") => Builtin::Deployment,
            ("apps/v1", "StatefulSet") => Builtin::StatefulSet,
            ("apps/v1", "DaemonSet") => Builtin::DaemonSet,
            ("apps/v1", "ReplicaSet") => Builtin::ReplicaSet,
            ("batch/v1", "Job") => Builtin::Job,
            ("batch/v1", "CronJob") => Builtin::CronJob,
            _ => return None,
        };
        Some(b)
    }

    /// Where the kind keeps a PodSpec, if it has one.
    fn pod_spec_prefix(self) -> Option<&'static [&'static str]> {
        match self {
            Builtin::Pod => Some(&["spec"]),
            Builtin::Deployment
            | Builtin::StatefulSet
            | Builtin::DaemonSet
            | Builtin::ReplicaSet
            | Builtin::Job => Some(&["spec", "template", "spec"]),
            Builtin::CronJob => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
            _ => None,
        }
    }
}

/// How the list at `path` merges. `builtin` is `None` for custom resources: then only
/// the object's own `metadata` lists are non-atomic (their ObjectMeta is the real one).
pub fn list_kind<S: AsRef<str>>(builtin: Option<Builtin>, path: &[S]) -> ListKind {
    let p: Vec<&str> = path.iter().map(AsRef::as_ref).collect();
    let Some(b) = builtin else {
        return object_meta(&p, true);
    };
    let meta = object_meta(&p, false);
    if meta != ListKind::Atomic {
        return meta;
    }
    if let Some(prefix) = b.pod_spec_prefix()
        && let Some(rest) = p.strip_prefix(prefix)
    {
        return pod_spec(rest);
    }
    match (b, p.as_slice()) {
        (_, ["status", "conditions"]) => ListKind::Keyed("type"),
        (Builtin::Pod, ["status", "podIPs" | "hostIPs"]) => ListKind::Keyed("ip"),
        (Builtin::Node, ["spec", "podCIDRs"]) => ListKind::Set,
        (Builtin::Node, ["status", "addresses"]) => ListKind::Keyed("type"),
        (Builtin::Service, ["spec", "ports"]) => ListKind::Keyed("port"),
        (Builtin::ServiceAccount, ["secrets"]) => ListKind::Keyed("name"),
        _ => ListKind::Atomic,
    }
}

/// ObjectMeta's lists: at the root for every kind, and in any nested `metadata` of a
/// built-in (pod templates, volume claim templates).
fn object_meta(p: &[&str], root_only: bool) -> ListKind {
    let tail = match p {
        ["metadata", f] => *f,
        [.., "metadata", f] if !root_only => *f,
        _ => return ListKind::Atomic,
    };
    match tail {
        "finalizers" => ListKind::Set,
        "ownerReferences" => ListKind::Keyed("uid"),
        _ => ListKind::Atomic,
    }
}

fn pod_spec(rest: &[&str]) -> ListKind {
    const CONTAINERS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];
    match rest {
        [c] if CONTAINERS.contains(c) => ListKind::Keyed("name"),
        ["volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates"] => {
            ListKind::Keyed("name")
        }
        ["hostAliases"] => ListKind::Keyed("ip"),
        ["topologySpreadConstraints"] => ListKind::Keyed("topologyKey"),
        [c, field] if CONTAINERS.contains(c) => match *field {
            "ports" => ListKind::Keyed("containerPort"),
            "env" => ListKind::Keyed("name"),
            "volumeMounts" => ListKind::Keyed("mountPath"),
            "volumeDevices" => ListKind::Keyed("devicePath"),
            _ => ListKind::Atomic,
        },
        _ => ListKind::Atomic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let dep = Builtin::from_gvk("apps/v1", "Deployment");
        let pod = Builtin::from_gvk("v1", "Pod");
        let cases: Vec<(Option<Builtin>, &str, ListKind)> = vec![
            (
                dep,
                "spec.template.spec.containers",
                ListKind::Keyed("name"),
            ),
            (
                dep,
                "spec.template.spec.initContainers.env",
                ListKind::Keyed("name"),
            ),
            (
                dep,
                "spec.template.spec.containers.ports",
                ListKind::Keyed("containerPort"),
            ),
            (
                dep,
                "spec.template.spec.containers.volumeMounts",
                ListKind::Keyed("mountPath"),
            ),
            (dep, "spec.template.spec.containers.args", ListKind::Atomic),
            (dep, "spec.template.spec.tolerations", ListKind::Atomic),
            (dep, "spec.template.spec.volumes", ListKind::Keyed("name")),
            (dep, "spec.template.spec.hostAliases", ListKind::Keyed("ip")),
            (dep, "spec.template.metadata.finalizers", ListKind::Set),
            (dep, "spec.containers", ListKind::Atomic),
            (dep, "status.conditions", ListKind::Keyed("type")),
            (dep, "metadata.ownerReferences", ListKind::Keyed("uid")),
            (pod, "spec.containers", ListKind::Keyed("name")),
            (
                pod,
                "spec.topologySpreadConstraints",
                ListKind::Keyed("topologyKey"),
            ),
            (pod, "status.podIPs", ListKind::Keyed("ip")),
            (
                Builtin::from_gvk("v1", "Service"),
                "spec.ports",
                ListKind::Keyed("port"),
            ),
            (
                Builtin::from_gvk("v1", "Node"),
                "spec.podCIDRs",
                ListKind::Set,
            ),
            (
                Builtin::from_gvk("v1", "ServiceAccount"),
                "secrets",
                ListKind::Keyed("name"),
            ),
            (None, "metadata.finalizers", ListKind::Set),
            (None, "spec.template.metadata.finalizers", ListKind::Atomic),
            (None, "spec.containers", ListKind::Atomic),
        ];
        for (b, path, want) in cases {
            let segs: Vec<&str> = path.split('.').collect();
            assert_eq!(list_kind(b, &segs), want, "{b:?} {path}");
        }
    }

    #[test]
    fn builtin_needs_matching_group() {
        assert_eq!(
            Builtin::from_gvk("apps/v1", "Deployment"),
            Some(Builtin::Deployment)
        );
        assert_eq!(Builtin::from_gvk("example.com/v1", "Deployment"), None);
        assert_eq!(
            Builtin::from_gvk("policy.hami.io/v1alpha1", "PropagationPolicy"),
            None
        );
    }
}
