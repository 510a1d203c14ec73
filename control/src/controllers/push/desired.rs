//! What the Push controller wants for one Cluster, decided from the Cluster
//! and its Secret alone (pure: no IO, table-tested below).
//!
//! The Secret named by `spec.secretRef` holds, under the key
//! [`KUBECONFIG_KEY`] (`kubeconfig`), a kubeconfig for the member's API
//! (its current context is used). `spec.apiEndpoint`, when set, replaces
//! the server URL of that context; `spec.insecureSkipTLSVerification`
//! skips certificate checks. Both `data` (base64, as the API stores it) and
//! `stringData` are read.

use hami_api::SyncMode;
use hami_api::cluster::Cluster;
use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use crate::controllers::binding::works::fnv1a;

/// The Secret key holding the member's kubeconfig.
pub const KUBECONFIG_KEY: &str = "kubeconfig";

/// Condition reason written when the credentials are missing or unusable.
pub const REASON_INVALID_CREDENTIALS: &str = "InvalidCredentials";

/// The fields of a Push Cluster this controller acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushSpec {
    /// `spec.secretRef` as (namespace, name).
    pub secret_ref: Option<(String, String)>,
    /// `spec.apiEndpoint`.
    pub api_endpoint: Option<String>,
    /// `spec.insecureSkipTLSVerification`.
    pub insecure: bool,
}

impl PushSpec {
    /// The Push fields of a stored Cluster; `None` when it is not a Push
    /// cluster (Pull, being deleted) or cannot be read.
    pub fn from_cluster(object: &Value) -> Option<PushSpec> {
        if object.pointer("/metadata/deletionTimestamp").is_some() {
            return None;
        }
        let cluster: Cluster = serde_json::from_value(object.clone()).ok()?;
        (cluster.spec.sync_mode == SyncMode::Push).then(|| PushSpec {
            secret_ref: cluster
                .spec
                .secret_ref
                .map(|r| (r.namespace, r.name))
                .filter(|(ns, n)| !ns.is_empty() && !n.is_empty()),
            api_endpoint: cluster.spec.api_endpoint,
            insecure: cluster.spec.insecure_skip_tls_verification,
        })
    }
}

/// What should run for a Push cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Desired {
    /// An agent against the member described by `kubeconfig`.
    Run {
        /// The kubeconfig text from the Secret.
        kubeconfig: String,
        /// Replaces the kubeconfig's server URL when set.
        api_endpoint: Option<String>,
        /// Skip TLS verification.
        insecure: bool,
        /// Changes whenever any of the above changes: a different value
        /// restarts the agent.
        fingerprint: u64,
    },
    /// No agent; the Cluster reports Ready=False with this message.
    Invalid {
        /// Why, for the condition's message.
        message: String,
    },
}

impl Desired {
    /// An identity for "nothing changed": equal fingerprints need no action.
    pub fn fingerprint(&self) -> u64 {
        match self {
            Desired::Run { fingerprint, .. } => *fingerprint,
            Desired::Invalid { message } => fnv1a(message.as_bytes()) ^ 1,
        }
    }
}

/// Decides from the Cluster's Push fields and the Secret it names
/// (`None`: not found).
pub fn desired(spec: &PushSpec, secret: Option<&Value>) -> Desired {
    let invalid = |message: String| Desired::Invalid { message };
    let Some((ns, name)) = &spec.secret_ref else {
        return invalid(
            "spec.secretRef is not set: a Push cluster needs a Secret with its kubeconfig".into(),
        );
    };
    let Some(secret) = secret else {
        return invalid(format!("secret {ns}/{name} not found"));
    };
    let text = match kubeconfig_of(secret) {
        Ok(t) => t,
        Err(why) => return invalid(format!("secret {ns}/{name}: {why}")),
    };
    if let Err(why) = check_kubeconfig(&text, spec.api_endpoint.is_some()) {
        return invalid(format!("secret {ns}/{name}: key {KUBECONFIG_KEY}: {why}"));
    }
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes.extend_from_slice(spec.api_endpoint.as_deref().unwrap_or("").as_bytes());
    bytes.push(u8::from(spec.insecure));
    Desired::Run {
        fingerprint: fnv1a(&bytes),
        kubeconfig: text,
        api_endpoint: spec.api_endpoint.clone(),
        insecure: spec.insecure,
    }
}

/// The kubeconfig text of a Secret (`stringData` wins over `data`, as the
/// API would merge them).
fn kubeconfig_of(secret: &Value) -> Result<String, String> {
    if let Some(s) = secret
        .pointer(&format!("/stringData/{KUBECONFIG_KEY}"))
        .and_then(Value::as_str)
    {
        return Ok(s.to_string());
    }
    let secret: Secret =
        serde_json::from_value(secret.clone()).map_err(|e| format!("unreadable Secret: {e}"))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KUBECONFIG_KEY))
        .ok_or_else(|| format!("no key {KUBECONFIG_KEY:?} in data"))?;
    String::from_utf8(bytes.0.clone()).map_err(|_| format!("key {KUBECONFIG_KEY} is not UTF-8"))
}

/// The kubeconfig parses and its current context names a cluster with a
/// server (or the Cluster gives the endpoint).
fn check_kubeconfig(text: &str, has_endpoint: bool) -> Result<(), String> {
    let kc =
        kube::config::Kubeconfig::from_yaml(text).map_err(|e| format!("not a kubeconfig: {e}"))?;
    let context_name = kc
        .current_context
        .clone()
        .or_else(|| kc.contexts.first().map(|c| c.name.clone()))
        .ok_or("no context")?;
    let context = kc
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| format!("context {context_name:?} not found"))?;
    let server = kc
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .and_then(|c| c.server.clone());
    if server.is_none() && !has_endpoint {
        return Err(format!(
            "cluster {:?} of context {context_name:?} has no server (and spec.apiEndpoint is not set)",
            context.cluster
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const KC: &str = "apiVersion: v1\nkind: Config\nclusters:\n- name: m\n  cluster:\n    server: http://127.0.0.1:1\nusers:\n- name: m\n  user: {}\ncontexts:\n- name: m\n  context:\n    cluster: m\n    user: m\ncurrent-context: m\n";

    fn cluster(mode: &str, secret_ref: Option<(&str, &str)>) -> Value {
        let mut c = json!({
            "apiVersion": "cluster.hami.io/v1alpha1", "kind": "Cluster",
            "metadata": {"name": "m"}, "spec": {"syncMode": mode},
        });
        if let Some((ns, n)) = secret_ref {
            c["spec"]["secretRef"] = json!({"namespace": ns, "name": n});
        }
        c
    }

    fn b64(s: &str) -> String {
        serde_json::to_value(k8s_openapi::ByteString(s.as_bytes().to_vec()))
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    fn secret_data(text: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns"},
               "data": {KUBECONFIG_KEY: b64(text)}})
    }

    fn spec() -> PushSpec {
        PushSpec::from_cluster(&cluster("Push", Some(("ns", "s")))).unwrap()
    }

    #[test]
    fn only_push_clusters_have_a_push_spec() {
        assert!(PushSpec::from_cluster(&cluster("Pull", Some(("ns", "s")))).is_none());
        let mut deleting = cluster("Push", None);
        deleting["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        assert!(PushSpec::from_cluster(&deleting).is_none());
        assert!(PushSpec::from_cluster(&json!({"spec": 3})).is_none());
        assert_eq!(
            spec(),
            PushSpec {
                secret_ref: Some(("ns".into(), "s".into())),
                api_endpoint: None,
                insecure: false
            }
        );
    }

    #[test]
    fn invalid_cases_say_why() {
        let table: Vec<(PushSpec, Option<Value>, &str)> = vec![
            (
                PushSpec::from_cluster(&cluster("Push", None)).unwrap(),
                None,
                "spec.secretRef is not set",
            ),
            (spec(), None, "secret ns/s not found"),
            (
                spec(),
                Some(json!({"apiVersion": "v1", "kind": "Secret", "data": {"token": b64("x")}})),
                "no key \"kubeconfig\"",
            ),
            (spec(), Some(secret_data("[1, 2")), "not a kubeconfig"),
            (
                spec(),
                Some(secret_data(
                    &KC.replace("current-context: m", "current-context: zz"),
                )),
                "context \"zz\" not found",
            ),
            (
                spec(),
                Some(secret_data(
                    &KC.replace("    server: http://127.0.0.1:1\n", "    {}\n"),
                )),
                "has no server",
            ),
        ];
        for (spec, secret, want) in table {
            match desired(&spec, secret.as_ref()) {
                Desired::Invalid { message } => {
                    assert!(message.contains(want), "{message:?} lacks {want:?}")
                }
                d => panic!("expected Invalid ({want}), got {d:?}"),
            }
        }
    }

    #[test]
    fn valid_secret_runs_and_changes_restart() {
        let d = desired(&spec(), Some(&secret_data(KC)));
        let Desired::Run {
            kubeconfig,
            fingerprint,
            ..
        } = &d
        else {
            panic!("{d:?}")
        };
        assert_eq!(kubeconfig, KC);
        // Same inputs, same fingerprint (no restart).
        assert_eq!(
            desired(&spec(), Some(&secret_data(KC))).fingerprint(),
            *fingerprint
        );
        // stringData is read too and means the same.
        let sd = json!({"apiVersion": "v1", "kind": "Secret", "stringData": {KUBECONFIG_KEY: KC}});
        assert_eq!(desired(&spec(), Some(&sd)).fingerprint(), *fingerprint);
        // A new kubeconfig, endpoint or TLS setting restarts.
        let other = KC.replace("127.0.0.1:1", "127.0.0.1:2");
        assert_ne!(
            desired(&spec(), Some(&secret_data(&other))).fingerprint(),
            *fingerprint
        );
        let mut s = spec();
        s.api_endpoint = Some("https://m.example:6443".into());
        assert_ne!(
            desired(&s, Some(&secret_data(KC))).fingerprint(),
            *fingerprint
        );
        let mut s = spec();
        s.insecure = true;
        assert_ne!(
            desired(&s, Some(&secret_data(KC))).fingerprint(),
            *fingerprint
        );
    }

    #[test]
    fn an_endpoint_stands_in_for_a_missing_server() {
        let mut s = spec();
        s.api_endpoint = Some("http://127.0.0.1:9".into());
        let no_server = KC.replace("    server: http://127.0.0.1:1\n", "    {}\n");
        assert!(matches!(
            desired(&s, Some(&secret_data(&no_server))),
            Desired::Run { .. }
        ));
    }
}
