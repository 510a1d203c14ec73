//! The contract the member-cluster simulator's binder relies on: a node
//! view lists its devices in the node's `GpuDevice` order, so indices
//! chosen by `fit::choose_devices` name devices by their UUID.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hami_estimator::{GpuDevice, NodeInfo, Snapshot};

#[test]
fn node_view_devices_follow_node_order() {
    let gpus: Vec<GpuDevice> = [40960u64, 81920, 16384, 24576]
        .iter()
        .enumerate()
        .map(|(i, mem)| GpuDevice {
            id: format!("GPU-{i}"),
            model: if i % 2 == 0 { "A" } else { "B" }.into(),
            memory_mib: *mem,
            cores: 100,
            slots: 1 + i as u32,
            healthy: true,
        })
        .collect();
    let mut snap = Snapshot::new();
    for name in ["n-b", "n-a"] {
        snap.apply_node(NodeInfo {
            name: name.into(),
            ready: true,
            gpus: gpus.clone(),
            ..NodeInfo::default()
        });
    }
    for v in snap.node_views() {
        assert_eq!(v.devices.len(), gpus.len());
        for (d, g) in v.devices.iter().zip(&gpus) {
            assert_eq!(d.total_mem, g.memory_mib);
            assert_eq!(d.slots, g.slots);
            assert_eq!(snap.model_name(d.model), g.model);
        }
    }
}
