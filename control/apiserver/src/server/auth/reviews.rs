//! The access reviews of `authorization.k8s.io/v1`, create-only and never
//! stored, answered from the RBAC policy that authorized the request (what
//! `kubectl auth can-i` asks):
//!
//! * `selfsubjectaccessreviews`: may the requesting user do
//!   `spec.resourceAttributes` / `spec.nonResourceAttributes`?
//! * `selfsubjectrulesreviews`: what may the requesting user do in
//!   `spec.namespace` (the rules of [`Policy::rules_for`], `incomplete: false`)?
//! * `subjectaccessreviews` (cluster-scoped) and `localsubjectaccessreviews`
//!   (namespaced): may `spec.user` / `spec.groups` do it? Creating one needs
//!   RBAC `create` on it, which only admins have.
//!
//! The answer is 201 with the object sent and its `status` (`allowed`, and
//! `reason` when there is one; RBAC never denies outright, so `denied` is
//! never set), as kube-apiserver answers. Invalid specs are 422 with kube's
//! field paths. With authentication off every review is allowed (every
//! request is served, as `system:masters`).

use axum::body::Body;
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use super::{PolicySnapshot, request_user};
use crate::server::State;
use crate::server::dispatch::{json_response, read_body};
use crate::server::rbac::{Attributes, Policy, Review, UserInfo};
use crate::server::request;
use crate::server::status::{ApiError, Cause};

pub const GROUP: &str = "authorization.k8s.io";
pub const VERSION: &str = "v1";
const API_VERSION: &str = "authorization.k8s.io/v1";

/// What a review asks about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    SelfSubjectAccessReview,
    SelfSubjectRulesReview,
    SubjectAccessReview,
    LocalSubjectAccessReview,
}

/// One review resource as discovery lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReviewResource {
    pub kind: Kind,
    pub kind_name: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

/// The four review resources, in discovery's (name) order.
pub const RESOURCES: [ReviewResource; 4] = [
    ReviewResource {
        kind: Kind::LocalSubjectAccessReview,
        kind_name: "LocalSubjectAccessReview",
        plural: "localsubjectaccessreviews",
        namespaced: true,
    },
    ReviewResource {
        kind: Kind::SelfSubjectAccessReview,
        kind_name: "SelfSubjectAccessReview",
        plural: "selfsubjectaccessreviews",
        namespaced: false,
    },
    ReviewResource {
        kind: Kind::SelfSubjectRulesReview,
        kind_name: "SelfSubjectRulesReview",
        plural: "selfsubjectrulesreviews",
        namespaced: false,
    },
    ReviewResource {
        kind: Kind::SubjectAccessReview,
        kind_name: "SubjectAccessReview",
        plural: "subjectaccessreviews",
        namespaced: false,
    },
];

/// The review resource `group`/`plural` names, if any.
pub fn resource(group: &str, plural: &str) -> Option<&'static ReviewResource> {
    (group == GROUP)
        .then(|| RESOURCES.iter().find(|r| r.plural == plural))
        .flatten()
}

/// The `APIResourceList` of `authorization.k8s.io/v1`.
pub fn discovery_list() -> Value {
    let resources: Vec<Value> = RESOURCES
        .iter()
        .map(|r| {
            json!({
                "name": r.plural,
                "singularName": r.kind_name.to_lowercase(),
                "namespaced": r.namespaced,
                "kind": r.kind_name,
                "verbs": ["create"],
            })
        })
        .collect();
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": resources,
    })
}

/// A review addressed by a request path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub resource: &'static ReviewResource,
    /// The URL's namespace (local reviews only).
    pub namespace: Option<String>,
}

/// The review a path addresses: `/apis/authorization.k8s.io/v1/{plural}`,
/// or `.../namespaces/{ns}/localsubjectaccessreviews`.
pub fn match_path(path: &str) -> Option<Target> {
    let rest = path
        .trim_end_matches('/')
        .strip_prefix("/apis/authorization.k8s.io/v1/")?;
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        [plural] => {
            let resource = resource(GROUP, plural).filter(|r| !r.namespaced)?;
            Some(Target {
                resource,
                namespace: None,
            })
        }
        ["namespaces", ns, plural] if !ns.is_empty() => {
            let resource = resource(GROUP, plural).filter(|r| r.namespaced)?;
            Some(Target {
                resource,
                namespace: Some((*ns).to_owned()),
            })
        }
        _ => None,
    }
}

/// Serves a POST to a review path.
pub async fn serve(
    state: &State,
    target: &Target,
    extensions: &Extensions,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = read_body(state, headers, body).await?;
    let media_type = request::content_type(headers);
    let review = if media_type.contains("protobuf") {
        super::review_protobuf::decode(&bytes)
            .map_err(|e| ApiError::bad_request(format!("invalid protobuf body: {e}")))?
    } else {
        request::decode_object(&bytes, &media_type)?
    };
    let user = request_user(extensions);
    let policy = extensions.get::<PolicySnapshot>().map(|p| p.0.as_ref());
    let answered = answer(target, &user, policy, review)?;
    Ok(json_response(StatusCode::CREATED, &answered))
}

fn text<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn some(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// The attributes a review's spec asks about, or the causes it is invalid for.
fn attributes(spec: &Value, kind: Kind) -> Result<Attributes, Vec<Cause>> {
    let resource = spec.get("resourceAttributes").filter(|v| !v.is_null());
    let non_resource = spec.get("nonResourceAttributes").filter(|v| !v.is_null());
    let mut causes = Vec::new();
    if kind == Kind::SubjectAccessReview || kind == Kind::LocalSubjectAccessReview {
        let groups = spec
            .get("groups")
            .and_then(Value::as_array)
            .is_some_and(|g| !g.is_empty());
        if text(spec, "/user").is_empty() && !groups {
            causes.push(Cause::new(
                "FieldValueInvalid",
                "spec.user",
                "Invalid value: \"\": at least one of user or group must be specified",
            ));
        }
    }
    let attrs = match (resource, non_resource) {
        (Some(_), Some(_)) => {
            causes.push(Cause::new(
                "FieldValueInvalid",
                "spec.nonResourceAttributes",
                "Invalid value: \"object\": cannot be specified in combination with resourceAttributes",
            ));
            None
        }
        (None, None) => {
            causes.push(Cause::new(
                "FieldValueInvalid",
                "spec.resourceAttributes",
                "Invalid value: \"null\": exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
            None
        }
        (Some(r), None) => Some(Attributes::Resource {
            verb: text(r, "/verb").to_owned(),
            api_group: text(r, "/group").to_owned(),
            resource: text(r, "/resource").to_owned(),
            subresource: some(text(r, "/subresource")),
            namespace: some(text(r, "/namespace")),
            name: some(text(r, "/name")),
        }),
        (None, Some(_)) if kind == Kind::LocalSubjectAccessReview => {
            causes.push(Cause::new(
                "FieldValueInvalid",
                "spec.nonResourceAttributes",
                "Invalid value: \"object\": disallowed on this kind of request",
            ));
            None
        }
        (None, Some(n)) => Some(Attributes::NonResource {
            verb: text(n, "/verb").to_owned(),
            path: text(n, "/path").to_owned(),
        }),
    };
    match attrs {
        Some(attrs) if causes.is_empty() => Ok(attrs),
        _ => Err(causes),
    }
}

fn status_of(review: &Review) -> Value {
    let mut status = json!({"allowed": review.allowed});
    if !review.reason.is_empty() {
        status["reason"] = json!(review.reason);
    }
    status
}

/// The review `review` (as sent) with its status: asked of `policy` for
/// `requester` (self reviews) or for the spec's user (the others); every
/// review is allowed when `policy` is `None` (authentication off).
pub fn answer(
    target: &Target,
    requester: &UserInfo,
    policy: Option<&Policy>,
    mut review: Value,
) -> Result<Value, ApiError> {
    let kind_name = target.resource.kind_name;
    for (field, want) in [("apiVersion", API_VERSION), ("kind", kind_name)] {
        match review.get(field).and_then(Value::as_str) {
            None | Some("") => review[field] = json!(want),
            Some(got) if got == want => {}
            Some(got) => {
                return Err(ApiError::bad_request(format!(
                    "the {field} of the body ({got}) is not {want}"
                )));
            }
        }
    }
    let metadata = crate::server::meta::metadata_mut(&mut review);
    metadata.entry("creationTimestamp").or_insert(Value::Null);
    if let Some(ns) = &target.namespace {
        match metadata.get("namespace").and_then(Value::as_str) {
            None | Some("") => {
                metadata.insert("namespace".into(), json!(ns));
            }
            Some(given) if given == ns => {}
            Some(_) => {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
        }
    }
    let spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
    let everything = Policy::default();
    let status = match target.resource.kind {
        Kind::SelfSubjectRulesReview => {
            // With authentication off the requester is system:masters:
            // the empty policy gives cluster-admin's rules.
            let policy = policy.unwrap_or(&everything);
            let (resource_rules, non_resource_rules) =
                policy.rules_for(requester, text(&spec, "/namespace"));
            json!({
                "resourceRules": resource_rules,
                "nonResourceRules": non_resource_rules,
                "incomplete": false,
            })
        }
        kind => {
            let mut attrs = attributes(&spec, kind)
                .map_err(|causes| ApiError::invalid(GROUP, kind_name, "", causes))?;
            if let (Some(ns), Attributes::Resource { namespace, .. }) =
                (&target.namespace, &mut attrs)
                && namespace.as_deref() != Some(ns.as_str())
            {
                let given = namespace.clone().unwrap_or_default();
                return Err(ApiError::invalid(
                    GROUP,
                    kind_name,
                    "",
                    vec![Cause::new(
                        "FieldValueInvalid",
                        "spec.resourceAttributes.namespace",
                        format!("Invalid value: {given:?}: must match metadata.namespace"),
                    )],
                ));
            }
            let subject = match kind {
                Kind::SelfSubjectAccessReview => requester.clone(),
                _ => UserInfo {
                    name: text(&spec, "/user").to_owned(),
                    groups: spec
                        .get("groups")
                        .and_then(Value::as_array)
                        .map(|g| {
                            g.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default(),
                },
            };
            let answer = match policy {
                Some(policy) => policy.review(&subject, &attrs),
                None => Review {
                    allowed: true,
                    reason: String::new(),
                },
            };
            status_of(&answer)
        }
    };
    review["status"] = status;
    Ok(review)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::server::rbac::{default_cluster_role_bindings, default_cluster_roles};

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }

    fn target(plural: &str, ns: Option<&str>) -> Target {
        Target {
            resource: resource(GROUP, plural).unwrap(),
            namespace: ns.map(str::to_owned),
        }
    }

    /// kube's defaults plus `view` for alice in `default`.
    fn policy() -> Policy {
        let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "alice-view", "namespace": "default"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}]});
        Policy::build(
            &[],
            &default_cluster_roles(),
            &[binding],
            &default_cluster_role_bindings(),
        )
    }

    fn ssar(verb: &str, group: &str, resource: &str, ns: &str) -> Value {
        json!({"apiVersion": API_VERSION, "kind": "SelfSubjectAccessReview",
               "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": ns}}})
    }

    #[test]
    fn paths_name_the_reviews() {
        let p = "/apis/authorization.k8s.io/v1/";
        assert_eq!(
            match_path(&format!("{p}selfsubjectaccessreviews")),
            Some(target("selfsubjectaccessreviews", None))
        );
        assert_eq!(
            match_path(&format!("{p}namespaces/ns/localsubjectaccessreviews")),
            Some(target("localsubjectaccessreviews", Some("ns")))
        );
        for none in [
            format!("{p}localsubjectaccessreviews"),
            format!("{p}namespaces/ns/subjectaccessreviews"),
            format!("{p}selfsubjectaccessreviews/x"),
            format!("{p}widgets"),
            "/apis/authorization.k8s.io/v1".to_owned(),
            "/api/v1/pods".to_owned(),
        ] {
            assert_eq!(match_path(&none), None, "{none}");
        }
    }

    #[test]
    fn self_access_reviews_answer_for_the_requester() {
        let p = policy();
        let alice = user("alice", &["system:authenticated"]);
        let t = target("selfsubjectaccessreviews", None);
        let yes = answer(&t, &alice, Some(&p), ssar("list", "", "pods", "default")).unwrap();
        assert_eq!(yes["status"]["allowed"], true);
        assert_eq!(
            yes["status"]["reason"],
            r#"RBAC: allowed by RoleBinding "alice-view/default" of ClusterRole "view" to User "alice""#
        );
        assert_eq!(yes["spec"]["resourceAttributes"]["verb"], "list");
        assert_eq!(yes["metadata"]["creationTimestamp"], Value::Null);
        let no = answer(
            &t,
            &alice,
            Some(&p),
            ssar("create", "apps", "deployments", "default"),
        )
        .unwrap();
        assert_eq!(no["status"], json!({"allowed": false}));
        let url = json!({"spec": {"nonResourceAttributes": {"verb": "get", "path": "/apis"}}});
        let discovery = answer(&t, &alice, Some(&p), url).unwrap();
        assert_eq!(discovery["status"]["allowed"], true);
        assert_eq!(discovery["kind"], "SelfSubjectAccessReview");
        // Authentication off: everything.
        let off = answer(&t, &alice, None, ssar("delete", "", "nodes", "")).unwrap();
        assert_eq!(off["status"]["allowed"], true);
    }

    #[test]
    fn invalid_specs_name_the_field() {
        let p = policy();
        let alice = user("alice", &[]);
        let invalid = |plural: &str, ns: Option<&str>, body: Value| {
            let err = answer(&target(plural, ns), &alice, Some(&p), body).unwrap_err();
            let status = err.status();
            assert_eq!(status["code"], 422, "{status}");
            status["details"]["causes"][0]["field"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(
            invalid("selfsubjectaccessreviews", None, json!({"spec": {}})),
            "spec.resourceAttributes"
        );
        assert_eq!(
            invalid(
                "selfsubjectaccessreviews",
                None,
                json!({"spec": {"resourceAttributes": {}, "nonResourceAttributes": {}}})
            ),
            "spec.nonResourceAttributes"
        );
        assert_eq!(
            invalid(
                "subjectaccessreviews",
                None,
                json!({"spec": {"resourceAttributes": {"verb": "get"}}})
            ),
            "spec.user"
        );
        assert_eq!(
            invalid(
                "localsubjectaccessreviews",
                Some("ns"),
                json!({"spec": {"user": "u", "resourceAttributes": {"namespace": "other"}}})
            ),
            "spec.resourceAttributes.namespace"
        );
        assert_eq!(
            invalid(
                "localsubjectaccessreviews",
                Some("ns"),
                json!({"spec": {"user": "u", "nonResourceAttributes": {"path": "/x"}}})
            ),
            "spec.nonResourceAttributes"
        );
        let wrong_kind = answer(
            &target("selfsubjectaccessreviews", None),
            &alice,
            Some(&p),
            json!({"kind": "SubjectAccessReview", "spec": {}}),
        )
        .unwrap_err();
        assert_eq!(wrong_kind.code(), 400);
    }

    #[test]
    fn subject_reviews_answer_for_the_spec_user() {
        let p = policy();
        let admin = user("admin", &["system:masters"]);
        let sar = json!({"spec": {"user": "alice",
            "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "default"}}});
        let yes = answer(&target("subjectaccessreviews", None), &admin, Some(&p), sar).unwrap();
        assert_eq!(yes["status"]["allowed"], true);
        assert_eq!(yes["spec"]["user"], "alice");
        let local = json!({"spec": {"user": "alice",
            "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "other"}},
            "metadata": {}});
        let no = answer(
            &target("localsubjectaccessreviews", Some("other")),
            &admin,
            Some(&p),
            local,
        )
        .unwrap();
        assert_eq!(no["status"]["allowed"], false);
        assert_eq!(no["metadata"]["namespace"], "other");
        let mismatch = json!({"metadata": {"namespace": "a"}, "spec": {"user": "u",
            "resourceAttributes": {"namespace": "b"}}});
        let err = answer(
            &target("localsubjectaccessreviews", Some("b")),
            &admin,
            Some(&p),
            mismatch,
        )
        .unwrap_err();
        assert_eq!(err.code(), 400);
    }

    #[test]
    fn rules_reviews_list_the_rules() {
        let p = policy();
        let alice = user("alice", &["system:authenticated"]);
        let t = target("selfsubjectrulesreviews", None);
        let got = answer(
            &t,
            &alice,
            Some(&p),
            json!({"spec": {"namespace": "default"}}),
        )
        .unwrap();
        let status = &got["status"];
        assert_eq!(status["incomplete"], false);
        let rules = status["resourceRules"].as_array().unwrap();
        assert!(rules.iter().any(
            |r| r["resources"].as_array().unwrap().contains(&json!("pods"))
                && r["verbs"] == json!(["get", "list", "watch"])
        ));
        assert!(
            rules.iter().any(|r| r["resources"]
                == json!(["selfsubjectaccessreviews", "selfsubjectrulesreviews"]))
        );
        assert!(!status["nonResourceRules"].as_array().unwrap().is_empty());
        // In another namespace alice has only the cluster-wide rules.
        let other = answer(&t, &alice, Some(&p), json!({"spec": {"namespace": "x"}})).unwrap();
        assert!(
            !other["status"]["resourceRules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["resources"].as_array().unwrap().contains(&json!("pods")))
        );
    }

    #[test]
    fn discovery_lists_create_only() {
        let list = discovery_list();
        assert_eq!(list["groupVersion"], "authorization.k8s.io/v1");
        let resources = list["resources"].as_array().unwrap();
        assert_eq!(resources.len(), 4);
        for r in resources {
            assert_eq!(r["verbs"], json!(["create"]));
        }
        assert_eq!(resources[0]["namespaced"], true);
    }
}
