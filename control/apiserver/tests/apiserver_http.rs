//! The API server over real loopback HTTP: every verb, the watch protocol,
//! discovery, tables, metrics, and each class of bad input (answered with a
//! Kubernetes Status, the store left unchanged).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use futures::io::AsyncBufReadExt;
use hami_apiserver::server::{RunningServer, ServerConfig, hami_kinds, protobuf};
use hami_store::{MemoryOptions, MemoryStore, Store};
use http::{Method, Request};
use kube::client::Body;
use serde_json::{Value, json};
use std::pin::Pin;

type Lines = Pin<Box<dyn futures::io::AsyncBufRead + Send>>;

struct Server {
    running: RunningServer,
    store: Arc<dyn Store>,
    client: kube::Client,
}

async fn start_with(history: usize, config: ServerConfig) -> Server {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::with_options(MemoryOptions {
        history,
        ..MemoryOptions::default()
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = hami_apiserver::spawn(
        listener,
        store.clone(),
        hami_kinds::registry().unwrap(),
        config,
    )
    .await
    .unwrap();
    let config = kube::Config::new(running.url().parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    Server {
        running,
        store,
        client,
    }
}

async fn start() -> Server {
    start_with(
        10_000,
        ServerConfig {
            validator: Some(hami_kinds::validator()),
            ..ServerConfig::default()
        },
    )
    .await
}

impl Server {
    async fn raw(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        accept: &str,
        body: Vec<u8>,
    ) -> (u16, Vec<u8>) {
        let mut req = Request::builder().method(method).uri(path);
        if !content_type.is_empty() {
            req = req.header("content-type", content_type);
        }
        if !accept.is_empty() {
            req = req.header("accept", accept);
        }
        let resp = self
            .client
            .send(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let code = resp.status().as_u16();
        let bytes = resp.into_body().collect_bytes().await.unwrap();
        (code, bytes.to_vec())
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let (code, bytes) = self.raw(method, path, content_type, "", body).await;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({"raw": String::from_utf8_lossy(&bytes)}));
        (code, value)
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(Method::GET, path, "", Vec::new()).await
    }

    async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(
            Method::POST,
            path,
            "application/json",
            body.to_string().into_bytes(),
        )
        .await
    }

    async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.call(
            Method::PUT,
            path,
            "application/json",
            body.to_string().into_bytes(),
        )
        .await
    }

    async fn patch(&self, path: &str, content_type: &str, body: &str) -> (u16, Value) {
        self.call(Method::PATCH, path, content_type, body.as_bytes().to_vec())
            .await
    }

    async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(Method::DELETE, path, "", Vec::new()).await
    }

    /// Opens a watch and returns a line reader.
    async fn watch(&self, path: &str) -> Lines {
        let req = Request::builder().uri(path).body(Vec::new()).unwrap();
        Box::pin(self.client.request_stream(req).await.unwrap())
    }
}

async fn next_event(reader: &mut Lines) -> Value {
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
        .await
        .expect("a watch event within 10 s")
        .unwrap();
    serde_json::from_str(&line).unwrap_or(Value::Null)
}

fn deployment(name: &str, replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "main", "image": "nginx:1"}]}}
        }
    })
}

fn configmap(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})
}

const DEPLOYS: &str = "/apis/apps/v1/namespaces/default/deployments";

fn assert_status(body: &Value, code: u16, reason: &str) {
    assert_eq!(body["kind"], "Status", "{body}");
    assert_eq!(body["apiVersion"], "v1");
    assert_eq!(body["status"], "Failure");
    assert_eq!(body["code"], code, "{body}");
    assert_eq!(body["reason"], reason, "{body}");
    assert!(!body["message"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn discovery_describes_every_kind() {
    let s = start().await;
    let (code, api) = s.get("/api").await;
    assert_eq!((code, api["versions"].clone()), (200, json!(["v1"])));
    let (_, groups) = s.get("/apis").await;
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    for g in [
        "apps",
        "batch",
        "coordination.k8s.io",
        "policy.hami.io",
        "work.hami.io",
        "cluster.hami.io",
    ] {
        assert!(names.contains(&g), "{g} missing from {names:?}");
    }
    let (_, apps) = s.get("/apis/apps/v1").await;
    let resources = apps["resources"].as_array().unwrap();
    let deploy = resources
        .iter()
        .find(|r| r["name"] == "deployments")
        .unwrap();
    assert_eq!(deploy["shortNames"], json!(["deploy"]));
    assert_eq!(deploy["categories"], json!(["all"]));
    assert_eq!(deploy["namespaced"], true);
    assert!(resources.iter().any(|r| r["name"] == "deployments/status"));
    let (_, policy) = s.get("/apis/policy.hami.io/v1alpha1").await;
    let pp = policy["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "PropagationPolicy")
        .unwrap();
    assert_eq!(pp["shortNames"], json!(["pp"]));
    let (_, group) = s.get("/apis/apps").await;
    assert_eq!(group["preferredVersion"]["groupVersion"], "apps/v1");
    let (code, version) = s.get("/version").await;
    assert_eq!((code, version["major"].as_str()), (200, Some("1")));
    let (code, body) = s.get("/apis/nothing.example/v1").await;
    assert_eq!(code, 404);
    assert_status(&body, 404, "NotFound");
    // Aggregated discovery is answered with the legacy document as plain JSON.
    let (code, bytes) = s
        .raw(
            Method::GET,
            "/apis",
            "",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
            Vec::new(),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        serde_json::from_slice::<Value>(&bytes).unwrap()["kind"],
        "APIGroupList"
    );
}

#[tokio::test]
async fn create_get_update_delete() {
    let s = start().await;
    let (code, created) = s.post(DEPLOYS, &deployment("web", 2)).await;
    assert_eq!(code, 201, "{created}");
    let md = &created["metadata"];
    assert_eq!(md["generation"], 1);
    assert_eq!(md["uid"].as_str().unwrap().len(), 36);
    assert!(md["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    let rv = md["resourceVersion"].as_str().unwrap().to_owned();

    let (code, got) = s.get(&format!("{DEPLOYS}/web")).await;
    assert_eq!((code, got.clone()), (200, created.clone()));
    let (code, body) = s.post(DEPLOYS, &deployment("web", 2)).await;
    assert_eq!(code, 409);
    assert_status(&body, 409, "AlreadyExists");

    // A spec change bumps generation; a label change does not.
    let mut next = got.clone();
    next["spec"]["replicas"] = json!(5);
    next["status"] = json!({"replicas": 99});
    let (code, updated) = s.put(&format!("{DEPLOYS}/web"), &next).await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["metadata"]["generation"], 2);
    assert_eq!(updated["spec"]["replicas"], 5);
    assert!(
        updated.get("status").is_none(),
        "main PUT must ignore status: {updated}"
    );
    let mut labelled = updated.clone();
    labelled["metadata"]["labels"]["tier"] = json!("front");
    let (_, labelled) = s.put(&format!("{DEPLOYS}/web"), &labelled).await;
    assert_eq!(labelled["metadata"]["generation"], 2);

    // A stale resourceVersion is a 409 and changes nothing.
    let before = s.store.current_revision();
    let mut stale = got.clone();
    stale["metadata"]["resourceVersion"] = json!(rv);
    stale["spec"]["replicas"] = json!(7);
    let (code, body) = s.put(&format!("{DEPLOYS}/web"), &stale).await;
    assert_eq!(code, 409);
    assert_status(&body, 409, "Conflict");
    assert_eq!(s.store.current_revision(), before);

    // The status subresource changes only status.
    let mut with_status = labelled.clone();
    with_status["status"] = json!({"readyReplicas": 3});
    with_status["spec"]["replicas"] = json!(1);
    let (code, st) = s.put(&format!("{DEPLOYS}/web/status"), &with_status).await;
    assert_eq!(code, 200, "{st}");
    assert_eq!(st["status"]["readyReplicas"], 3);
    assert_eq!(st["spec"]["replicas"], 5);
    let (code, st) = s
        .patch(
            &format!("{DEPLOYS}/web/status"),
            "application/merge-patch+json",
            r#"{"status":{"readyReplicas":4}}"#,
        )
        .await;
    assert_eq!(
        (code, st["status"]["readyReplicas"].clone()),
        (200, json!(4))
    );

    // Name in the body must match the URL.
    let mut renamed = st.clone();
    renamed["metadata"]["name"] = json!("other");
    let (code, body) = s.put(&format!("{DEPLOYS}/web"), &renamed).await;
    assert_eq!(code, 400);
    assert_status(&body, 400, "BadRequest");

    let (code, deleted) = s.delete(&format!("{DEPLOYS}/web")).await;
    assert_eq!(
        (code, deleted["metadata"]["name"].as_str()),
        (200, Some("web"))
    );
    let (code, body) = s.get(&format!("{DEPLOYS}/web")).await;
    assert_eq!(code, 404);
    assert_status(&body, 404, "NotFound");
    assert_eq!(body["details"]["name"], "web");
    assert_eq!(body["details"]["group"], "apps");
}

#[tokio::test]
async fn generate_name_and_namespaces() {
    let s = start().await;
    let (code, obj) = s
        .post(
            "/api/v1/namespaces/default/configmaps",
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "cfg-"}}),
        )
        .await;
    assert_eq!(code, 201, "{obj}");
    let name = obj["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("cfg-") && name.len() == 9, "{name}");

    let (code, _) = s.get("/api/v1/namespaces/kube-system").await;
    assert_eq!(code, 200);
    let before = s.store.current_revision();
    let (code, body) = s
        .post(
            "/api/v1/namespaces/missing/configmaps",
            &configmap("a", json!({})),
        )
        .await;
    assert_eq!(code, 404);
    assert_status(&body, 404, "NotFound");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("namespaces \"missing\" not found")
    );
    let mut wrong_ns = configmap("a", json!({}));
    wrong_ns["metadata"]["namespace"] = json!("kube-system");
    let (code, body) = s
        .post("/api/v1/namespaces/default/configmaps", &wrong_ns)
        .await;
    assert_eq!(code, 400);
    assert_status(&body, 400, "BadRequest");
    assert_eq!(s.store.current_revision(), before);

    // A deleted namespace is Terminating, then gone with its content.
    let (code, _) = s
        .post(
            "/api/v1/namespaces",
            &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "tmp"}}),
        )
        .await;
    assert_eq!(code, 201);
    let (code, _) = s
        .post(
            "/api/v1/namespaces/tmp/configmaps",
            &configmap("c", json!({})),
        )
        .await;
    assert_eq!(code, 201);
    let (code, ns) = s.delete("/api/v1/namespaces/tmp").await;
    assert_eq!(
        (code, ns["status"]["phase"].as_str()),
        (202, Some("Terminating"))
    );
    // Nothing new goes into a terminating namespace (its content is about
    // to be deleted): 403, as kube-apiserver's NamespaceLifecycle answers.
    let (code, body) = s
        .post(
            "/api/v1/namespaces/tmp/configmaps",
            &configmap("late", json!({})),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    assert_status(&body, 403, "Forbidden");
    assert!(
        body["message"].as_str().unwrap().contains(
            "unable to create new content in namespace tmp because it is being terminated"
        ),
        "{body}"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, _) = s.get("/api/v1/namespaces/tmp").await;
        if code == 404 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "namespace never went away"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = s.get("/api/v1/namespaces/tmp/configmaps/c").await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn list_selectors_pagination_and_namespace_isolation() {
    let s = start().await;
    for ns in ["a", "ab"] {
        let (code, _) = s
            .post(
                "/api/v1/namespaces",
                &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            )
            .await;
        assert_eq!(code, 201);
    }
    let labels = [
        ("c1", "web", "front"),
        ("c2", "web", "back"),
        ("c3", "api", "back"),
        ("c4", "db", ""),
        ("c5", "web", ""),
    ];
    for (name, app, tier) in labels {
        let l = if tier.is_empty() {
            json!({"app": app})
        } else {
            json!({"app": app, "tier": tier})
        };
        let (code, _) = s
            .post("/api/v1/namespaces/a/configmaps", &configmap(name, l))
            .await;
        assert_eq!(code, 201);
    }
    let (code, _) = s
        .post(
            "/api/v1/namespaces/ab/configmaps",
            &configmap("other", json!({"app": "web"})),
        )
        .await;
    assert_eq!(code, 201);

    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let cases = [
        ("app=web", vec!["c1", "c2", "c5"]),
        ("app==web,tier=back", vec!["c2"]),
        ("app!=web", vec!["c3", "c4"]),
        ("app in (api,db)", vec!["c3", "c4"]),
        ("app notin (web,api)", vec!["c4"]),
        ("tier", vec!["c1", "c2", "c3"]),
        ("!tier", vec!["c4", "c5"]),
    ];
    for (selector, want) in cases {
        let path = format!(
            "/api/v1/namespaces/a/configmaps?labelSelector={}",
            urlencode(selector)
        );
        let (code, list) = s.get(&path).await;
        assert_eq!(code, 200, "{list}");
        assert_eq!(names(&list), want, "{selector}");
    }
    let (_, list) = s
        .get("/api/v1/namespaces/a/configmaps?fieldSelector=metadata.name%3Dc3")
        .await;
    assert_eq!(names(&list), vec!["c3"]);
    let (_, list) = s.get("/api/v1/namespaces/a/configmaps").await;
    assert_eq!(list["kind"], "ConfigMapList");
    assert_eq!(
        names(&list).len(),
        5,
        "namespace a must not see namespace ab"
    );
    assert!(
        list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    let (_, all) = s
        .get("/api/v1/configmaps?fieldSelector=metadata.namespace%3Dab")
        .await;
    assert_eq!(names(&all), vec!["other"]);
    let (_, all) = s.get("/api/v1/configmaps").await;
    assert_eq!(names(&all).len(), 6);

    // limit + continue walks everything once, with a selector too.
    let mut seen = Vec::new();
    let mut path = "/api/v1/namespaces/a/configmaps?limit=2&labelSelector=app%3Dweb".to_owned();
    loop {
        let (code, page) = s.get(&path).await;
        assert_eq!(code, 200, "{page}");
        assert!(page["items"].as_array().unwrap().len() <= 2);
        seen.extend(names(&page));
        match page["metadata"]["continue"].as_str() {
            Some(token) => {
                path = format!(
                    "/api/v1/namespaces/a/configmaps?limit=2&labelSelector=app%3Dweb&continue={token}"
                )
            }
            None => break,
        }
    }
    assert_eq!(seen, vec!["c1", "c2", "c5"]);
    let (code, body) = s
        .get("/api/v1/namespaces/a/configmaps?labelSelector=a%20b%20c")
        .await;
    assert_eq!(code, 400);
    assert_status(&body, 400, "BadRequest");
    let (code, _) = s.get("/api/v1/namespaces/a/configmaps?continue=zz").await;
    assert_eq!(code, 400);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn patch_types() {
    let s = start().await;
    let (code, _) = s.post(DEPLOYS, &deployment("web", 1)).await;
    assert_eq!(code, 201);
    let path = format!("{DEPLOYS}/web");
    let (code, p) = s
        .patch(
            &path,
            "application/merge-patch+json",
            r#"{"spec":{"replicas":3},"metadata":{"labels":{"x":"y"}}}"#,
        )
        .await;
    assert_eq!(code, 200, "{p}");
    assert_eq!(
        (
            p["spec"]["replicas"].clone(),
            p["metadata"]["labels"]["x"].clone()
        ),
        (json!(3), json!("y"))
    );
    let (code, p) = s.patch(&path, "application/json-patch+json", r#"[{"op":"replace","path":"/spec/replicas","value":4},{"op":"remove","path":"/metadata/labels/x"}]"#).await;
    assert_eq!(code, 200, "{p}");
    assert_eq!(p["spec"]["replicas"], 4);
    assert!(p["metadata"]["labels"].get("x").is_none());
    // Strategic merge: containers merge by name.
    let (code, p) = s
        .patch(&path, "application/strategic-merge-patch+json", r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"envoy:1"}]}}}}"#)
        .await;
    assert_eq!(code, 200, "{p}");
    let containers: Vec<&str> = p["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(containers, vec!["main", "sidecar"]);
    // A failed test op and a stale resourceVersion change nothing.
    let before = s.store.current_revision();
    let (code, body) = s
        .patch(
            &path,
            "application/json-patch+json",
            r#"[{"op":"test","path":"/spec/replicas","value":99}]"#,
        )
        .await;
    assert_eq!(code, 422, "{body}");
    let (code, _) = s
        .patch(
            &path,
            "application/merge-patch+json",
            r#"{"metadata":{"resourceVersion":"1"},"spec":{"replicas":9}}"#,
        )
        .await;
    assert_eq!(code, 409);
    let (code, body) = s.patch(&path, "text/plain", "{}").await;
    assert_eq!(code, 415);
    assert_status(&body, 415, "UnsupportedMediaType");
    let (code, _) = s
        .patch(
            &format!("{DEPLOYS}/missing"),
            "application/merge-patch+json",
            "{}",
        )
        .await;
    assert_eq!(code, 404);
    assert_eq!(s.store.current_revision(), before);

    // Server-side apply creates, then detects another manager's field.
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\ndata:\n  a: \"1\"\n";
    let cm_path = "/api/v1/namespaces/default/configmaps/applied";
    let (code, created) = s
        .patch(
            &format!("{cm_path}?fieldManager=one"),
            "application/apply-patch+yaml",
            cm,
        )
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["data"]["a"], "1");
    assert_eq!(created["metadata"]["managedFields"][0]["manager"], "one");
    let (code, again) = s
        .patch(
            &format!("{cm_path}?fieldManager=one"),
            "application/apply-patch+yaml",
            cm,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(
        again["metadata"]["resourceVersion"], created["metadata"]["resourceVersion"],
        "a no-op apply writes nothing"
    );
    let other = cm.replace("\"1\"", "\"2\"");
    let (code, body) = s
        .patch(
            &format!("{cm_path}?fieldManager=two"),
            "application/apply-patch+yaml",
            &other,
        )
        .await;
    assert_eq!(code, 409, "{body}");
    assert_status(&body, 409, "Conflict");
    assert_eq!(
        body["details"]["causes"][0]["reason"],
        "FieldManagerConflict"
    );
    let (code, forced) = s
        .patch(
            &format!("{cm_path}?fieldManager=two&force=true"),
            "application/apply-patch+yaml",
            &other,
        )
        .await;
    assert_eq!((code, forced["data"]["a"].clone()), (200, json!("2")));
    let (code, _) = s.patch(cm_path, "application/apply-patch+yaml", cm).await;
    assert_eq!(code, 400, "apply needs a fieldManager");
}

#[tokio::test]
async fn finalizers_hold_deletion() {
    let s = start().await;
    let mut cm = configmap("held", json!({}));
    cm["metadata"]["finalizers"] = json!(["example.io/keep"]);
    let path = "/api/v1/namespaces/default/configmaps/held";
    assert_eq!(
        s.post("/api/v1/namespaces/default/configmaps", &cm).await.0,
        201
    );
    let (code, marked) = s
        .call(
            Method::DELETE,
            path,
            "application/json",
            br#"{"propagationPolicy":"Background"}"#.to_vec(),
        )
        .await;
    assert_eq!(code, 202, "{marked}");
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    let (code, still) = s.get(path).await;
    assert_eq!(code, 200);
    let mut adding = still.clone();
    adding["metadata"]["finalizers"] = json!(["example.io/keep", "example.io/more"]);
    assert_eq!(s.put(path, &adding).await.0, 422);
    let (code, _) = s
        .patch(
            path,
            "application/merge-patch+json",
            r#"{"metadata":{"finalizers":null}}"#,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(s.get(path).await.0, 404);

    // Preconditions on delete.
    assert_eq!(
        s.post(
            "/api/v1/namespaces/default/configmaps",
            &configmap("pre", json!({}))
        )
        .await
        .0,
        201
    );
    let (code, body) = s
        .call(
            Method::DELETE,
            "/api/v1/namespaces/default/configmaps/pre",
            "application/json",
            br#"{"preconditions":{"uid":"nope"}}"#.to_vec(),
        )
        .await;
    assert_eq!(code, 409, "{body}");
    // deletecollection with a selector.
    assert_eq!(
        s.post(
            "/api/v1/namespaces/default/configmaps",
            &configmap("gone", json!({"del": "yes"}))
        )
        .await
        .0,
        201
    );
    let (code, list) = s
        .delete("/api/v1/namespaces/default/configmaps?labelSelector=del%3Dyes")
        .await;
    assert_eq!((code, list["items"].as_array().unwrap().len()), (200, 1));
    assert_eq!(
        s.get("/api/v1/namespaces/default/configmaps/pre").await.0,
        200
    );
}

#[tokio::test]
async fn bad_input_is_a_status_and_changes_nothing() {
    let s = start().await;
    let before = s.store.current_revision();
    let cms = "/api/v1/namespaces/default/configmaps";
    let (code, body) = s
        .call(
            Method::POST,
            cms,
            "application/json",
            b"{\"apiVersion\": ".to_vec(),
        )
        .await;
    assert_eq!(code, 400);
    assert_status(&body, 400, "BadRequest");
    let (code, body) = s
        .call(Method::POST, cms, "application/yaml", b"a: [1\n b".to_vec())
        .await;
    assert_eq!(code, 400, "{body}");
    assert_status(&body, 400, "BadRequest");
    let mut wrong = configmap("x", json!({}));
    wrong["apiVersion"] = json!("apps/v1");
    let (code, body) = s.post(cms, &wrong).await;
    assert_eq!(code, 400);
    assert!(body["message"].as_str().unwrap().contains("apps/v1"));
    let mut wrong = configmap("x", json!({}));
    wrong["kind"] = json!("Secret");
    assert_eq!(s.post(cms, &wrong).await.0, 400);
    let (code, body) = s
        .post(
            cms,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
        )
        .await;
    assert_eq!(code, 422);
    assert_status(&body, 422, "Invalid");
    assert_eq!(body["details"]["causes"][0]["field"], "metadata.name");
    let (code, body) = s.post(cms, &configmap("Bad_Name", json!({}))).await;
    assert_eq!(code, 422, "{body}");
    // A hami policy with an invalid field: 422 naming the field.
    let policy = json!({
        "apiVersion": "policy.hami.io/v1alpha1", "kind": "PropagationPolicy",
        "metadata": {"name": "bad"},
        "spec": {"resourceSelectors": [], "placement": {"replicaScheduling": {"replicaSchedulingType": "Sometimes"}}}
    });
    let (code, body) = s
        .post(
            "/apis/policy.hami.io/v1alpha1/namespaces/default/propagationpolicies",
            &policy,
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert_status(&body, 422, "Invalid");
    let causes = body["details"]["causes"].as_array().unwrap();
    assert!(!causes.is_empty());
    assert!(
        causes
            .iter()
            .all(|c| c["field"].as_str().is_some_and(|f| f.starts_with("spec"))),
        "{body}"
    );
    // Oversized body.
    let big = vec![b' '; 3 * 1024 * 1024 + 10];
    let (code, body) = s.call(Method::POST, cms, "application/json", big).await;
    assert_eq!(code, 413);
    assert_status(&body, 413, "RequestEntityTooLarge");
    // Unknown resource and path.
    let (code, body) = s
        .post("/apis/apps/v1/namespaces/default/widgets", &json!({}))
        .await;
    assert_eq!(code, 404);
    assert_status(&body, 404, "NotFound");
    assert_eq!(s.get("/nothing/here").await.0, 404);
    assert_eq!(
        s.get("/api/v1/namespaces/default/configmaps/x/scale")
            .await
            .0,
        404
    );
    assert_eq!(
        s.call(
            Method::POST,
            &format!("{cms}/x"),
            "application/json",
            b"{}".to_vec()
        )
        .await
        .0,
        405
    );
    // Garbage of every shape.
    for garbage in [
        &b"\x00\xff\xfe"[..],
        b"[]",
        b"null",
        b"42",
        b"\"s\"",
        b"{\"metadata\": 5}",
    ] {
        let (code, body) = s
            .call(Method::POST, cms, "application/json", garbage.to_vec())
            .await;
        assert!((400..500).contains(&code), "{code} {body}");
        assert_eq!(body["kind"], "Status");
    }
    assert_eq!(
        s.store.current_revision(),
        before,
        "a rejected request changed the store"
    );
    assert_eq!(s.get("/healthz").await.0, 200);
}

#[tokio::test]
async fn watch_protocol() {
    let s = start_with(
        3,
        ServerConfig {
            bookmark_interval: Duration::from_millis(200),
            ..ServerConfig::default()
        },
    )
    .await;
    let cms = "/api/v1/namespaces/default/configmaps";
    assert_eq!(
        s.post(cms, &configmap("w1", json!({"app": "x"}))).await.0,
        201
    );

    // From "now": the current state as ADDED, then live changes.
    let mut w = s
        .watch(&format!("{cms}?watch=1&labelSelector=app%3Dx"))
        .await;
    let e = next_event(&mut w).await;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("ADDED"), Some("w1"))
    );
    let (_, cm) = s.get(&format!("{cms}/w1")).await;
    let mut changed = cm.clone();
    changed["data"] = json!({"k": "2"});
    let (_, updated) = s.put(&format!("{cms}/w1"), &changed).await;
    let e = next_event(&mut w).await;
    assert_eq!(e["type"], "MODIFIED");
    assert_eq!(
        e["object"]["metadata"]["resourceVersion"],
        updated["metadata"]["resourceVersion"]
    );
    // Leaving the selector reads as DELETED; other objects stay hidden.
    assert_eq!(
        s.post(cms, &configmap("hidden", json!({"app": "y"})))
            .await
            .0,
        201
    );
    let (code, _) = s
        .patch(
            &format!("{cms}/w1"),
            "application/merge-patch+json",
            r#"{"metadata":{"labels":{"app":"z"}}}"#,
        )
        .await;
    assert_eq!(code, 200);
    let e = next_event(&mut w).await;
    assert_eq!(
        (e["type"].as_str(), e["object"]["metadata"]["name"].as_str()),
        (Some("DELETED"), Some("w1"))
    );

    // From a revision: exactly the later events, with bookmarks when allowed.
    let rv = s.store.current_revision();
    let mut w = s
        .watch(&format!(
            "/api/v1/configmaps?watch=true&resourceVersion={rv}&allowWatchBookmarks=true"
        ))
        .await;
    assert_eq!(s.delete(&format!("{cms}/hidden")).await.0, 200);
    let mut saw_delete = false;
    let mut saw_bookmark = false;
    while !(saw_delete && saw_bookmark) {
        let e = next_event(&mut w).await;
        match e["type"].as_str() {
            Some("DELETED") => {
                assert_eq!(e["object"]["metadata"]["name"], "hidden");
                saw_delete = true;
            }
            Some("BOOKMARK") => {
                assert!(
                    e["object"]["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap()
                        .parse::<u64>()
                        .unwrap()
                        >= rv
                );
                saw_bookmark = true;
            }
            other => panic!("unexpected event {other:?}: {e}"),
        }
    }

    // Too old: an ERROR event carrying 410 Expired.
    for i in 0..6 {
        assert_eq!(
            s.post(cms, &configmap(&format!("n{i}"), json!({}))).await.0,
            201
        );
    }
    let mut w = s.watch(&format!("{cms}?watch=1&resourceVersion=1")).await;
    let e = next_event(&mut w).await;
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");

    // timeoutSeconds ends the stream.
    let mut w = s
        .watch(&format!(
            "{cms}?watch=1&resourceVersion={}&timeoutSeconds=1",
            s.store.current_revision()
        ))
        .await;
    let mut line = String::new();
    let n = tokio::time::timeout(Duration::from_secs(10), w.read_line(&mut line))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "stream should end: {line}");

    // A watch on one object by name.
    let mut w = s.watch(&format!("{cms}/n1?watch=1")).await;
    let e = next_event(&mut w).await;
    assert_eq!(e["object"]["metadata"]["name"], "n1");
    s.running.shutdown().await.unwrap();
}

#[tokio::test]
async fn tables_for_kubectl() {
    let s = start().await;
    assert_eq!(s.post(DEPLOYS, &deployment("web", 2)).await.0, 201);
    let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
    let (code, bytes) = s.raw(Method::GET, DEPLOYS, "", accept, Vec::new()).await;
    assert_eq!(code, 200);
    let table: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(table["kind"], "Table");
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols.first(), Some(&"Name"));
    assert_eq!(cols.last(), Some(&"Age"));
    assert_eq!(table["rows"][0]["cells"][0], "web");
    assert_eq!(
        table["rows"][0]["object"]["metadata"]["namespace"],
        "default"
    );
    assert!(table["metadata"]["resourceVersion"].is_string());
    // A CRD's additionalPrinterColumns.
    let policy = json!({
        "apiVersion": "policy.hami.io/v1alpha1", "kind": "PropagationPolicy",
        "metadata": {"name": "pp"},
        "spec": {"priority": 7, "resourceSelectors": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}]}
    });
    let pps = "/apis/policy.hami.io/v1alpha1/namespaces/default/propagationpolicies";
    let (code, body) = s.post(pps, &policy).await;
    assert_eq!(code, 201, "{body}");
    let (_, bytes) = s
        .raw(Method::GET, &format!("{pps}/pp"), "", accept, Vec::new())
        .await;
    let table: Value = serde_json::from_slice(&bytes).unwrap();
    let cols = table["columnDefinitions"].as_array().unwrap();
    let priority = cols
        .iter()
        .position(|c| c["name"].as_str().unwrap().eq_ignore_ascii_case("priority"));
    if let Some(i) = priority {
        assert_eq!(table["rows"][0]["cells"][i], 7);
    }
    // Plain JSON when Table is not asked for.
    let (_, plain) = s.get(DEPLOYS).await;
    assert_eq!(plain["kind"], "DeploymentList");
}

#[tokio::test]
async fn metrics_count_requests() {
    let s = start().await;
    assert_eq!(
        s.get("/api/v1/namespaces/default/configmaps/none").await.0,
        404
    );
    let (code, bytes) = s.raw(Method::GET, "/metrics", "", "", Vec::new()).await;
    assert_eq!(code, 200);
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.contains(
            r#"hami_apiserver_requests_total{verb="get",resource="configmaps",code="404"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains("hami_apiserver_request_duration_seconds_bucket"));
    assert!(text.contains("hami_apiserver_store_revision"));
    assert!(text.contains("hami_apiserver_open_watches"));
    assert_eq!(
        s.raw(Method::GET, "/readyz", "", "", Vec::new()).await.0,
        200
    );
}

#[tokio::test]
async fn scale_subresource() {
    let s = start().await;
    assert_eq!(s.post(DEPLOYS, &deployment("web", 2)).await.0, 201);
    let path = format!("{DEPLOYS}/web/scale");
    let (code, scale) = s.get(&path).await;
    assert_eq!(code, 200, "{scale}");
    assert_eq!(
        (scale["kind"].as_str(), scale["spec"]["replicas"].as_i64()),
        (Some("Scale"), Some(2))
    );
    let (code, scaled) = s
        .patch(
            &path,
            "application/merge-patch+json",
            r#"{"spec":{"replicas":5}}"#,
        )
        .await;
    assert_eq!(
        (code, scaled["spec"]["replicas"].as_i64()),
        (200, Some(5)),
        "{scaled}"
    );
    let (_, d) = s.get(&format!("{DEPLOYS}/web")).await;
    assert_eq!(
        (
            d["spec"]["replicas"].as_i64(),
            d["metadata"]["generation"].as_i64()
        ),
        (Some(5), Some(2))
    );
    let mut stale = scale.clone();
    stale["spec"]["replicas"] = json!(9);
    assert_eq!(
        s.put(&path, &stale).await.0,
        409,
        "the Scale's resourceVersion is a precondition"
    );
    let (code, body) = s
        .patch(
            &path,
            "application/merge-patch+json",
            r#"{"spec":{"replicas":-1}}"#,
        )
        .await;
    assert_eq!(code, 422, "{body}");
    // Kinds without a scale subresource do not serve one.
    assert_eq!(
        s.get("/api/v1/namespaces/default/configmaps/x/scale")
            .await
            .0,
        404
    );
}

/// A Deployment with a negative replica count and a negative GPU limit.
fn bad_deployment(name: &str) -> Value {
    let mut d = deployment(name, -5);
    d["spec"]["template"]["spec"]["containers"][0]["resources"] =
        json!({"limits": {"nvidia.com/gpu": "-3"}});
    d
}

/// `(field, reason, message)` of each cause of a Status.
fn causes_of(status: &Value) -> Vec<(String, String, String)> {
    status["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap().to_owned();
            (s("field"), s("reason"), s("message"))
        })
        .collect()
}

#[tokio::test]
async fn builtin_kinds_are_validated_like_kube_apiserver() {
    let s = start().await;
    let before = s.store.current_revision();

    // Create: 422 naming every field at once, nothing stored.
    let (code, body) = s.post(DEPLOYS, &bad_deployment("train")).await;
    assert_eq!(code, 422, "{body}");
    assert_status(&body, 422, "Invalid");
    assert_eq!(
        (
            &body["details"]["kind"],
            &body["details"]["group"],
            &body["details"]["name"]
        ),
        (&json!("Deployment"), &json!("apps"), &json!("train"))
    );
    let gpu = "spec.template.spec.containers[0].resources.limits[nvidia.com/gpu]";
    assert_eq!(
        causes_of(&body),
        vec![
            (
                "spec.replicas".to_owned(),
                "FieldValueInvalid".to_owned(),
                "Invalid value: -5: must be greater than or equal to 0".to_owned()
            ),
            (
                gpu.to_owned(),
                "FieldValueInvalid".to_owned(),
                "Invalid value: \"-3\": must be greater than or equal to 0".to_owned()
            ),
        ]
    );
    assert_eq!(
        body["message"],
        format!(
            "Deployment.apps \"train\" is invalid: [spec.replicas: Invalid value: -5: must be greater than or equal to 0, {gpu}: Invalid value: \"-3\": must be greater than or equal to 0]"
        )
    );
    assert_eq!(s.get(&format!("{DEPLOYS}/train")).await.0, 404);
    assert_eq!(s.store.current_revision(), before, "nothing stored");

    // A valid Deployment is still created.
    let (code, created) = s.post(DEPLOYS, &deployment("train", 2)).await;
    assert_eq!(code, 201, "{created}");

    // Update, merge patch and JSON patch end in the same rules; the stored
    // object stays as it was.
    let path = format!("{DEPLOYS}/train");
    let revision = s.store.current_revision();
    let (code, body) = s.put(&path, &bad_deployment("train")).await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(causes_of(&body).len(), 2, "{body}");
    let (code, body) = s
        .patch(
            &path,
            "application/merge-patch+json",
            r#"{"spec":{"selector":null}}"#,
        )
        .await;
    assert_eq!(code, 422, "{body}");
    let fields: Vec<String> = causes_of(&body).into_iter().map(|c| c.0).collect();
    assert_eq!(
        fields,
        ["spec.selector", "spec.template.metadata.labels"],
        "{body}"
    );
    let (code, body) = s
        .patch(
            &path,
            "application/json-patch+json",
            r#"[{"op":"add","path":"/spec/template/spec/containers/-","value":{"name":"main","image":""}}]"#,
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        causes_of(&body),
        vec![
            (
                "spec.template.spec.containers[1].image".to_owned(),
                "FieldValueRequired".to_owned(),
                "Required value".to_owned()
            ),
            (
                "spec.template.spec.containers[1].name".to_owned(),
                "FieldValueDuplicate".to_owned(),
                "Duplicate value: \"main\"".to_owned()
            ),
        ]
    );
    assert_eq!(s.store.current_revision(), revision, "nothing stored");
    let (_, stored) = s.get(&path).await;
    assert_eq!(stored["spec"]["replicas"], 2);

    // Server-side apply of a Pod without containers: refused, not created.
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: empty\nspec:\n  containers: []\n";
    let pod_path = "/api/v1/namespaces/default/pods/empty";
    let (code, body) = s
        .patch(
            &format!("{pod_path}?fieldManager=me"),
            "application/apply-patch+yaml",
            pod,
        )
        .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(
        causes_of(&body),
        vec![(
            "spec.containers".to_owned(),
            "FieldValueRequired".to_owned(),
            "Required value".to_owned()
        )]
    );
    assert_eq!(s.get(pod_path).await.0, 404);
}

const PB: &str = "application/vnd.kubernetes.protobuf";
/// What client-go's typed clients send when configured for protobuf.
const PB_ACCEPT: &str = "application/vnd.kubernetes.protobuf, */*";

/// Each validation rule, as JSON and as protobuf bodies: the same 422 with
/// the same causes, and nothing stored.
#[tokio::test]
async fn validation_answers_the_same_for_protobuf_bodies() {
    let s = start().await;
    let container = |name: &str, image: &str, resources: Value| json!({"name": name, "image": image, "resources": resources});
    let with_containers = |name: &str, containers: Value| {
        let mut d = deployment(name, 1);
        d["spec"]["template"]["spec"]["containers"] = containers;
        d
    };
    let with_resources = |name: &str, resources: Value| {
        with_containers(name, json!([container("main", "x", resources)]))
    };
    let c0 = "spec.template.spec.containers[0]";
    let cases: Vec<(Value, Vec<String>)> = vec![
        (deployment("r", -5), vec!["spec.replicas".into()]),
        (
            with_resources("q", json!({"limits": {"nvidia.com/gpu": "-3"}})),
            vec![format!("{c0}.resources.limits[nvidia.com/gpu]")],
        ),
        (
            with_resources("m", json!({"requests": {"memory": "12zz"}})),
            vec![format!("{c0}.resources.requests[memory]")],
        ),
        (
            with_resources(
                "l",
                json!({"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}),
            ),
            vec![format!("{c0}.resources.requests")],
        ),
        (
            with_resources(
                "g",
                json!({"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "2"}}),
            ),
            vec![format!("{c0}.resources.requests")],
        ),
        (
            with_containers("n", json!([container("Main", "x", json!({}))])),
            vec![format!("{c0}.name")],
        ),
        (
            with_containers(
                "d",
                json!([
                    container("a", "x", json!({})),
                    container("a", "x", json!({}))
                ]),
            ),
            vec!["spec.template.spec.containers[1].name".into()],
        ),
        (
            with_containers("e", json!([])),
            vec!["spec.template.spec.containers".into()],
        ),
        (
            with_containers("i", json!([container("main", "", json!({}))])),
            vec![format!("{c0}.image")],
        ),
        (
            {
                let mut d = deployment("s", 1);
                d["spec"]["selector"]["matchLabels"] = json!({"app": "other"});
                d
            },
            vec!["spec.template.metadata.labels".into()],
        ),
    ];
    let before = s.store.current_revision();
    for (object, fields) in cases {
        let (code, as_json) = s.post(DEPLOYS, &object).await;
        assert_eq!(code, 422, "{as_json}");
        let got: Vec<String> = causes_of(&as_json).into_iter().map(|c| c.0).collect();
        assert_eq!(got, fields, "{as_json}");
        let body = protobuf::encode(&object).unwrap();
        let (code, bytes) = s
            .raw(Method::POST, DEPLOYS, PB, "application/json", body)
            .await;
        assert_eq!(code, 422);
        let as_pb: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(causes_of(&as_pb), causes_of(&as_json));
    }
    assert_eq!(s.store.current_revision(), before, "nothing stored");
}

/// client-go's typed clients with protobuf: bodies and answers in
/// protobuf, errors as a protobuf Status, lists as `DeploymentList`, watches
/// as length-prefixed `WatchEvent` frames; hami's own kinds stay JSON
/// (415 for a protobuf body, JSON when Accept also takes it, else 406).
#[tokio::test]
async fn protobuf_bodies_answers_lists_and_watches() {
    use futures::io::AsyncReadExt;
    let s = start().await;
    let d = deployment("pb", 2);
    let (code, bytes) = s
        .raw(
            Method::POST,
            DEPLOYS,
            PB,
            PB_ACCEPT,
            protobuf::encode(&d).unwrap(),
        )
        .await;
    assert_eq!(code, 201, "{}", String::from_utf8_lossy(&bytes));
    let created = protobuf::decode(&bytes).unwrap();
    assert_eq!(created["spec"], d["spec"]);
    assert_eq!(created["metadata"]["labels"], d["metadata"]["labels"]);
    // The same object read as JSON and as protobuf.
    let path = format!("{DEPLOYS}/pb");
    let (code, bytes) = s.raw(Method::GET, &path, "", PB_ACCEPT, Vec::new()).await;
    assert_eq!(code, 200);
    let (_, as_json) = s.get(&path).await;
    assert_eq!(protobuf::decode(&bytes).unwrap(), as_json);
    assert_eq!(created, as_json);

    // A list.
    let (code, bytes) = s.raw(Method::GET, DEPLOYS, "", PB_ACCEPT, Vec::new()).await;
    assert_eq!(code, 200);
    let list = protobuf::decode(&bytes).unwrap();
    assert_eq!(list["kind"], "DeploymentList");
    assert_eq!(list["items"][0]["metadata"]["name"], "pb");
    assert!(list["metadata"]["resourceVersion"].is_string());

    // An error is a protobuf Status.
    let (code, bytes) = s
        .raw(
            Method::POST,
            DEPLOYS,
            PB,
            PB_ACCEPT,
            protobuf::encode(&d).unwrap(),
        )
        .await;
    assert_eq!(code, 409);
    let status = protobuf::decode(&bytes).unwrap();
    assert_eq!(
        (
            status["kind"].as_str(),
            status["reason"].as_str(),
            status["code"].as_i64()
        ),
        (Some("Status"), Some("AlreadyExists"), Some(409))
    );

    // hami's kinds: 415 for a protobuf body, JSON or 406 for answers.
    let pps = "/apis/policy.hami.io/v1alpha1/namespaces/default/propagationpolicies";
    let (code, _) = s
        .raw(
            Method::POST,
            pps,
            PB,
            "",
            b"k8s\0\x0a\x2c\x0a\x17policy.hami.io/v1alpha1\x12\x11PropagationPolicy".to_vec(),
        )
        .await;
    assert_eq!(code, 415);
    let (code, bytes) = s.raw(Method::GET, pps, "", PB_ACCEPT, Vec::new()).await;
    assert_eq!(code, 200);
    let list: Value = serde_json::from_slice(&bytes).expect("JSON for a kind without protobuf");
    assert_eq!(list["kind"], "PropagationPolicyList");
    let (code, _) = s.raw(Method::GET, pps, "", PB, Vec::new()).await;
    assert_eq!(code, 406);

    // A watch: the current object as an ADDED frame, then a change.
    let req = Request::builder()
        .uri(format!("{DEPLOYS}?watch=1"))
        .header("accept", PB_ACCEPT)
        .body(Vec::new())
        .unwrap();
    let mut w = s.client.request_stream(req).await.unwrap();
    let mut next_frame = async || -> (String, Value) {
        let mut len = [0u8; 4];
        tokio::time::timeout(Duration::from_secs(10), w.read_exact(&mut len))
            .await
            .expect("a frame within 10 s")
            .unwrap();
        let mut event = vec![0u8; u32::from_be_bytes(len) as usize];
        w.read_exact(&mut event).await.unwrap();
        protobuf::decode_watch_event(&event).unwrap()
    };
    let (type_, object) = next_frame().await;
    assert_eq!(
        (type_.as_str(), &object["metadata"]["name"]),
        ("ADDED", &json!("pb"))
    );
    let (code, _) = s
        .patch(
            &path,
            "application/merge-patch+json",
            r#"{"spec":{"replicas":3}}"#,
        )
        .await;
    assert_eq!(code, 200);
    let (type_, object) = next_frame().await;
    assert_eq!(
        (type_.as_str(), &object["spec"]["replicas"]),
        ("MODIFIED", &json!(3))
    );
}

/// `dryRun=All` on create, update, patch and delete: the answer a real write
/// gives (its errors too), nothing stored; other values are refused.
#[tokio::test]
async fn dry_run_writes_answer_and_keep_nothing() {
    let s = start().await;
    let path = format!("{DEPLOYS}/web");
    let (code, created) = s
        .post(&format!("{DEPLOYS}?dryRun=All"), &deployment("web", 2))
        .await;
    assert_eq!(code, 201, "{created}");
    assert!(created["metadata"]["uid"].is_string());
    assert_eq!(s.get(&path).await.0, 404);

    let (code, _) = s.post(DEPLOYS, &deployment("web", 2)).await;
    assert_eq!(code, 201);
    let (_, stored) = s.get(&path).await;
    let revision = s.store.current_revision();
    // A dry-run create of an existing name fails as a real one would.
    let (code, body) = s
        .post(&format!("{DEPLOYS}?dryRun=All"), &deployment("web", 2))
        .await;
    assert_eq!(code, 409, "{body}");
    let mut changed = stored.clone();
    changed["spec"]["replicas"] = json!(5);
    let (code, updated) = s.put(&format!("{path}?dryRun=All"), &changed).await;
    assert_eq!(
        (code, &updated["spec"]["replicas"]),
        (200, &json!(5)),
        "{updated}"
    );
    let (code, patched) = s
        .patch(
            &format!("{path}?dryRun=All"),
            "application/merge-patch+json",
            r#"{"spec":{"replicas":-1}}"#,
        )
        .await;
    assert_eq!(code, 422, "validation runs: {patched}");
    let (code, _) = s
        .call(
            Method::DELETE,
            &format!("{path}?dryRun=All"),
            "",
            Vec::new(),
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(s.store.current_revision(), revision, "nothing written");
    assert_eq!(s.get(&path).await.1, stored);
    let (code, body) = s
        .post(&format!("{DEPLOYS}?dryRun=Some"), &deployment("x", 1))
        .await;
    assert_eq!(code, 400, "{body}");
}

/// `fieldValidation`: unknown fields of a built-in kind are never stored;
/// Strict refuses them naming each, Warn answers a Warning header per field,
/// Ignore says nothing; a bad value is refused.
#[tokio::test]
async fn field_validation_strict_warn_ignore() {
    let s = start().await;
    let cms = "/api/v1/namespaces/default/configmaps";
    let body = |name: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "colour": "red"},
               "data": {"k": "v"}, "extra": 1})
    };
    let (code, status) = s
        .post(&format!("{cms}?fieldValidation=Strict"), &body("a"))
        .await;
    assert_eq!(code, 400, "{status}");
    assert_eq!(
        status["message"],
        r#"ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: unknown field "extra", unknown field "metadata.colour""#
    );
    assert_eq!(s.get(&format!("{cms}/a")).await.0, 404);

    let req = |mode: &str, name: &str| {
        Request::builder()
            .method(Method::POST)
            .uri(format!("{cms}?fieldValidation={mode}"))
            .header("content-type", "application/json")
            .body(Body::from(body(name).to_string().into_bytes()))
            .unwrap()
    };
    let resp = s.client.send(req("Warn", "b")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let warnings: Vec<&str> = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect();
    assert_eq!(
        warnings,
        [
            r#"299 - "unknown field \"extra\"""#,
            r#"299 - "unknown field \"metadata.colour\"""#
        ]
    );
    let resp = s.client.send(req("Ignore", "c")).await.unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    assert!(resp.headers().get("warning").is_none());
    for name in ["b", "c"] {
        let (_, stored) = s.get(&format!("{cms}/{name}")).await;
        assert!(stored.get("extra").is_none() && stored["metadata"].get("colour").is_none());
        assert_eq!(stored["data"]["k"], "v");
    }
    let (code, _) = s
        .post(&format!("{cms}?fieldValidation=strict"), &body("d"))
        .await;
    assert_eq!(code, 400);
}
