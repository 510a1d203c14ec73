//! The plugin's life beside kubelet: serve the DevicePlugin service on a Unix
//! socket, register with kubelet's Registration service, and start over when
//! kubelet restarts (its socket disappears or is replaced) or when the plugin's
//! own socket is wiped.
//!
//! The order follows what a real kubelet does when it starts: its device
//! manager first deletes every socket in the device-plugin folder
//! (`CleanupPluginDirectory`), then serves a new `kubelet.sock`, and inside
//! `Register` dials the plugin's socket back. So the plugin serves its socket
//! only once kubelet's socket is there, registers with a timeout, and after
//! any failure stops, serves a fresh socket and registers again, backing off.
//! The folder is watched (inotify through `notify`) so that a new kubelet
//! socket is seen at once; a poll every 200 ms is the fallback.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hami_proto::v1beta1 as pb;
use hyper_util::rt::TokioIo;
use notify::{RecursiveMode, Watcher};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Notify, watch};
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Endpoint, Server, Uri};

use crate::service::{DevicePluginService, PluginState};

/// The API version this plugin speaks.
pub const API_VERSION: &str = "v1beta1";
/// Kubelet's socket by default.
pub const DEFAULT_KUBELET_SOCKET: &str = "/var/lib/kubelet/device-plugins/kubelet.sock";

/// How often the sockets are checked. Kubelet restarts are rare; 200 ms keeps
/// re-registration prompt at negligible cost (two stat calls).
const CHECK_INTERVAL: Duration = Duration::from_millis(200);
/// First wait after a failed registration; it doubles up to the maximum.
const REGISTER_RETRY: Duration = Duration::from_millis(250);
/// Longest wait between registration attempts.
const REGISTER_RETRY_MAX: Duration = Duration::from_secs(8);
/// How long a Register call may take (kubelet dials the plugin inside it).
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a stopping server may take to close its connections.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Errors a user reads about the kubelet side.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("cannot prepare the plugin socket {path}: {source}")]
    Socket {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to {path}: {source}")]
    Connect {
        path: PathBuf,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("kubelet refused the registration: {0}")]
    Refused(tonic::Status),
}

/// Where the sockets are and what to register.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    pub kubelet_socket: PathBuf,
    /// Full path of the plugin's own socket; it must sit in kubelet's folder,
    /// since kubelet is told only its file name.
    pub plugin_socket: PathBuf,
    pub resource_name: String,
}

/// A gRPC channel over a Unix socket. The URI is required by tonic but unused.
pub async fn uds_channel(path: &Path) -> Result<Channel, KubeletError> {
    let owned = path.to_path_buf();
    Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = owned.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        }))
        .await
        .map_err(|source| KubeletError::Connect {
            path: path.to_path_buf(),
            source,
        })
}

/// Registers once with kubelet.
pub async fn register(cfg: &KubeletConfig) -> Result<(), KubeletError> {
    let channel = uds_channel(&cfg.kubelet_socket).await?;
    let endpoint = cfg
        .plugin_socket
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let request = pb::RegisterRequest {
        version: API_VERSION.to_string(),
        endpoint,
        resource_name: cfg.resource_name.clone(),
        options: Some(DevicePluginService::options()),
    };
    pb::registration_client::RegistrationClient::new(channel)
        .register(request)
        .await
        .map_err(KubeletError::Refused)?;
    Ok(())
}

/// Identity of a file: it changes when the file is replaced.
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// A running DevicePlugin server on the plugin socket.
struct RunningServer {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    socket: Option<(u64, u64)>,
}

impl RunningServer {
    fn start(cfg: &KubeletConfig, state: &Arc<PluginState>) -> Result<Self, KubeletError> {
        let path = &cfg.plugin_socket;
        let sock_err = |source| KubeletError::Socket {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(sock_err)?;
        }
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(sock_err(e)),
        }
        let listener = UnixListener::bind(path).map_err(sock_err)?;
        let socket = identity(path);
        let (stop, stop_rx) = watch::channel(false);
        let service = DevicePluginService::new(Arc::clone(state), stop_rx.clone());
        let mut shutdown = stop_rx;
        let task = tokio::spawn(async move {
            let result = Server::builder()
                .add_service(pb::device_plugin_server::DevicePluginServer::new(service))
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async move {
                    let _ = shutdown.wait_for(|s| *s).await;
                })
                .await;
            if let Err(err) = result {
                tracing::warn!(error = %err, "device plugin server ended");
            }
        });
        tracing::info!(socket = %path.display(), "device plugin serving");
        Ok(Self { stop, task, socket })
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Wakes the loop when anything in kubelet's folder changes. Without a
/// watcher (the folder cannot be watched) the loop still polls.
struct FolderWatch {
    _watcher: Option<notify::RecommendedWatcher>,
    changed: Arc<Notify>,
}

impl FolderWatch {
    fn new(dir: &Path) -> Self {
        let changed = Arc::new(Notify::new());
        let wake = Arc::clone(&changed);
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                wake.notify_one();
            }
        })
        .and_then(|mut w| w.watch(dir, RecursiveMode::NonRecursive).map(|()| w));
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(err) => {
                tracing::warn!(dir = %dir.display(), error = %err, "cannot watch the device-plugin folder; polling it every 200 ms");
                None
            }
        };
        Self {
            _watcher: watcher,
            changed,
        }
    }

    /// Until the folder changes, the poll interval passes, or shutdown.
    async fn wait(&self, shutdown: &mut watch::Receiver<bool>) {
        tokio::select! {
            () = self.changed.notified() => {}
            () = tokio::time::sleep(CHECK_INTERVAL) => {}
            Ok(_) = shutdown.wait_for(|s| *s) => {}
        }
    }
}

/// Serves, registers and re-registers until `shutdown` turns true.
pub async fn run(
    cfg: KubeletConfig,
    state: Arc<PluginState>,
    registered: Arc<AtomicBool>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), KubeletError> {
    let dir = cfg
        .plugin_socket
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    std::fs::create_dir_all(&dir).map_err(|source| KubeletError::Socket {
        path: cfg.plugin_socket.clone(),
        source,
    })?;
    let folder = FolderWatch::new(&dir);
    let mut retry = REGISTER_RETRY;
    loop {
        registered.store(false, Ordering::SeqCst);
        // Kubelet wipes the folder before it serves: wait for its socket.
        let kubelet_id = loop {
            if *shutdown.borrow() {
                return Ok(());
            }
            if let Some(id) = identity(&cfg.kubelet_socket) {
                break id;
            }
            folder.wait(&mut shutdown).await;
        };
        let server = RunningServer::start(&cfg, &state)?;
        let outcome = tokio::select! {
            r = tokio::time::timeout(REGISTER_TIMEOUT, register(&cfg)) => Some(r),
            Ok(_) = shutdown.wait_for(|s| *s) => None,
        };
        let failure = match outcome {
            None => {
                server.stop().await;
                return Ok(());
            }
            Some(Ok(Ok(()))) => None,
            Some(Ok(Err(err))) => Some(err.to_string()),
            Some(Err(_)) => Some(format!(
                "kubelet did not answer Register within {}s",
                REGISTER_TIMEOUT.as_secs()
            )),
        };
        if let Some(error) = failure {
            // Start over with a freshly served socket: kubelet may have wiped
            // this one, or be a stale socket with no kubelet behind it.
            state.metrics.registration_failures.inc();
            tracing::warn!(%error, retry_in_ms = retry.as_millis(), "registration with kubelet failed; serving again and retrying");
            server.stop().await;
            sleep_or_shutdown(retry, &mut shutdown).await;
            retry = (retry * 2).min(REGISTER_RETRY_MAX);
            continue;
        }
        retry = REGISTER_RETRY;
        registered.store(true, Ordering::SeqCst);
        state.metrics.registrations.inc();
        tracing::info!(
            kubelet = %cfg.kubelet_socket.display(),
            resource = %cfg.resource_name,
            "registered with kubelet"
        );
        // Watch both sockets; start over when either is gone or replaced.
        loop {
            folder.wait(&mut shutdown).await;
            if *shutdown.borrow() {
                registered.store(false, Ordering::SeqCst);
                server.stop().await;
                return Ok(());
            }
            if identity(&cfg.kubelet_socket) != Some(kubelet_id) {
                tracing::info!("kubelet socket gone or replaced; registering again");
                break;
            }
            if identity(&cfg.plugin_socket) != server.socket {
                tracing::info!("plugin socket removed; serving again");
                break;
            }
        }
        server.stop().await;
    }
}

async fn sleep_or_shutdown(duration: Duration, shutdown: &mut watch::Receiver<bool>) {
    tokio::select! {
        () = tokio::time::sleep(duration) => {}
        Ok(_) = shutdown.wait_for(|s| *s) => {}
    }
}
