//! Random bytes and strings fed to every request decoder: each answers a
//! value or a 4xx error, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hami_apiserver::server::registry::Registry;
use hami_apiserver::server::request::{self, Query};
use hami_apiserver::server::selector::{FieldSelector, LabelSelector};
use proptest::prelude::*;

/// Built once: generating the built-in schemas takes a while in debug builds.
static REGISTRY: std::sync::LazyLock<Registry> = std::sync::LazyLock::new(Registry::builtin);

fn client_error(code: u16) -> bool {
    (400..500).contains(&code)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        for media in ["application/json", "application/yaml", "application/apply-patch+yaml", "", "application/vnd.kubernetes.protobuf"] {
            if let Err(e) = request::decode_object(&bytes, media) {
                prop_assert!(client_error(e.code()), "{media}: {e}");
            }
        }
    }

    #[test]
    fn yaml_like_text_never_panics(text in "[-a-z:{}\\[\\],'\"&*!|> \n#0-9]{0,200}") {
        if let Err(e) = request::decode_value(text.as_bytes(), "application/yaml") {
            prop_assert!(client_error(e.code()));
        }
        if let Err(e) = request::decode_value(text.as_bytes(), "application/json") {
            prop_assert!(client_error(e.code()));
        }
    }

    #[test]
    fn selectors_and_tokens_never_panic(text in "\\PC{0,80}") {
        let _ = LabelSelector::parse(&text);
        let _ = FieldSelector::parse(&text);
        if let Err(e) = request::decode_continue(&text) {
            prop_assert_eq!(e.code(), 400);
        }
        let pairs: Vec<(String, String)> = ["labelSelector", "fieldSelector", "limit", "timeoutSeconds", "watch", "continue"]
            .iter()
            .map(|k| ((*k).to_owned(), text.clone()))
            .collect();
        if let Err(e) = Query::parse(&pairs) {
            prop_assert_eq!(e.code(), 400);
        }
    }

    #[test]
    fn paths_never_panic(segments in proptest::collection::vec("[a-z0-9./-]{0,12}", 0..8)) {
        let registry = &*REGISTRY;
        for root in ["/api", "/apis", ""] {
            let path = format!("{root}/{}", segments.join("/"));
            if let Err(e) = request::parse_path(registry, &path) {
                prop_assert!(client_error(e.code()));
            }
        }
    }

    #[test]
    fn selector_on_labels_is_consistent(key in "[a-z]{1,5}", value in "[a-z]{1,5}") {
        // `k=v` and `k in (v)` select exactly the same label sets.
        let eq = LabelSelector::parse(&format!("{key}={value}")).unwrap();
        let set = LabelSelector::parse(&format!("{key} in ({value})")).unwrap();
        let labels: std::collections::BTreeMap<&str, &str> = [(key.as_str(), value.as_str())].into_iter().collect();
        prop_assert!(eq.matches(&labels) && set.matches(&labels));
        let other: std::collections::BTreeMap<&str, &str> = [(key.as_str(), "zzzzzz")].into_iter().collect();
        prop_assert_eq!(eq.matches(&other), set.matches(&other));
    }
}

#[test]
fn continue_tokens_round_trip() {
    let key = "/registry/apps/deployments/ns/name";
    assert_eq!(
        request::decode_continue(&request::encode_continue(key)).unwrap(),
        key
    );
}

/// A valid protobuf Deployment, as kubectl sends one.
fn protobuf_deployment() -> Vec<u8> {
    hami_apiserver::server::protobuf::encode(&serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "nginx",
                                       "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}
    }))
    .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// A protobuf Deployment with bytes changed, cut short or appended: a
    /// value or a 4xx, never a panic.
    #[test]
    fn damaged_protobuf_bodies_never_panic(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
        tail in proptest::collection::vec(any::<u8>(), 0..16),
    ) {
        let mut body = protobuf_deployment();
        for (at, byte) in flips {
            let i = 4 + at % (body.len() - 4);
            body[i] = byte;
        }
        body.truncate(4 + cut % (body.len() - 3));
        body.extend(tail);
        if let Err(e) = request::decode_object(&body, "application/vnd.kubernetes.protobuf") {
            prop_assert!(client_error(e.code()), "{e}");
        }
    }
}
