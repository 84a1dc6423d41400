//! The agent's own containerd: configuration, start (or adoption of one still running from an
//! earlier agent), supervision (restarted when it dies; containers keep running under their
//! shims meanwhile), and the sandbox image served from a loopback registry so a fresh node runs
//! pods with no registry reachable.

use crate::AgentError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tugboat_cri::{GrpcRuntime, Runtime};

/// The registry name containerd resolves the sandbox image from; `hosts.toml` maps it to the
/// agent's loopback registry, whatever port that got.
pub const PAUSE_REGISTRY: &str = "pause.tugboat.internal";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const SUPERVISE_EVERY: Duration = Duration::from_secs(1);

pub fn sandbox_image() -> String {
    format!("{PAUSE_REGISTRY}/{}:{}", tugboat_oci::PAUSE_REPOSITORY, tugboat_oci::PAUSE_TAG)
}

/// Where one agent's containerd keeps everything.
#[derive(Debug, Clone)]
pub struct Layout {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub registry_hosts_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
    state_dir: PathBuf,
}

impl Layout {
    pub fn new(data_dir: &Path) -> Self {
        use sha2::Digest;
        let dir = data_dir.join("containerd");
        // State (sockets, mounts) belongs on /run, and unix socket paths are short: name it by
        // a hash of the data dir, so several agents on one machine never share it.
        let digest = sha2::Sha256::digest(data_dir.to_string_lossy().as_bytes());
        let tag: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
        let state_dir = PathBuf::from(format!("/run/tugboat-{tag}"));
        Self {
            socket: state_dir.join("containerd.sock"),
            registry_hosts_dir: dir.join("certs.d"),
            cni_conf_dir: data_dir.join("cni").join("net.d"),
            state_dir,
            dir,
        }
    }

    fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }

    pub fn pid_file(&self) -> PathBuf {
        self.dir.join("containerd.pid")
    }

    fn config(&self) -> String {
        let q = |p: &Path| format!("{:?}", p.to_string_lossy());
        format!(
            r#"# Written by the tugboat agent at every start; edits are lost.
version = 2
root = {root}
state = {state}
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.internal.v1.opt", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = {socket}
[ttrpc]
  address = {ttrpc}
[debug]
  address = ""
[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{sandbox}"
  # Required on hosts that refuse a negative oom_score_adj: otherwise every sandbox fails.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = {hosts}
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = {cni}
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
"#,
            root = q(&self.dir.join("root")),
            state = q(&self.state_dir),
            socket = q(&self.socket),
            ttrpc = q(&self.state_dir.join("containerd.sock.ttrpc")),
            sandbox = sandbox_image(),
            hosts = q(&self.registry_hosts_dir),
            cni = q(&self.cni_conf_dir),
        )
    }
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0 && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

fn our_containerd(layout: &Layout) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(layout.pid_file()).ok()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let config = layout.config_path();
    let ours = String::from_utf8_lossy(&cmdline).contains(config.to_string_lossy().as_ref());
    (ours && process_alive(pid)).then_some(pid)
}

fn spawn(layout: &Layout) -> Result<i32, AgentError> {
    use std::os::unix::process::CommandExt;
    let log_path = layout.dir.join("containerd.log");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(|e| AgentError::io(&log_path, e))?;
    let log_err = log.try_clone().map_err(|e| AgentError::io(&log_path, e))?;
    let mut command = std::process::Command::new("containerd");
    command.arg("--config").arg(layout.config_path()).stdin(std::process::Stdio::null()).stdout(log).stderr(log_err);
    // Its own session: the agent's signals (Ctrl-C, its death) must not take the runtime and
    // with it the node's containers down.
    command.process_group(0);
    let child = command.spawn().map_err(|e| {
        AgentError::Setup(format!("cannot start containerd: {e}; install it (scripts/install-deps.sh) or pass --container-runtime-endpoint"))
    })?;
    let pid = child.id() as i32;
    std::fs::write(layout.pid_file(), pid.to_string()).map_err(|e| AgentError::io(layout.pid_file(), e))?;
    // Reap it when it exits, so the supervisor sees it gone (not a zombie).
    std::thread::spawn(move || {
        let mut child = child;
        let _ = child.wait();
    });
    Ok(pid)
}

async fn wait_until_serving(runtime: &GrpcRuntime, layout: &Layout) -> Result<(), AgentError> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        match runtime.version().await {
            Ok(_) => return Ok(()),
            Err(error) if tokio::time::Instant::now() >= deadline => {
                return Err(AgentError::Setup(format!(
                    "containerd did not answer on {} within {}s: {error}; see {}",
                    layout.socket.display(),
                    START_TIMEOUT.as_secs(),
                    layout.dir.join("containerd.log").display()
                )))
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A running containerd of this agent and the CRI client for it.
pub struct Containerd {
    pub layout: Layout,
    pub runtime: Arc<GrpcRuntime>,
}

impl Containerd {
    /// Adopts the containerd an earlier agent started, or starts one; then keeps it running.
    pub async fn start(data_dir: &Path) -> Result<Self, AgentError> {
        let layout = Layout::new(data_dir);
        for dir in [&layout.dir, &layout.registry_hosts_dir, &layout.cni_conf_dir, &layout.state_dir] {
            std::fs::create_dir_all(dir).map_err(|e| AgentError::io(dir, e))?;
        }
        let config = layout.config();
        let config_changed = std::fs::read_to_string(layout.config_path()).map_or(true, |current| current != config);
        std::fs::write(layout.config_path(), &config).map_err(|e| AgentError::io(layout.config_path(), e))?;
        let runtime = Arc::new(GrpcRuntime::new(&layout.socket.to_string_lossy())?);
        match our_containerd(&layout) {
            Some(pid) if !config_changed => tracing::info!(pid, "adopting the running containerd"),
            Some(pid) => {
                // Restarting containerd keeps containers (they run under their shims).
                tracing::info!(pid, "restarting containerd for its new configuration");
                // SAFETY: plain kill(2) of a process we verified is our containerd.
                unsafe { libc::kill(pid, libc::SIGTERM) };
                for _ in 0..100 {
                    if !process_alive(pid) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                spawn(&layout)?;
            }
            None => {
                let _ = std::fs::remove_file(&layout.socket);
                let pid = spawn(&layout)?;
                tracing::info!(pid, socket = %layout.socket.display(), "started containerd");
            }
        }
        wait_until_serving(&runtime, &layout).await?;
        tokio::spawn(supervise(layout.clone(), runtime.clone()));
        Ok(Self { layout, runtime })
    }

    /// Serves the built-in sandbox image on loopback and makes sure containerd has it.
    pub async fn provide_sandbox_image(&self) -> Result<(), AgentError> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.map_err(|e| AgentError::Setup(format!("cannot open the sandbox image registry: {e}")))?;
        let port = listener.local_addr().map_err(|e| AgentError::Setup(e.to_string()))?.port();
        let images = vec![(tugboat_oci::PAUSE_REPOSITORY.to_owned(), tugboat_oci::PAUSE_TAG.to_owned(), tugboat_oci::pause_image())];
        tokio::spawn(tugboat_oci::serve_registry(listener, images, std::future::pending::<()>()));
        let hosts = self.layout.registry_hosts_dir.join(PAUSE_REGISTRY);
        std::fs::create_dir_all(&hosts).map_err(|e| AgentError::io(&hosts, e))?;
        let text = format!("server = \"http://127.0.0.1:{port}\"\n[host.\"http://127.0.0.1:{port}\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
        std::fs::write(hosts.join("hosts.toml"), text).map_err(|e| AgentError::io(hosts.join("hosts.toml"), e))?;
        let image = sandbox_image();
        if self.runtime.image_status(&image).await?.is_none() {
            self.runtime.pull_image(&image, None, None).await?;
            tracing::info!(%image, "sandbox image imported");
        }
        Ok(())
    }
}

/// Restarts containerd whenever it is found dead.
async fn supervise(layout: Layout, runtime: Arc<GrpcRuntime>) {
    loop {
        tokio::time::sleep(SUPERVISE_EVERY).await;
        if our_containerd(&layout).is_some() {
            continue;
        }
        tracing::warn!("containerd exited; starting it again (running containers are kept)");
        match spawn(&layout) {
            Ok(_) => {
                if let Err(error) = wait_until_serving(&runtime, &layout).await {
                    tracing::error!(%error, "containerd does not come back");
                }
            }
            Err(error) => tracing::error!(%error, "cannot restart containerd"),
        }
    }
}
