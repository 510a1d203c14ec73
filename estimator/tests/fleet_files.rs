#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Fleet files are read strictly: the sample fleet parses with its GPUs, a
//! `hami sim` scenario given as a fleet is refused (it used to parse as a
//! fleet without nodes), and an unknown key, a wrong type or a missing field
//! is an error that starts with the field's path.

use hami_estimator::fleet::Fleet;

fn repo_file(path: &str) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    std::fs::read_to_string(root.join(path)).unwrap()
}

#[test]
fn the_sample_fleet_parses_with_its_gpus() {
    let fleet = Fleet::from_yaml(&repo_file("samples/fleet/gpu-members.yaml")).unwrap();
    let gpus: usize = fleet.nodes.iter().map(|n| n.gpus.len()).sum();
    assert_eq!((fleet.nodes.len(), gpus), (4, 8));
    let snapshot = fleet.snapshot(0).unwrap();
    assert_eq!(snapshot.node_views().count(), 4);
}

#[test]
fn a_sim_scenario_is_not_a_fleet() {
    let err = Fleet::from_yaml(&repo_file("samples/sim/gpu-fleet.yaml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `clusters`"), "{err}");
}

#[test]
fn errors_start_with_the_field_path() {
    let cases = [
        (
            "nodes:\n  - name: a\n    gpus:\n      - {id: g, memoryMiB: 10, slot: 2}\n",
            "fleet YAML: nodes[0].gpus[0].slot: ",
            "unknown field `slot`",
        ),
        (
            "nodes:\n  - name: a\n    gpus:\n      - {id: g, memoryMiB: lots}\n",
            "fleet YAML: nodes[0].gpus[0].memoryMiB: ",
            "invalid",
        ),
        (
            "nodes:\n  - name: a\n    taints: [{key: k}]\n",
            "fleet YAML: nodes[0].taints[0]: ",
            "missing field `effect`",
        ),
        (
            "nodes:\n  - name: a\n    unschedulable: maybe\n",
            "fleet YAML: nodes[0].unschedulable: ",
            "",
        ),
    ];
    for (text, path, what) in cases {
        let err = Fleet::from_yaml(text).unwrap_err().to_string();
        assert!(
            err.starts_with(path) && err.contains(what),
            "{text:?} -> {err}"
        );
    }
}
