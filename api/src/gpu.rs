//! HAMi's GPU annotation formats and resource names, so that clusters that
//! already run HAMi work unchanged.
//!
//! Two annotations carry GPU state:
//!
//! - On a node, [`NODE_NVIDIA_REGISTER`] lists the node's GPUs. Current HAMi
//!   writes a JSON array of objects (`{"id", "count", "devmem", "devcore",
//!   "type", "numa", "mode", "health", ...}`; Go's `omitempty` drops zero
//!   values, so a missing `health` means unhealthy and a missing `numa` means
//!   0). Older HAMi releases wrote a colon-separated list of
//!   `id,count,devmem,devcore,type,numa,health[,index,mode]` entries, each
//!   followed by `:`. [`parse_node_devices`] accepts both.
//! - On a pod, [`POD_DEVICES_ALLOCATED`] records what the scheduler gave each
//!   container: per device `uuid,vendor,memMiB,cores`, each device followed by
//!   `:`, each container followed by `;` (so `GPU-a,NVIDIA,1000,30:;;` is two
//!   containers, the second without GPUs).
//!
//! Everything here is pure: parse errors are values, never panics.

use serde::{Deserialize, Serialize};

/// Node annotation listing the node's NVIDIA GPUs (written by the device plugin).
pub const NODE_NVIDIA_REGISTER: &str = "hami.io/node-nvidia-register";
/// Node annotation the device plugin and scheduler use as a liveness handshake.
pub const NODE_HANDSHAKE: &str = "hami.io/node-handshake";
/// Pod annotation with the devices the scheduler assigned, per container.
pub const POD_DEVICES_ALLOCATED: &str = "hami.io/vgpu-devices-allocated";
/// Pod annotation with the devices still to be handed to containers by the device plugin.
pub const POD_DEVICES_TO_ALLOCATE: &str = "hami.io/vgpu-devices-to-allocate";
/// Pod annotation naming the node the scheduler chose.
pub const POD_VGPU_NODE: &str = "hami.io/vgpu-node";
/// Pod annotation: comma-separated GPU models the pod may use (case-insensitive substring match).
pub const USE_GPU_TYPE: &str = "nvidia.com/use-gputype";
/// Pod annotation: comma-separated GPU models the pod must not use.
pub const NOUSE_GPU_TYPE: &str = "nvidia.com/nouse-gputype";
/// Pod annotation: comma-separated GPU UUIDs the pod may use.
pub const USE_GPU_UUID: &str = "nvidia.com/use-gpuuuid";
/// Pod annotation: comma-separated GPU UUIDs the pod must not use.
pub const NOUSE_GPU_UUID: &str = "nvidia.com/nouse-gpuuuid";

/// Resource: number of GPUs per container, each on a different physical device.
pub const RESOURCE_GPU: &str = "nvidia.com/gpu";
/// Resource: device memory per GPU, in MiB.
pub const RESOURCE_GPU_MEM: &str = "nvidia.com/gpumem";
/// Resource: device memory per GPU, in percent of the device's memory.
pub const RESOURCE_GPU_MEM_PERCENTAGE: &str = "nvidia.com/gpumem-percentage";
/// Resource: compute per GPU, in percent of one device (100 = exclusive use).
pub const RESOURCE_GPU_CORES: &str = "nvidia.com/gpucores";

/// Vendor string HAMi writes for NVIDIA devices in pod annotations.
pub const NVIDIA_VENDOR: &str = "NVIDIA";

/// All GPU resource names above: these are accounted per device, not as
/// plain node-level counters.
pub const GPU_RESOURCE_NAMES: [&str; 4] = [
    RESOURCE_GPU,
    RESOURCE_GPU_MEM,
    RESOURCE_GPU_MEM_PERCENTAGE,
    RESOURCE_GPU_CORES,
];

/// Why an annotation could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuAnnotationError {
    /// The node annotation is neither a JSON array nor the legacy list.
    #[error("node device annotation is not valid JSON: {0}")]
    NodeJson(String),
    /// A legacy node entry has the wrong number of fields.
    #[error("node device entry {index} has {found} fields, expected 7 or 9")]
    NodeFieldCount {
        /// Position of the entry (0-based).
        index: usize,
        /// Number of comma-separated fields found.
        found: usize,
    },
    /// A field could not be parsed.
    #[error("node device entry {index}: field {field} has invalid value {value:?}")]
    NodeField {
        /// Position of the entry (0-based).
        index: usize,
        /// Field name.
        field: &'static str,
        /// The raw text.
        value: String,
    },
    /// A device has an empty id.
    #[error("node device entry {index} has an empty id")]
    NodeEmptyId {
        /// Position of the entry (0-based).
        index: usize,
    },
    /// A pod device entry has fewer than four fields.
    #[error(
        "container {container}, device {device}: expected uuid,vendor,memMiB,cores, got {value:?}"
    )]
    PodFieldCount {
        /// Container position (0-based).
        container: usize,
        /// Device position inside the container (0-based).
        device: usize,
        /// The raw entry.
        value: String,
    },
    /// A pod device entry has a bad field.
    #[error("container {container}, device {device}: field {field} has invalid value {value:?}")]
    PodField {
        /// Container position (0-based).
        container: usize,
        /// Device position inside the container (0-based).
        device: usize,
        /// Field name.
        field: &'static str,
        /// The raw text.
        value: String,
    },
}

/// One GPU as registered on a node (HAMi's `DeviceInfo`, the fields a
/// scheduler reads). Unknown JSON fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeDevice {
    /// Device UUID, e.g. `GPU-0fc3eda5-...`.
    pub id: String,
    /// Physical index on the node.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub index: u32,
    /// Share slots: how many containers may use the device at once.
    pub count: u32,
    /// Device memory in MiB.
    pub devmem: u64,
    /// Compute in percent of one device (100 = one whole GPU).
    pub devcore: u32,
    /// Model string, e.g. `NVIDIA-Tesla V100-PCIE-32GB`.
    #[serde(rename = "type")]
    pub model: String,
    /// NUMA node.
    pub numa: i32,
    /// Sharing mode (`hami-core`, `mig`, `mps`); empty when not given.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mode: String,
    /// Whether the device is healthy (absent means false, as Go's omitempty writes it).
    pub health: bool,
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// Parses the node annotation [`NODE_NVIDIA_REGISTER`], JSON or legacy form.
/// An empty or whitespace-only value is an empty list.
pub fn parse_node_devices(value: &str) -> Result<Vec<NodeDevice>, GpuAnnotationError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Ok(Vec::new());
    }
    if trimmed.starts_with('[') || trimmed == "null" {
        let parsed: Option<Vec<NodeDevice>> = serde_json::from_str(trimmed)
            .map_err(|e| GpuAnnotationError::NodeJson(e.to_string()))?;
        let devices = parsed.unwrap_or_default();
        for (index, d) in devices.iter().enumerate() {
            if d.id.is_empty() {
                return Err(GpuAnnotationError::NodeEmptyId { index });
            }
        }
        return Ok(devices);
    }
    parse_legacy_node_devices(trimmed)
}

fn parse_legacy_node_devices(value: &str) -> Result<Vec<NodeDevice>, GpuAnnotationError> {
    let mut out = Vec::new();
    for (index, entry) in value.split(':').filter(|e| !e.is_empty()).enumerate() {
        let fields: Vec<&str> = entry.split(',').collect();
        if fields.len() != 7 && fields.len() != 9 {
            return Err(GpuAnnotationError::NodeFieldCount {
                index,
                found: fields.len(),
            });
        }
        let bad = |field: &'static str, value: &str| GpuAnnotationError::NodeField {
            index,
            field,
            value: value.to_string(),
        };
        if fields[0].is_empty() {
            return Err(GpuAnnotationError::NodeEmptyId { index });
        }
        let count = fields[1].parse().map_err(|_| bad("count", fields[1]))?;
        let devmem = fields[2].parse().map_err(|_| bad("devmem", fields[2]))?;
        let devcore = fields[3].parse().map_err(|_| bad("devcore", fields[3]))?;
        let numa = fields[5].parse().map_err(|_| bad("numa", fields[5]))?;
        let health = match fields[6] {
            "true" | "True" | "TRUE" | "1" | "t" | "T" => true,
            "false" | "False" | "FALSE" | "0" | "f" | "F" => false,
            other => return Err(bad("health", other)),
        };
        let (device_index, mode) = if fields.len() == 9 {
            let i = fields[7].parse().map_err(|_| bad("index", fields[7]))?;
            (i, fields[8].to_string())
        } else {
            (0, "hami-core".to_string())
        };
        out.push(NodeDevice {
            id: fields[0].to_string(),
            index: device_index,
            count,
            devmem,
            devcore,
            model: fields[4].to_string(),
            numa,
            mode,
            health,
        });
    }
    Ok(out)
}

/// Writes the node annotation in HAMi's current (JSON) form.
pub fn encode_node_devices(devices: &[NodeDevice]) -> String {
    // Serialising plain structs of strings and integers cannot fail.
    serde_json::to_string(devices).unwrap_or_else(|_| "[]".to_string())
}

/// One device assigned to a container.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContainerDevice {
    /// Device UUID.
    pub uuid: String,
    /// Vendor, e.g. [`NVIDIA_VENDOR`].
    pub vendor: String,
    /// Device memory used, MiB.
    pub mem_mib: u64,
    /// Compute used, percent of one device.
    pub cores: u32,
}

/// Devices per container, in container order (init containers first, as
/// HAMi writes them). A container without GPUs has an empty list.
pub type PodDevices = Vec<Vec<ContainerDevice>>;

/// Parses the pod annotation [`POD_DEVICES_ALLOCATED`]. Each `;` ends a
/// container, each `:` ends a device; a final segment without its
/// terminator is still read. An empty value means no containers.
pub fn parse_pod_devices(value: &str) -> Result<PodDevices, GpuAnnotationError> {
    let mut containers: Vec<&str> = value.split(';').collect();
    if containers.last().is_some_and(|s| s.is_empty()) {
        containers.pop();
    }
    let mut out = Vec::with_capacity(containers.len());
    for (container, text) in containers.into_iter().enumerate() {
        let mut devices = Vec::new();
        for (device, entry) in text.split(':').filter(|e| !e.is_empty()).enumerate() {
            let fields: Vec<&str> = entry.split(',').collect();
            if fields.len() < 4 || fields[0].is_empty() || fields[1].is_empty() {
                return Err(GpuAnnotationError::PodFieldCount {
                    container,
                    device,
                    value: entry.to_string(),
                });
            }
            let bad = |field: &'static str, value: &str| GpuAnnotationError::PodField {
                container,
                device,
                field,
                value: value.to_string(),
            };
            devices.push(ContainerDevice {
                uuid: fields[0].to_string(),
                vendor: fields[1].to_string(),
                mem_mib: fields[2].parse().map_err(|_| bad("memMiB", fields[2]))?,
                cores: fields[3].parse().map_err(|_| bad("cores", fields[3]))?,
            });
        }
        out.push(devices);
    }
    Ok(out)
}

/// Writes the pod annotation the way HAMi does: every device followed by
/// `:`, every container followed by `;`.
pub fn encode_pod_devices(pod: &[Vec<ContainerDevice>]) -> String {
    let mut s = String::new();
    for container in pod {
        for d in container {
            s.push_str(&d.uuid);
            s.push(',');
            s.push_str(&d.vendor);
            s.push(',');
            s.push_str(&d.mem_mib.to_string());
            s.push(',');
            s.push_str(&d.cores.to_string());
            s.push(':');
        }
        s.push(';');
    }
    s
}

/// Whether a device model passes HAMi's use/nouse type lists: each list is a
/// comma-separated set of case-insensitive substrings; an empty list means no
/// constraint.
pub fn gpu_type_allowed(model: &str, use_types: &[String], nouse_types: &[String]) -> bool {
    let upper = model.to_uppercase();
    let hit = |list: &[String]| {
        list.iter()
            .any(|t| !t.is_empty() && upper.contains(&t.to_uppercase()))
    };
    if !use_types.is_empty() && !hit(use_types) {
        return false;
    }
    nouse_types.is_empty() || !hit(nouse_types)
}

/// Splits a use/nouse annotation value into its trimmed, non-empty entries.
pub fn split_type_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn node_json_real_hami_payload() {
        // As HAMi's MarshalNodeDevices writes it: omitempty drops zeroes,
        // unknown fields (migProfiles, devicevendor, custominfo) appear.
        let v = r#"[{"id":"GPU-a","index":1,"count":10,"devmem":81920,"devcore":100,"type":"NVIDIA-NVIDIA H100 80GB HBM3","mode":"hami-core","health":true,"migProfiles":[{"name":"1g.10gb"}],"devicevendor":"NVIDIA"},
                    {"id":"GPU-b","count":10,"devmem":81920,"devcore":100,"type":"NVIDIA-NVIDIA H100 80GB HBM3","numa":1}]"#;
        let d = parse_node_devices(v).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].id, "GPU-a");
        assert_eq!(d[0].index, 1);
        assert_eq!(d[0].count, 10);
        assert_eq!(d[0].devmem, 81920);
        assert_eq!(d[0].devcore, 100);
        assert_eq!(d[0].model, "NVIDIA-NVIDIA H100 80GB HBM3");
        assert!(d[0].health);
        assert_eq!(d[1].numa, 1);
        assert!(!d[1].health, "absent health is false");
        assert_eq!(d[1].mode, "");
    }

    #[test]
    fn node_legacy_forms() {
        let v = "GPU-00552014-5c87-89ac-b1a6-7b53aa24b0ec,10,32768,100,NVIDIA-Tesla V100-PCIE-32GB,0,true:GPU-0f,10,32768,100,NVIDIA-Tesla V100-PCIE-32GB,0,false,3,mig:";
        let d = parse_node_devices(v).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].mode, "hami-core");
        assert!(d[0].health);
        assert_eq!(d[1].index, 3);
        assert_eq!(d[1].mode, "mig");
        assert!(!d[1].health);
    }

    #[test]
    fn node_malformed_inputs_are_errors() {
        let cases: &[(&str, &str)] = &[
            ("[{\"id\":\"a\",\"count\":\"ten\"}]", "json"),
            ("[{\"id\":\"a\",\"count\":-1}]", "json"),
            ("[{\"count\":1}]", "empty id"),
            ("{\"id\":\"a\"}", "legacy field count"),
            ("a,1,2,3:", "legacy field count"),
            ("a,x,2,3,T,0,true:", "count"),
            ("a,1,2,3,T,0,maybe:", "health"),
            (",1,2,3,T,0,true:", "empty id"),
            ("[1,2", "json"),
        ];
        for (input, why) in cases {
            assert!(parse_node_devices(input).is_err(), "{why}: {input}");
        }
        assert_eq!(parse_node_devices("").unwrap(), vec![]);
        assert_eq!(parse_node_devices("null").unwrap(), vec![]);
        assert_eq!(parse_node_devices("[]").unwrap(), vec![]);
    }

    #[test]
    fn node_json_round_trip() {
        let d = vec![NodeDevice {
            id: "GPU-1".into(),
            index: 2,
            count: 4,
            devmem: 24576,
            devcore: 100,
            model: "NVIDIA-L4".into(),
            numa: 0,
            mode: "hami-core".into(),
            health: true,
        }];
        let s = encode_node_devices(&d);
        assert!(s.contains("\"type\":\"NVIDIA-L4\""));
        assert_eq!(parse_node_devices(&s).unwrap(), d);
    }

    #[test]
    fn pod_devices_table() {
        let dev = |u: &str, m: u64, c: u32| ContainerDevice {
            uuid: u.into(),
            vendor: NVIDIA_VENDOR.into(),
            mem_mib: m,
            cores: c,
        };
        let cases: Vec<(&str, PodDevices)> = vec![
            ("", vec![]),
            (";", vec![vec![]]),
            ("GPU-a,NVIDIA,1000,30:;", vec![vec![dev("GPU-a", 1000, 30)]]),
            (
                "GPU-a,NVIDIA,1000,30:GPU-b,NVIDIA,2000,0:;;GPU-c,NVIDIA,5,100:;",
                vec![
                    vec![dev("GPU-a", 1000, 30), dev("GPU-b", 2000, 0)],
                    vec![],
                    vec![dev("GPU-c", 5, 100)],
                ],
            ),
            // Without trailing separators (HAMi's per-type encoder).
            (
                "GPU-a,NVIDIA,1,2:GPU-b,NVIDIA,3,4",
                vec![vec![dev("GPU-a", 1, 2), dev("GPU-b", 3, 4)]],
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse_pod_devices(input).unwrap(), want, "{input}");
        }
    }

    #[test]
    fn pod_devices_encode_matches_hami_and_round_trips() {
        let pod = vec![
            vec![ContainerDevice {
                uuid: "GPU-a".into(),
                vendor: "NVIDIA".into(),
                mem_mib: 1000,
                cores: 30,
            }],
            vec![],
        ];
        let s = encode_pod_devices(&pod);
        assert_eq!(s, "GPU-a,NVIDIA,1000,30:;;");
        assert_eq!(parse_pod_devices(&s).unwrap(), pod);
    }

    #[test]
    fn pod_malformed_inputs_are_errors() {
        for input in [
            "GPU-a,NVIDIA,1000:;",
            "GPU-a:;",
            ",NVIDIA,1,1:;",
            "GPU-a,,1,1:;",
            "GPU-a,NVIDIA,-1,1:;",
            "GPU-a,NVIDIA,1,x:;",
            "GPU-a,NVIDIA,99999999999999999999999,1:;",
        ] {
            assert!(parse_pod_devices(input).is_err(), "{input}");
        }
    }

    #[test]
    fn type_lists() {
        let l = |s: &str| split_type_list(s);
        assert!(gpu_type_allowed("NVIDIA-A100", &[], &[]));
        assert!(gpu_type_allowed("NVIDIA-A100", &l("a100, h100"), &[]));
        assert!(!gpu_type_allowed("NVIDIA-A100", &l("H100"), &[]));
        assert!(!gpu_type_allowed("NVIDIA-A100", &[], &l("A100")));
        assert!(gpu_type_allowed("NVIDIA-A100", &[], &l("V100,")));
        assert_eq!(l(" a , ,b"), vec!["a".to_string(), "b".to_string()]);
    }
}
