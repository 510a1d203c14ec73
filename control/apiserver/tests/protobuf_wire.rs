//! hami's protobuf bodies against an independent implementation of the same
//! messages: the prost types of the k8s-pb crate (kube-rs' bindings of
//! Kubernetes' `generated.proto`). What hami writes, k8s-pb reads with the
//! values in the right fields; what k8s-pb writes the way client-go does
//! (every non-pointer field present, empty or not), hami reads as the JSON
//! object kubectl would have sent.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hami_apiserver::server::protobuf::{MAGIC, decode, encode};
use k8s_pb::api::apps::v1 as apps;
use k8s_pb::api::core::v1 as core;
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::json;

fn unwrap_envelope(bytes: &[u8]) -> (String, String, Vec<u8>) {
    let body = bytes.strip_prefix(MAGIC).expect("k8s\\0 prefix");
    let unknown = Unknown::decode(body).unwrap();
    let tm = unknown.type_meta.unwrap();
    (
        tm.api_version.unwrap(),
        tm.kind.unwrap(),
        unknown.raw.unwrap(),
    )
}

fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.into()),
            kind: Some(kind.into()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = MAGIC.to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

#[test]
fn what_hami_writes_k8s_pb_reads_field_by_field() {
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "ml", "labels": {"app": "web"},
                     "annotations": {"a": "b"}, "creationTimestamp": "2024-05-01T10:00:00Z"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "hostIPC": true,
                    "containers": [{
                        "name": "web", "image": "nginx:1.27",
                        "resources": {"limits": {"nvidia.com/gpu": "2"}, "requests": {"cpu": "250m"}},
                        "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
                        "livenessProbe": {"tcpSocket": {"port": 8080}},
                        "env": [{"name": "A", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
                    }],
                    "volumes": [{"name": "v", "configMap": {"name": "cm"}}]
                }
            }
        }
    });
    let (api_version, kind, raw) = unwrap_envelope(&encode(&deployment).unwrap());
    assert_eq!(
        (api_version.as_str(), kind.as_str()),
        ("apps/v1", "Deployment")
    );
    let d = apps::Deployment::decode(raw.as_slice()).unwrap();
    let md = d.metadata.unwrap();
    assert_eq!((md.name, md.namespace), (s("web"), s("ml")));
    assert_eq!(md.labels.get("app").map(String::as_str), Some("web"));
    assert_eq!(md.annotations.get("a").map(String::as_str), Some("b"));
    assert_eq!(md.creation_timestamp.unwrap().seconds, Some(1_714_557_600));
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(
        spec.selector
            .unwrap()
            .match_labels
            .get("app")
            .map(String::as_str),
        Some("web")
    );
    let pod = spec.template.unwrap().spec.unwrap();
    assert_eq!(pod.host_ipc, Some(true));
    let c = &pod.containers[0];
    assert_eq!(
        (c.name.clone(), c.image.clone()),
        (s("web"), s("nginx:1.27"))
    );
    let res = c.resources.clone().unwrap();
    assert_eq!(res.limits["nvidia.com/gpu"], Quantity { string: s("2") });
    assert_eq!(res.requests["cpu"], Quantity { string: s("250m") });
    let http = c
        .readiness_probe
        .clone()
        .unwrap()
        .handler
        .unwrap()
        .http_get
        .unwrap();
    assert_eq!(
        http.port,
        Some(IntOrString {
            r#type: Some(1),
            int_val: Some(0),
            str_val: s("http")
        })
    );
    let tcp = c
        .liveness_probe
        .clone()
        .unwrap()
        .handler
        .unwrap()
        .tcp_socket
        .unwrap();
    assert_eq!(tcp.port.unwrap().int_val, Some(8080));
    let key = c.env[0].value_from.clone().unwrap().secret_key_ref.unwrap();
    assert_eq!(key.local_object_reference.unwrap().name, s("s"));
    assert_eq!(key.key, s("k"));
    let cm = pod.volumes[0]
        .volume_source
        .clone()
        .unwrap()
        .config_map
        .unwrap();
    assert_eq!(cm.local_object_reference.unwrap().name, s("cm"));

    // And back: k8s-pb's bytes decode to the same JSON.
    let again = decode(&envelope(
        "apps/v1",
        "Deployment",
        apps::Deployment::decode(raw.as_slice())
            .unwrap()
            .encode_to_vec(),
    ))
    .unwrap();
    assert_eq!(again, deployment);
}

/// A Pod as `kubectl run` builds it and client-go marshals it: Go writes
/// every non-pointer field, so empty strings, a zero creation time and an
/// empty `status` are on the wire; they read back as JSON leaves them.
#[test]
fn what_client_go_writes_hami_reads_as_json() {
    let pod = core::Pod {
        metadata: Some(meta::ObjectMeta {
            name: s("pod1"),
            generate_name: s(""),
            namespace: s(""),
            self_link: s(""),
            uid: s(""),
            resource_version: s(""),
            generation: Some(0),
            creation_timestamp: Some(meta::Time::default()),
            labels: [("run".to_owned(), "pod1".to_owned())].into(),
            ..Default::default()
        }),
        spec: Some(core::PodSpec {
            containers: vec![core::Container {
                name: s("pod1"),
                image: s("nginx"),
                image_pull_policy: s(""),
                resources: Some(core::ResourceRequirements {
                    limits: [("nvidia.com/gpu".to_owned(), Quantity { string: s("1") })].into(),
                    ..Default::default()
                }),
                stdin: Some(false),
                ..Default::default()
            }],
            restart_policy: s("Always"),
            dns_policy: s("ClusterFirst"),
            ..Default::default()
        }),
        status: Some(core::PodStatus::default()),
    };
    let got = decode(&envelope("v1", "Pod", pod.encode_to_vec())).unwrap();
    assert_eq!(
        got,
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "pod1", "labels": {"run": "pod1"}},
            "spec": {
                "containers": [{"name": "pod1", "image": "nginx", "stdin": false,
                                "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"
            },
            "status": {}
        })
    );
}

/// Secret data is bytes on the wire and base64 in JSON; a Lease's times are
/// MicroTime (microseconds).
#[test]
fn bytes_and_micro_times_keep_their_json_forms() {
    let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                        "data": {"k": "AJ+Slg=="}, "type": "Opaque"});
    let (_, _, raw) = unwrap_envelope(&encode(&secret).unwrap());
    let decoded = core::Secret::decode(raw.as_slice()).unwrap();
    assert_eq!(decoded.data["k"], vec![0, 159, 146, 150]);
    assert_eq!(decode(&encode(&secret).unwrap()).unwrap(), secret);

    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                       "metadata": {"name": "l"},
                       "spec": {"holderIdentity": "a", "renewTime": "2024-05-01T10:00:00.123456Z"}});
    let (_, _, raw) = unwrap_envelope(&encode(&lease).unwrap());
    let l = k8s_pb::api::coordination::v1::Lease::decode(raw.as_slice()).unwrap();
    let t = l.spec.unwrap().renew_time.unwrap();
    assert_eq!(
        (t.seconds, t.nanos),
        (Some(1_714_557_600), Some(123_456_000))
    );
    assert_eq!(decode(&encode(&lease).unwrap()).unwrap(), lease);
}
