#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The plugin against a kubelet stand-in built from the same v1beta1 proto:
//! a Registration server on a temporary socket folder. The plugin runs
//! in-process with the fake backend; the test talks to its socket as kubelet does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use hami_api::gpu::{parse_node_devices, parse_pod_devices};
use hami_device_plugin::backend::Backend;
use hami_device_plugin::backend::nvml::NvmlBackend;
use hami_device_plugin::kubelet::uds_channel;
use hami_device_plugin::runtime::{Args, run_until};
use hami_proto::v1beta1 as pb;
use pb::device_plugin_client::DevicePluginClient;
use tokio::net::UnixListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::Channel;

/// Bound for waits that have no deadline of their own (registration, file
/// writes): generous so a loaded CI machine does not flake, but finite.
const PATIENCE: Duration = Duration::from_secs(20);

/// A kubelet stand-in that behaves as kubelet's device manager does
/// (kubernetes `pkg/kubelet/cm/devicemanager`): on start it deletes every
/// socket in the device-plugin folder (`CleanupPluginDirectory`, its own
/// stale `kubelet.sock` included) and only then serves `kubelet.sock`; in
/// `Register` it dials the plugin's socket back and asks for its options,
/// failing the registration when it cannot; a graceful stop unlinks
/// `kubelet.sock` (Go's listener does on close), a crash leaves it behind.
struct Kubelet {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    socket: PathBuf,
}

struct Registrar {
    dir: PathBuf,
    registered: mpsc::UnboundedSender<pb::RegisterRequest>,
}

#[tonic::async_trait]
impl pb::registration_server::Registration for Registrar {
    async fn register(
        &self,
        request: tonic::Request<pb::RegisterRequest>,
    ) -> Result<tonic::Response<pb::Empty>, tonic::Status> {
        let request = request.into_inner();
        if request.version != "v1beta1" {
            return Err(tonic::Status::invalid_argument("unsupported version"));
        }
        // Kubelet connects to the plugin inside Register.
        let endpoint = self.dir.join(&request.endpoint);
        let dial = async {
            let channel = uds_channel(&endpoint).await.map_err(|e| e.to_string())?;
            DevicePluginClient::new(channel)
                .get_device_plugin_options(pb::Empty {})
                .await
                .map_err(|e| e.to_string())
        };
        match tokio::time::timeout(Duration::from_secs(5), dial).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(tonic::Status::unknown(format!(
                    "failed to dial device plugin: {e}"
                )));
            }
            Err(_) => {
                return Err(tonic::Status::unknown(
                    "failed to dial device plugin: timeout",
                ));
            }
        }
        let _ = self.registered.send(request);
        Ok(tonic::Response::new(pb::Empty {}))
    }
}

fn start_kubelet(socket: &Path, tx: mpsc::UnboundedSender<pb::RegisterRequest>) -> Kubelet {
    use std::os::unix::fs::FileTypeExt;
    let dir = socket.parent().unwrap().to_path_buf();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_socket() {
            std::fs::remove_file(entry.path()).unwrap();
        }
    }
    let listener = UnixListener::bind(socket).unwrap();
    let (stop, mut stop_rx) = watch::channel(false);
    let registrar = Registrar {
        dir,
        registered: tx,
    };
    let task = tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(pb::registration_server::RegistrationServer::new(registrar))
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            })
            .await
            .unwrap();
    });
    Kubelet {
        stop,
        task,
        socket: socket.to_path_buf(),
    }
}

impl Kubelet {
    /// A graceful stop: the socket goes with the server.
    async fn stop(self) {
        let socket = self.socket.clone();
        self.crash().await;
        let _ = std::fs::remove_file(socket);
    }

    /// A crash: the server is gone, its socket file stays behind.
    async fn crash(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

struct Plugin {
    stop: watch::Sender<bool>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Plugin {
    async fn stop(self) {
        self.stop.send(true).unwrap();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

fn args(dir: &Path, extra: &[&str]) -> Args {
    let mut argv: Vec<String> = [
        "hami-device-plugin",
        "--backend",
        "fake",
        "--fake-devices",
        dir.join("gpus.yaml").to_str().unwrap(),
        "--kubelet-socket",
        dir.join("kubelet.sock").to_str().unwrap(),
        "--inventory",
        "file",
        "--inventory-file",
        dir.join("inventory.json").to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    argv.extend(extra.iter().map(|s| s.to_string()));
    Args::try_parse_from(argv).unwrap()
}

fn start_plugin(dir: &Path, extra: &[&str]) -> Plugin {
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(run_until(args(dir, extra), rx));
    Plugin { stop, task }
}

fn gpus_yaml(b_health: &str) -> String {
    format!(
        "devices:\n\
         - {{uuid: GPU-aaaa, model: NVIDIA A100-SXM4-40GB, memoryMiB: 16000, numa: 0}}\n\
         - {{uuid: GPU-bbbb, model: Tesla T4, memoryMiB: 8000, numa: 1, health: {b_health}}}\n"
    )
}

async fn next_registration(
    rx: &mut mpsc::UnboundedReceiver<pb::RegisterRequest>,
) -> pb::RegisterRequest {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("plugin did not register in time")
        .unwrap()
}

async fn client(dir: &Path, endpoint: &str) -> DevicePluginClient<Channel> {
    DevicePluginClient::new(uds_channel(&dir.join(endpoint)).await.unwrap())
}

async fn wait_for_file(path: &Path, accept: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && accept(&text)
        {
            return text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} never matched",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn envs(resp: &pb::ContainerAllocateResponse) -> BTreeMap<&str, &str> {
    resp.envs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn ids(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn write_atomically(path: &Path, text: &str) {
    let tmp: PathBuf = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_gpus_register_list_allocate_flip_health_and_survive_kubelet_restart() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("gpus.yaml"), gpus_yaml("Healthy")).unwrap();
    let (reg_tx, mut reg_rx) = mpsc::unbounded_channel();
    let kubelet = start_kubelet(&dir.join("kubelet.sock"), reg_tx.clone());
    let plugin = start_plugin(dir, &["--device-split-count", "4"]);

    let reg = next_registration(&mut reg_rx).await;
    assert_eq!(reg.version, "v1beta1");
    assert_eq!(reg.resource_name, "nvidia.com/gpu");
    assert_eq!(reg.endpoint, "hami-nvidia.sock");
    assert!(reg.options.unwrap().get_preferred_allocation_available);

    let mut dp = client(dir, &reg.endpoint).await;
    let options = dp
        .get_device_plugin_options(pb::Empty {})
        .await
        .unwrap()
        .into_inner();
    assert!(options.get_preferred_allocation_available);

    // ListAndWatch: 2 GPUs x 4 slots, with their NUMA nodes.
    let mut stream = dp.list_and_watch(pb::Empty {}).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    let listed: Vec<&str> = first.devices.iter().map(|d| d.id.as_str()).collect();
    assert_eq!(
        listed,
        [
            "GPU-aaaa::0",
            "GPU-aaaa::1",
            "GPU-aaaa::2",
            "GPU-aaaa::3",
            "GPU-bbbb::0",
            "GPU-bbbb::1",
            "GPU-bbbb::2",
            "GPU-bbbb::3"
        ]
    );
    assert!(first.devices.iter().all(|d| d.health == "Healthy"));
    assert_eq!(first.devices[5].topology.as_ref().unwrap().nodes[0].id, 1);

    // GetPreferredAllocation packs onto the GPU with the fewest free slots that fits.
    let available = ids(&[
        "GPU-aaaa::0",
        "GPU-aaaa::1",
        "GPU-aaaa::2",
        "GPU-bbbb::1",
        "GPU-bbbb::2",
    ]);
    let pref = dp
        .get_preferred_allocation(pb::PreferredAllocationRequest {
            container_requests: vec![pb::ContainerPreferredAllocationRequest {
                available_device_i_ds: available,
                must_include_device_i_ds: vec![],
                allocation_size: 2,
            }],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        pref.container_responses[0].device_i_ds,
        ids(&["GPU-bbbb::1", "GPU-bbbb::2"])
    );

    // Allocate two shares of one GPU and one of the other in a second container.
    let alloc = dp
        .allocate(pb::AllocateRequest {
            container_requests: vec![
                pb::ContainerAllocateRequest {
                    devices_ids: ids(&["GPU-aaaa::0", "GPU-aaaa::1"]),
                },
                pb::ContainerAllocateRequest {
                    devices_ids: ids(&["GPU-bbbb::3"]),
                },
            ],
        })
        .await
        .unwrap()
        .into_inner();
    let c0 = envs(&alloc.container_responses[0]);
    assert_eq!(c0["NVIDIA_VISIBLE_DEVICES"], "GPU-aaaa");
    assert_eq!(c0["CUDA_DEVICE_MEMORY_LIMIT_0"], "8000m");
    assert_eq!(c0["CUDA_DEVICE_SM_LIMIT"], "50");
    let c1 = envs(&alloc.container_responses[1]);
    assert_eq!(c1["NVIDIA_VISIBLE_DEVICES"], "GPU-bbbb");
    assert_eq!(c1["CUDA_DEVICE_MEMORY_LIMIT_0"], "2000m");
    assert_eq!(c1["CUDA_DEVICE_SM_LIMIT"], "25");
    let record = &alloc.container_responses[0].annotations["hami.io/vgpu-devices-allocated"];
    let parsed = parse_pod_devices(record).unwrap();
    assert_eq!(
        (
            parsed[0][0].uuid.as_str(),
            parsed[0][0].mem_mib,
            parsed[0][0].cores
        ),
        ("GPU-aaaa", 8000, 50)
    );

    // Unknown device IDs answer InvalidArgument naming the ID.
    let err = dp
        .allocate(pb::AllocateRequest {
            container_requests: vec![pb::ContainerAllocateRequest {
                devices_ids: ids(&["GPU-zzzz::0"]),
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("GPU-zzzz::0"), "{}", err.message());

    // The inventory annotation lists both GPUs, healthy.
    let inventory = dir.join("inventory.json");
    let text = wait_for_file(&inventory, |t| t.contains("GPU-bbbb")).await;
    let devices = parse_node_devices(&text).unwrap();
    assert_eq!(devices.len(), 2);
    assert!(devices.iter().all(|d| d.health && d.count == 4));

    // A health flip in the device file reaches the stream within 1 s.
    write_atomically(&dir.join("gpus.yaml"), &gpus_yaml("Unhealthy"));
    let update = tokio::time::timeout(Duration::from_secs(1), stream.message())
        .await
        .expect("health change did not reach ListAndWatch within 1 s")
        .unwrap()
        .unwrap();
    for d in &update.devices {
        let want = if d.id.starts_with("GPU-bbbb") {
            "Unhealthy"
        } else {
            "Healthy"
        };
        assert_eq!(d.health, want, "{}", d.id);
    }
    let text = wait_for_file(&inventory, |t| {
        parse_node_devices(t).is_ok_and(|d| !d[1].health)
    })
    .await;
    assert!(parse_node_devices(&text).unwrap()[0].health);

    // An unhealthy GPU is refused; a broken device file keeps the last good list.
    let err = dp
        .allocate(pb::AllocateRequest {
            container_requests: vec![pb::ContainerAllocateRequest {
                devices_ids: ids(&["GPU-bbbb::0"]),
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    write_atomically(&dir.join("gpus.yaml"), "devices: [ {uuid: broken");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let ok = dp
        .allocate(pb::AllocateRequest {
            container_requests: vec![pb::ContainerAllocateRequest {
                devices_ids: ids(&["GPU-aaaa::2"]),
            }],
        })
        .await
        .unwrap();
    assert_eq!(ok.into_inner().container_responses.len(), 1);

    // Kubelet restarts: its socket goes away and so does the plugin's
    // (kubelet clears its folder); a new kubelet comes up on the same path.
    kubelet.stop().await;
    let _ = std::fs::remove_file(dir.join("hami-nvidia.sock"));
    // The old stream ends once the plugin notices.
    let ended = tokio::time::timeout(PATIENCE, async {
        while let Ok(Some(_)) = stream.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "old ListAndWatch stream never ended");
    let kubelet = start_kubelet(&dir.join("kubelet.sock"), reg_tx);
    let again = next_registration(&mut reg_rx).await;
    assert_eq!(again.endpoint, "hami-nvidia.sock");
    let mut dp = client(dir, &again.endpoint).await;
    let mut stream = dp.list_and_watch(pb::Empty {}).await.unwrap().into_inner();
    let relisted = stream.message().await.unwrap().unwrap();
    assert_eq!(relisted.devices.len(), 8);

    plugin.stop().await;
    kubelet.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_gpus_get_visible_devices_without_share_limits() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("gpus.yaml"), gpus_yaml("Healthy")).unwrap();
    let (reg_tx, mut reg_rx) = mpsc::unbounded_channel();
    let kubelet = start_kubelet(&dir.join("kubelet.sock"), reg_tx);
    let plugin = start_plugin(dir, &["--mode", "whole", "--allocation-policy", "spread"]);
    let reg = next_registration(&mut reg_rx).await;
    let mut dp = client(dir, &reg.endpoint).await;

    let mut stream = dp.list_and_watch(pb::Empty {}).await.unwrap().into_inner();
    let listed: Vec<String> = stream
        .message()
        .await
        .unwrap()
        .unwrap()
        .devices
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(listed, ids(&["GPU-aaaa", "GPU-bbbb"]));

    let alloc = dp
        .allocate(pb::AllocateRequest {
            container_requests: vec![pb::ContainerAllocateRequest {
                devices_ids: ids(&["GPU-bbbb", "GPU-aaaa"]),
            }],
        })
        .await
        .unwrap()
        .into_inner();
    let env = envs(&alloc.container_responses[0]);
    assert_eq!(
        env.get("NVIDIA_VISIBLE_DEVICES"),
        Some(&"GPU-bbbb,GPU-aaaa")
    );
    assert!(
        env.keys().all(|k| !k.starts_with("CUDA_DEVICE_")),
        "{env:?}"
    );

    // A share-style ID is unknown in whole mode.
    let err = dp
        .allocate(pb::AllocateRequest {
            container_requests: vec![pb::ContainerAllocateRequest {
                devices_ids: ids(&["GPU-aaaa::0"]),
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("whole GPUs"), "{}", err.message());

    // Bad allocation sizes are refused, not answered with a short list.
    let err = dp
        .get_preferred_allocation(pb::PreferredAllocationRequest {
            container_requests: vec![pb::ContainerPreferredAllocationRequest {
                available_device_i_ds: ids(&["GPU-aaaa"]),
                must_include_device_i_ds: vec![],
                allocation_size: 2,
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    plugin.stop().await;
    kubelet.stop().await;
}

#[tokio::test]
async fn bad_fake_device_files_stop_the_plugin_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    let cases = [
        (
            "- {uuid: GPU-a, model: A100, memoryMiB: 0}\n",
            "memoryMiB must be greater than 0",
        ),
        (
            "- {uuid: GPU-a, model: A100, memoryMiB: 10, health: Broken}\n",
            "Broken",
        ),
        (
            "- {uuid: GPU-a, model: A100, memoryMiB: 10}\n- {uuid: GPU-a, model: A100, memoryMiB: 10}\n",
            "twice",
        ),
        ("{{{", "is not valid"),
    ];
    for (text, needle) in cases {
        std::fs::write(dir.join("gpus.yaml"), text).unwrap();
        let (_stop, rx) = watch::channel(false);
        let err = run_until(args(dir, &[]), rx).await.unwrap_err();
        let msg = format!("{err:#}");
        assert!(
            msg.contains(needle) && msg.contains("gpus.yaml"),
            "{text:?} -> {msg}"
        );
    }
    std::fs::remove_file(dir.join("gpus.yaml")).unwrap();
    let (_stop, rx) = watch::channel(false);
    let msg = format!("{:#}", run_until(args(dir, &[]), rx).await.unwrap_err());
    assert!(msg.contains("cannot read fake device file"), "{msg}");
}

/// Without a GPU the NVML backend answers one error that says how to use the
/// fake backend; with one it lists real devices. Either way it does not panic.
#[test]
fn nvml_backend_lists_gpus_or_explains_the_fake_backend() {
    match NvmlBackend::init() {
        Ok(backend) => {
            let devices = backend.list().unwrap();
            assert!(!devices.is_empty());
            assert!(
                devices
                    .iter()
                    .all(|d| !d.uuid.is_empty() && d.memory_mib > 0)
            );
        }
        Err(err) => {
            let msg = err.to_string();
            assert!(msg.contains("--backend fake --fake-devices"), "{msg}");
        }
    }
}

/// Three kubelet restarts in a row after a short (0.5 s) and three after a
/// long (3 s) downtime, graceful and crashed ones alternating: each new
/// kubelet wipes the folder before serving, and the plugin must serve again
/// after that and be registered (kubelet having dialed it back) within 2 s
/// of the new `kubelet.sock`; Allocate works after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_again_after_kubelet_restarts_that_wipe_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    std::fs::write(dir.join("gpus.yaml"), gpus_yaml("Healthy")).unwrap();
    let (reg_tx, mut reg_rx) = mpsc::unbounded_channel();
    let mut kubelet = start_kubelet(&dir.join("kubelet.sock"), reg_tx.clone());
    let plugin = start_plugin(dir, &["--device-split-count", "2"]);
    next_registration(&mut reg_rx).await;
    for downtime in [Duration::from_millis(500), Duration::from_secs(3)] {
        for round in 0..3 {
            if round % 2 == 0 {
                kubelet.stop().await;
            } else {
                kubelet.crash().await;
            }
            tokio::time::sleep(downtime).await;
            let started = tokio::time::Instant::now();
            kubelet = start_kubelet(&dir.join("kubelet.sock"), reg_tx.clone());
            let reg = tokio::time::timeout(Duration::from_secs(2), reg_rx.recv())
                .await
                .unwrap_or_else(|_| {
                    panic!("not registered within 2 s of the new kubelet.sock ({downtime:?} downtime, round {round})")
                })
                .unwrap();
            println!(
                "downtime {downtime:?} round {round}: registered {} ms after the new kubelet.sock",
                started.elapsed().as_millis()
            );
            let mut dp = client(dir, &reg.endpoint).await;
            let mut stream = dp.list_and_watch(pb::Empty {}).await.unwrap().into_inner();
            let devices = stream.message().await.unwrap().unwrap().devices;
            assert_eq!(devices.len(), 4, "2 GPUs x 2 slots");
            let allocated = dp
                .allocate(pb::AllocateRequest {
                    container_requests: vec![pb::ContainerAllocateRequest {
                        devices_ids: vec![devices[0].id.clone()],
                    }],
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(allocated.container_responses.len(), 1);
            assert!(
                !allocated.container_responses[0].envs.is_empty(),
                "Allocate answered without environment"
            );
        }
    }
    plugin.stop().await;
    kubelet.stop().await;
}
