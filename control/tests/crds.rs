//! CustomResourceDefinitions at run time, driven with the real
//! `/usr/bin/kubectl` (1.32) against `hami up --sim-clusters 2`, as a
//! platform team uses them: apply a CRD, use its kind at once, propagate the
//! CRD and its objects to members, delete the CRD.
//!
//! kubectl's own behaviour this relies on (and so tests against hami):
//! resource names resolve through discovery, which kubectl caches on disk
//! and refreshes when a name is not found (a kind added at run time is found
//! on the next command); custom resources travel as JSON (no protobuf), with
//! `fieldValidation=Strict` by default on create/apply (`--validate=warn`
//! sends Warn and prints the server's `Warning:` headers); `kubectl scale`
//! writes the `scale` subresource; `kubectl get` asks for a Table and prints
//! the CRD's additionalPrinterColumns; `kubectl delete` of a CRD waits until
//! it is gone (after its objects, behind the cleanup finalizer).
//!
//! The members are hami's simulator, which serves CRDs through the same
//! code as the control plane. A real member's kube-apiserver establishes a
//! CRD asynchronously (its objects answer 404 for a moment after the CRD
//! was created); the agent's retry of a kind its member does not serve yet,
//! checked here with a hand-made Work, is what covers that.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Hami, kubectl, kubectl_json, kubectl_ok, member_kubectl, wait_members_ready};

/// A training-job kind with a structural schema, defaults, status and scale
/// subresources, printer columns, a short name and two served versions
/// (v1 stored, v1beta1 served with strategy None).
const CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: trainingjobs.ml.example.com
spec:
  group: ml.example.com
  scope: Namespaced
  names:
    plural: trainingjobs
    singular: trainingjob
    kind: TrainingJob
    shortNames: [tj]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - {name: Image, type: string, jsonPath: .spec.image}
    - {name: Workers, type: integer, jsonPath: .spec.replicas}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [image]
            properties:
              image: {type: string, minLength: 1}
              replicas: {type: integer, minimum: 0, default: 1}
              gpusPerWorker: {type: integer, minimum: 0, maximum: 8, default: 1}
              framework: {type: string, enum: [pytorch, jax], default: pytorch}
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
"#;

const POLICIES_FOR_OBJECTS: &str = r#"
apiVersion: policy.hami.io/v1alpha1
kind: PropagationPolicy
metadata: {name: training, namespace: default}
spec:
  resourceSelectors: [{apiVersion: ml.example.com/v1, kind: TrainingJob}]
  placement: {replicaScheduling: {replicaSchedulingType: Duplicated}}
"#;

const POLICY_FOR_CRD: &str = r#"
apiVersion: policy.hami.io/v1alpha1
kind: ClusterPropagationPolicy
metadata: {name: training-crd}
spec:
  resourceSelectors:
  - {apiVersion: apiextensions.k8s.io/v1, kind: CustomResourceDefinition, name: trainingjobs.ml.example.com}
  placement: {replicaScheduling: {replicaSchedulingType: Duplicated}}
"#;

/// A Work as the binding controller writes one, for member-1.
const HANDMADE_WORK: &str = r#"
apiVersion: work.hami.io/v1alpha2
kind: Work
metadata: {name: handmade, namespace: hami-es-member-1}
spec:
  workload:
    manifests:
    - apiVersion: ml.example.com/v1
      kind: TrainingJob
      metadata: {name: handmade, namespace: default}
      spec: {image: "trainer:3", replicas: 1}
"#;

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

fn job(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: ml.example.com/v1\nkind: TrainingJob\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n"
    )
}

fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

/// Polls `probe` every 200 ms for up to `secs`; panics with its last answer.
fn wait_for(what: &str, secs: u64, mut probe: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match probe() {
            Ok(()) => return,
            Err(last) => assert!(Instant::now() < deadline, "{what}: {last}"),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_crd_applied_with_kubectl_is_served_validated_scaled_propagated_and_deleted() {
    let tmp = tempfile::tempdir().unwrap();
    let hami = Hami::start_with_args(
        &tmp.path().join("data"),
        "127.0.0.1:0",
        &["--sim-clusters", "2"],
    );
    let dir = tmp.path();
    wait_members_ready(&hami, 2);

    // The kind is served when `kubectl apply` answers: the very next
    // command finds it (kubectl refreshes its discovery on a miss).
    let crd = write(dir, "crd.yaml", CRD);
    let started = Instant::now();
    let out = kubectl_ok(&hami, &["apply", "-f", &crd]);
    assert!(out.contains("created"), "{out}");
    let out = kubectl_ok(&hami, &["get", "trainingjobs"]);
    println!(
        "kubectl get trainingjobs answered {:?} after the CRD's apply began: {out}",
        started.elapsed()
    );
    let definition = kubectl_json(&hami, &["get", "crd", "trainingjobs.ml.example.com"]);
    for type_ in ["NamesAccepted", "Established"] {
        wait_for(type_, 5, || {
            let d = kubectl_json(&hami, &["get", "crd", "trainingjobs.ml.example.com"]);
            match condition(&d, type_) {
                Some(c) if c["status"] == "True" => Ok(()),
                _ => Err(d["status"].to_string()),
            }
        });
    }
    assert!(
        definition["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "customresourcecleanup.apiextensions.k8s.io"),
        "{definition}"
    );
    // Discovery and OpenAPI know it: `kubectl explain` reads the schema.
    let out = kubectl_ok(&hami, &["api-resources", "--api-group=ml.example.com"]);
    assert!(out.contains("trainingjobs") && out.contains("tj"), "{out}");
    let out = kubectl_ok(&hami, &["explain", "trainingjobs.spec"]);
    assert!(out.contains("gpusPerWorker"), "{out}");

    // An invalid object is refused, each field named.
    let bad = write(
        dir,
        "bad.yaml",
        &job("bad", "{replicas: -1, gpusPerWorker: 9}"),
    );
    let (success, _, err) = kubectl(&hami, &["apply", "-f", &bad]);
    assert!(!success, "an invalid TrainingJob was accepted");
    for field in ["spec.replicas", "spec.gpusPerWorker", "spec.image"] {
        assert!(err.contains(field), "{field} not named: {err}");
    }
    assert!(
        err.contains("should be greater than or equal to 0"),
        "{err}"
    );
    // Defaults are filled.
    let good = write(dir, "good.yaml", &job("resnet", "{image: trainer:1}"));
    kubectl_ok(&hami, &["apply", "-f", &good]);
    let got = kubectl_json(&hami, &["get", "tj", "resnet"]);
    assert_eq!(got["spec"]["replicas"], 1, "{got}");
    assert_eq!(got["spec"]["gpusPerWorker"], 1, "{got}");
    assert_eq!(got["spec"]["framework"], "pytorch", "{got}");
    // Unknown fields: Strict (kubectl's default) refuses, Warn stores
    // without them and warns.
    let unknown = write(
        dir,
        "unknown.yaml",
        &job("bert", "{image: trainer:2, colour: red}"),
    );
    let (success, _, err) = kubectl(&hami, &["apply", "-f", &unknown]);
    assert!(!success, "Strict accepted an unknown field");
    assert!(
        err.contains(r#"unknown field \"spec.colour\""#)
            || err.contains(r#"unknown field "spec.colour""#),
        "{err}"
    );
    let (success, _, err) = kubectl(&hami, &["apply", "--validate=warn", "-f", &unknown]);
    assert!(success, "{err}");
    assert!(
        err.contains("Warning") && err.contains("spec.colour"),
        "{err}"
    );
    let got = kubectl_json(&hami, &["get", "tj", "bert"]);
    assert!(got["spec"].get("colour").is_none(), "{got}");
    // Printer columns.
    let out = kubectl_ok(&hami, &["get", "trainingjobs"]);
    let header = out.lines().next().unwrap_or_default();
    assert!(
        header.contains("IMAGE") && header.contains("WORKERS"),
        "{out}"
    );
    assert!(out.contains("trainer:1"), "{out}");
    // The scale subresource.
    kubectl_ok(&hami, &["scale", "trainingjob/resnet", "--replicas=3"]);
    let got = kubectl_json(&hami, &["get", "tj", "resnet"]);
    assert_eq!(got["spec"]["replicas"], 3, "{got}");
    // The status subresource: the main resource ignores status.
    let (success, _, err) = kubectl(
        &hami,
        &[
            "patch",
            "tj",
            "resnet",
            "--type=merge",
            "-p",
            r#"{"status":{"replicas":7}}"#,
        ],
    );
    assert!(success, "{err}");
    assert!(kubectl_json(&hami, &["get", "tj", "resnet"])["status"]["replicas"].is_null());
    kubectl_ok(
        &hami,
        &[
            "patch",
            "tj",
            "resnet",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"replicas":3,"selector":"job=resnet"}}"#,
        ],
    );
    let scale: Value = serde_json::from_str(&kubectl_ok(
        &hami,
        &[
            "get",
            "--raw",
            "/apis/ml.example.com/v1/namespaces/default/trainingjobs/resnet/scale",
        ],
    ))
    .unwrap();
    assert_eq!(scale["status"]["replicas"], 3, "{scale}");
    assert_eq!(scale["status"]["selector"], "job=resnet", "{scale}");
    // Read through the other served version: only apiVersion differs.
    let beta = kubectl_json(
        &hami,
        &["get", "trainingjobs.v1beta1.ml.example.com", "resnet"],
    );
    assert_eq!(beta["apiVersion"], "ml.example.com/v1beta1", "{beta}");
    assert_eq!(beta["spec"]["replicas"], 3, "{beta}");

    // A Work carrying a TrainingJob reaches member-1 before the member
    // serves the kind (written here by hand, as the binding controller
    // writes one): the agent keeps retrying it and says why on the Work.
    let work = write(dir, "work.yaml", HANDMADE_WORK);
    kubectl_ok(&hami, &["apply", "-f", &work]);
    let applied = |hami: &Hami| {
        let w = kubectl_json(hami, &["get", "work", "handmade", "-n", "hami-es-member-1"]);
        condition(&w, "Applied").cloned().unwrap_or_default()
    };
    wait_for("the Work says the member lacks the kind", 60, || {
        let c = applied(&hami);
        if c["status"] == "False"
            && c["message"]
                .as_str()
                .is_some_and(|m| m.contains("unknown to the member"))
        {
            Ok(())
        } else {
            Err(c.to_string())
        }
    });
    // The objects are selected before any member serves their kind: the
    // scheduler's API-enablement filter keeps them back.
    let policies = write(dir, "pp.yaml", POLICIES_FOR_OBJECTS);
    kubectl_ok(&hami, &["apply", "-f", &policies]);
    wait_for("the binding waits for members serving the kind", 30, || {
        let (ok, out, err) = kubectl(&hami, &["get", "rb", "resnet-trainingjob", "-o", "json"]);
        let rb: Value = serde_json::from_str(&out).unwrap_or_default();
        match condition(&rb, "Scheduled") {
            Some(c)
                if ok
                    && c["status"] == "False"
                    && c["message"].as_str().is_some_and(|m| {
                        m.contains("did not serve ml.example.com/v1 TrainingJob")
                    }) =>
            {
                Ok(())
            }
            _ => Err(format!("{out} {err}")),
        }
    });
    // Then the CRD itself (a ClusterPropagationPolicy selecting it). Each
    // agent's discovery reports the new kind in its Cluster's
    // apiEnablements, one member after the other: the first makes the
    // Duplicated binding schedulable, the second widens it.
    let crd_policy = write(dir, "cpp.yaml", POLICY_FOR_CRD);
    kubectl_ok(&hami, &["apply", "-f", &crd_policy]);
    wait_for(
        "the hand-made Work applied once the kind is served",
        60,
        || {
            let c = applied(&hami);
            if c["status"] == "True" {
                Ok(())
            } else {
                Err(c.to_string())
            }
        },
    );
    let (ok, out, err) = member_kubectl(&hami, "member-1", &["get", "tj", "handmade"]);
    assert!(ok, "{out} {err}");
    for member in ["member-1", "member-2"] {
        wait_for(&format!("{member} holds the TrainingJobs"), 60, || {
            let (ok, out, err) =
                member_kubectl(&hami, member, &["get", "trainingjobs", "-o", "name"]);
            if ok
                && out.contains("trainingjob.ml.example.com/resnet")
                && out.contains("trainingjob.ml.example.com/bert")
            {
                Ok(())
            } else {
                Err(format!("{out} {err}"))
            }
        });
        let (_, out, _) = member_kubectl(&hami, member, &["get", "tj", "resnet", "-o", "json"]);
        let on_member: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(on_member["spec"]["replicas"], 3, "{on_member}");
    }

    // Refused CRDs: a group hami serves itself, and CEL rules.
    let apps = write(
        dir,
        "apps.yaml",
        &CRD.replace("trainingjobs.ml.example.com", "trainingjobs.apps")
            .replace("group: ml.example.com", "group: apps"),
    );
    let (success, _, err) = kubectl(&hami, &["apply", "-f", &apps]);
    assert!(!success && err.contains("served by hami itself"), "{err}");
    let cel = write(
        dir,
        "cel.yaml",
        &CRD.replace("trainingjobs", "evaljobs")
            .replace("trainingjob", "evaljob")
            .replace("TrainingJob", "EvalJob")
            .replace("shortNames: [tj]", "shortNames: [ej]")
            .replace(
                "            required: [image]\n",
                "            required: [image]\n            x-kubernetes-validations: [{rule: \"self.replicas >= 0\"}]\n",
            ),
    );
    let (success, _, err) = kubectl(&hami, &["apply", "-f", &cel]);
    assert!(!success && err.contains("CEL"), "{err}");

    // `hami crds` installs into hami itself (its kinds are served already:
    // accepted, nothing changes).
    let out = Command::new(env!("CARGO_BIN_EXE_hami"))
        .arg("crds")
        .output()
        .unwrap();
    assert!(out.status.success());
    let own = write(dir, "own.yaml", &String::from_utf8(out.stdout).unwrap());
    let out = kubectl_ok(&hami, &["apply", "-f", &own]);
    assert!(out.contains("propagationpolicies.policy.hami.io"), "{out}");
    kubectl_ok(&hami, &["get", "pp", "-A"]);
    kubectl_ok(
        &hami,
        &["delete", "crd", "propagationpolicies.policy.hami.io"],
    );
    let out = kubectl_ok(&hami, &["get", "pp", "-A"]);
    assert!(
        out.contains("training"),
        "hami's own objects were deleted: {out}"
    );

    // Deleting the CRD deletes its objects, then stops serving the kind.
    kubectl_ok(
        &hami,
        &[
            "delete",
            "crd",
            "trainingjobs.ml.example.com",
            "--timeout=60s",
        ],
    );
    let (success, _, err) = kubectl(&hami, &["get", "trainingjobs"]);
    // kubectl answers from its cached discovery (`Unable to list ...: the
    // server could not find the requested resource`) or, once refreshed,
    // `the server doesn't have a resource type`: either way, 404.
    assert!(
        !success
            && (err.contains("the server doesn't have a resource type")
                || err.contains("could not find the requested resource")),
        "{err}"
    );
    // Applied again: no object came back (they were deleted, not hidden).
    kubectl_ok(&hami, &["apply", "-f", &crd]);
    let listed = kubectl_json(&hami, &["get", "trainingjobs", "-A"]);
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
}

#[test]
fn crds_and_their_objects_survive_kill_9() {
    let tmp = tempfile::tempdir().unwrap();
    let mut hami = Hami::start(&tmp.path().join("data"), "127.0.0.1:0");
    let dir = tmp.path();
    let crd = write(dir, "crd.yaml", CRD);
    kubectl_ok(&hami, &["apply", "-f", &crd]);
    let good = write(
        dir,
        "good.yaml",
        &job("resnet", "{image: trainer:1, replicas: 4}"),
    );
    kubectl_ok(&hami, &["apply", "-f", &good]);

    hami.restart();
    // Served from the first request after the restart.
    let got = kubectl_json(&hami, &["get", "tj", "resnet"]);
    assert_eq!(got["spec"]["replicas"], 4, "{got}");
    let d = kubectl_json(&hami, &["get", "crd", "trainingjobs.ml.example.com"]);
    assert_eq!(
        condition(&d, "Established").map(|c| c["status"].clone()),
        Some(Value::from("True")),
        "{d}"
    );
    // Still validated.
    let bad = write(dir, "bad.yaml", &job("bad", "{image: x, replicas: -2}"));
    let (success, _, err) = kubectl(&hami, &["apply", "-f", &bad]);
    assert!(!success && err.contains("spec.replicas"), "{err}");
}
