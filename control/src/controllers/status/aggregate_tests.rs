use super::*;

fn target(name: &str, replicas: i32) -> TargetCluster {
    TargetCluster {
        name: name.into(),
        replicas,
    }
}

fn report(cluster: &str, status: Value) -> WorkReport {
    WorkReport {
        cluster: cluster.into(),
        generation: 2,
        template_generation: Some(5),
        applied: Some(Applied {
            ok: true,
            message: None,
            observed_generation: Some(2),
        }),
        status: Some(status),
        health: Some(ResourceHealth::Healthy),
        deleting: false,
    }
}

fn work(ns: &str, conditions: Value, manifest_statuses: Value) -> Value {
    json!({
        "apiVersion": "work.hami.io/v1alpha2", "kind": "Work",
        "metadata": {
            "name": "train-deployment-0a1b2c3d", "namespace": ns, "generation": 2,
            "annotations": {
                "work.hami.io/binding": "default/train-deployment",
                "resourcetemplate.hami.io/generation": "5",
            },
        },
        "spec": {},
        "status": {"conditions": conditions, "manifestStatuses": manifest_statuses},
    })
}

#[test]
fn reads_a_work_as_an_agent_reports_it() {
    let w = work(
        "hami-es-a",
        json!([{"type": "Applied", "status": "True", "reason": "Applied", "message": "",
                "observedGeneration": 2, "lastTransitionTime": "2025-01-01T00:00:00Z"}]),
        json!([
            {"identifier": {"ordinal": 1, "group": "", "version": "v1", "kind": "ConfigMap", "name": "x"},
             "status": {"other": true}},
            {"identifier": {"ordinal": 0, "group": "apps", "version": "v1", "kind": "Deployment",
                            "namespace": "default", "name": "train"},
             "status": {"readyReplicas": 3}, "health": "Healthy"},
        ]),
    );
    let (binding, r) = WorkReport::from_work(&w).unwrap();
    assert_eq!(binding.annotation(), "default/train-deployment");
    assert_eq!(r, report("a", json!({"readyReplicas": 3})));
    assert!(r.observed(5));
    assert!(!r.observed(6), "built from an older template generation");

    let failed = work(
        "hami-es-b",
        json!([{"type": "Applied", "status": "False", "message": "quota exceeded"}]),
        json!([]),
    );
    let (_, r) = WorkReport::from_work(&failed).unwrap();
    assert_eq!(r.cluster, "b");
    assert_eq!(r.applied.as_ref().map(|a| a.ok), Some(false));
    assert_eq!(r.status, None);
    assert!(!r.observed(5));

    assert!(
        WorkReport::from_work(&work("default", json!([]), json!([]))).is_none(),
        "not an execution namespace"
    );
    let mut orphan = work("hami-es-a", json!([]), json!([]));
    orphan["metadata"]["annotations"] = json!({});
    assert!(WorkReport::from_work(&orphan).is_none(), "no binding");
}

#[test]
fn items_follow_targets_in_name_order() {
    let mut b = report("b", json!({"readyReplicas": 1}));
    b.applied = Some(Applied {
        ok: false,
        message: Some("image pull".into()),
        observed_generation: None,
    });
    let mut gone = report("c", json!({}));
    gone.deleting = true;
    let stray = report("z", json!({"readyReplicas": 9}));
    let reports = [b, report("a", json!({"readyReplicas": 2})), gone, stray];
    let items = aggregated_items(&[target("c", 1), target("b", 1), target("a", 2)], &reports);
    let got: Vec<(&str, bool, Option<&str>, Option<&Value>)> = items
        .iter()
        .map(|i| {
            (
                i.cluster_name.as_str(),
                i.applied,
                i.applied_message.as_deref(),
                i.status.as_ref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("a", true, None, Some(&json!({"readyReplicas": 2}))),
            (
                "b",
                false,
                Some("image pull"),
                Some(&json!({"readyReplicas": 1}))
            ),
            ("c", false, None, None),
        ]
    );
    assert!(!all_observed(
        &[target("a", 1), target("b", 1)],
        &reports,
        5
    ));
    assert!(all_observed(&[target("a", 1)], &reports, 5));
    assert!(!all_observed(&[], &reports, 5), "nothing targeted");
}

#[test]
fn binding_status_sets_fully_applied_and_keeps_transition_time() {
    let ok = aggregated_items(&[target("a", 1)], &[report("a", json!({}))]);
    let s1 = binding_status(
        Some(
            &json!({"schedulerObservedGeneration": 3, "conditions": [{"type": "Scheduled", "status": "True"}]}),
        ),
        &ok,
        &[],
        "t1",
    );
    assert_eq!(s1["schedulerObservedGeneration"], 3, "other fields kept");
    assert_eq!(s1["aggregatedStatus"][0]["clusterName"], "a");
    let cond = |s: &Value| {
        s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "FullyApplied")
            .cloned()
            .unwrap()
    };
    assert_eq!(cond(&s1)["status"], "True");
    assert_eq!(cond(&s1)["lastTransitionTime"], "t1");
    assert_eq!(s1["conditions"][0]["type"], "Scheduled");
    // Same items later: nothing changes (no write).
    assert_eq!(binding_status(Some(&s1), &ok, &[], "t2"), s1);
    // A cluster not applied: False, new transition time.
    let not = aggregated_items(&[target("a", 1), target("b", 1)], &[report("a", json!({}))]);
    let s2 = binding_status(Some(&s1), &not, &[], "t3");
    assert_eq!(cond(&s2)["status"], "False");
    assert_eq!(cond(&s2)["lastTransitionTime"], "t3");
    // No targets: no items, no condition.
    let s3 = binding_status(Some(&s2), &[], &[], "t4");
    assert_eq!(s3.get("aggregatedStatus"), None);
    assert_eq!(s3["conditions"].as_array().unwrap().len(), 1);
}

#[test]
fn sums_per_kind() {
    let items = |statuses: &[Value]| -> Vec<AggregatedStatusItem> {
        let reports: Vec<WorkReport> = statuses
            .iter()
            .enumerate()
            .map(|(i, s)| report(&format!("c{i}"), s.clone()))
            .collect();
        let targets: Vec<TargetCluster> = reports.iter().map(|r| target(&r.cluster, 1)).collect();
        aggregated_items(&targets, &reports)
    };
    let cases: Vec<(&str, Vec<Value>, Value)> = vec![
        (
            "Deployment",
            vec![
                json!({"replicas": 4, "readyReplicas": 4, "availableReplicas": 3, "updatedReplicas": 4, "observedGeneration": 7}),
                json!({"replicas": 2, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 2, "unavailableReplicas": 1}),
            ],
            json!({"replicas": 6, "readyReplicas": 5, "availableReplicas": 4, "updatedReplicas": 6, "unavailableReplicas": 1}),
        ),
        (
            "StatefulSet",
            vec![
                json!({"replicas": 1, "readyReplicas": 1, "currentReplicas": 1}),
                json!({"replicas": 2}),
            ],
            json!({"replicas": 3, "readyReplicas": 1, "currentReplicas": 1}),
        ),
        (
            "DaemonSet",
            vec![
                json!({"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2, "numberAvailable": 2, "numberMisscheduled": 0}),
                json!({"desiredNumberScheduled": 5, "currentNumberScheduled": 4, "numberReady": 4, "updatedNumberScheduled": 4}),
            ],
            json!({"desiredNumberScheduled": 8, "currentNumberScheduled": 7, "numberReady": 6, "numberAvailable": 2, "updatedNumberScheduled": 4}),
        ),
        (
            "ReplicaSet",
            vec![
                json!({"replicas": 2, "fullyLabeledReplicas": 2}),
                json!({"replicas": 1, "readyReplicas": 1}),
            ],
            json!({"replicas": 3, "fullyLabeledReplicas": 2, "readyReplicas": 1}),
        ),
    ];
    for (kind, statuses, want) in cases {
        assert_eq!(
            template_status(kind, &items(&statuses), None, None),
            Some(want),
            "{kind}"
        );
    }
    assert_eq!(
        template_status("ConfigMap", &items(&[json!({})]), None, None),
        None
    );

    // Current fields kept, stale sums dropped, observedGeneration set only
    // when given.
    let current =
        json!({"readyReplicas": 9, "conditions": [{"type": "Available"}], "observedGeneration": 1});
    let s = template_status(
        "Deployment",
        &items(&[json!({"replicas": 1})]),
        None,
        Some(&current),
    )
    .unwrap();
    assert_eq!(
        s,
        json!({"replicas": 1, "conditions": [{"type": "Available"}], "observedGeneration": 1})
    );
    let s = template_status(
        "Deployment",
        &items(&[json!({"replicas": 1})]),
        Some(4),
        Some(&current),
    )
    .unwrap();
    assert_eq!(s["observedGeneration"], 4);
}

#[test]
fn jobs_complete_when_every_cluster_completes() {
    let done = |start: &str, end: &str| {
        json!({"succeeded": 2, "startTime": start, "completionTime": end,
               "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": end}]})
    };
    let running = json!({"active": 1, "succeeded": 1, "startTime": "2025-01-01T00:00:05Z"});
    let targets = [target("a", 1), target("b", 1)];
    let both = [
        report("a", done("2025-01-01T00:00:03Z", "2025-01-01T00:01:00Z")),
        report("b", done("2025-01-01T00:00:01Z", "2025-01-01T00:02:00Z")),
    ];
    let s = template_status("Job", &aggregated_items(&targets, &both), None, None).unwrap();
    // As the agent reflects a job: no conditions, a completionTime.
    let bare = [
        report(
            "a",
            json!({"succeeded": 2, "completionTime": "2025-01-01T00:03:00Z"}),
        ),
        report(
            "b",
            json!({"succeeded": 2, "completionTime": "2025-01-01T00:01:00Z"}),
        ),
    ];
    let b = template_status("Job", &aggregated_items(&targets, &bare), None, None).unwrap();
    assert_eq!(b["conditions"][0]["type"], "Complete");
    assert_eq!(b["completionTime"], "2025-01-01T00:03:00Z");
    assert_eq!(s["succeeded"], 4);
    assert_eq!(s["startTime"], "2025-01-01T00:00:01Z", "earliest start");
    assert_eq!(
        s["completionTime"], "2025-01-01T00:02:00Z",
        "latest completion"
    );
    assert_eq!(s["conditions"][0]["type"], "Complete");
    assert_eq!(
        s["conditions"][0]["lastTransitionTime"],
        "2025-01-01T00:02:00Z"
    );

    let half = [
        report("a", done("2025-01-01T00:00:03Z", "2025-01-01T00:01:00Z")),
        report("b", running),
    ];
    let s = template_status(
        "Job",
        &aggregated_items(&targets, &half),
        None,
        Some(&json!({"completionTime": "old"})),
    )
    .unwrap();
    assert_eq!(
        (s["active"].clone(), s["succeeded"].clone()),
        (json!(1), json!(3))
    );
    assert_eq!(s.get("completionTime"), None);
    assert_eq!(s.get("conditions"), None, "not complete while b runs");

    let failed = [report(
        "a",
        json!({"failed": 3, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}),
    )];
    let s = template_status("Job", &aggregated_items(&targets[..1], &failed), None, None).unwrap();
    assert_eq!(s["failed"], 3);
    assert_eq!(s["conditions"][0]["type"], "Failed");
    assert_eq!(s["conditions"][0]["reason"], "BackoffLimitExceeded");
}

#[test]
fn a_cluster_being_left_counts_until_its_work_goes() {
    // member-1 is being left (task standing, no longer a target); its old
    // copies still serve while the replacements come up in member-2.
    let targets = [target("member-2", 4)];
    let evicting = ["member-1".to_string()];
    let reports = [
        report("member-1", json!({"replicas": 2, "readyReplicas": 2})),
        report("member-2", json!({"replicas": 4, "readyReplicas": 1})),
    ];
    let items = aggregated_items(&targets, &reports);
    let leaving = evicting_items(&targets, &evicting, &reports);
    assert_eq!(leaving.len(), 1);
    let all: Vec<AggregatedStatusItem> = items.iter().chain(&leaving).cloned().collect();
    let t = template_status("Deployment", &all, None, None).unwrap();
    assert_eq!(t["readyReplicas"], 3, "old 2 + new 1");
    assert_eq!(t["replicas"], 6);
    // Listed by cluster name; FullyApplied judged on the targets only.
    let mut not_applied = leaving.clone();
    not_applied[0].applied = false;
    let s = binding_status(None, &items, &not_applied, "t1");
    assert_eq!(s["aggregatedStatus"][0]["clusterName"], "member-1");
    assert_eq!(s["aggregatedStatus"][1]["clusterName"], "member-2");
    assert_eq!(s["conditions"][0]["status"], "True");
    // A Work being deleted, or a cluster that is a target again, adds nothing.
    let mut deleting = reports.clone();
    deleting[0].deleting = true;
    assert!(evicting_items(&targets, &evicting, &deleting).is_empty());
    assert!(evicting_items(&[target("member-1", 2)], &evicting, &reports).is_empty());
    assert!(evicting_items(&targets, &[], &reports).is_empty());
}
