//! Test support shared by the crates' integration and end-to-end tests: real etcd and real
//! `tugboat server` processes on free loopback ports, killed when dropped.
//!
//! Failures here panic with a message saying what to install or check: this crate only ever
//! runs inside tests.

pub mod in_process;
pub mod registry;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free loopback port")
}

/// Polls the async `probe` every 50 ms (400 times at most) until `check` holds for its answer;
/// panics with the last answer otherwise. Bounded by a count, not a clock assertion.
pub async fn eventually<T: std::fmt::Debug>(what: &str, mut probe: impl AsyncFnMut() -> T, check: impl Fn(&T) -> bool) -> T {
    let mut last = probe().await;
    for _ in 0..400 {
        if check(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = probe().await;
    }
    panic!("never reached: {what}; last seen: {last:#?}");
}

/// Polls `ready` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ready()
}

fn find_binary(name: &str) -> PathBuf {
    let candidates = [format!("/usr/bin/{name}"), format!("/usr/local/bin/{name}")];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("`{name}` is not installed; run scripts/test.sh (or scripts/setup.sh), which installs it"))
}

/// A real single-member etcd v3 on loopback, with its own data directory.
pub struct Etcd {
    child: Child,
    _dir: tempfile::TempDir,
    pub endpoint: String,
}

impl Etcd {
    pub fn start() -> Self {
        let binary = find_binary("etcd");
        let dir = tempfile::tempdir().expect("temporary directory for etcd");
        let (client, peer) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("etcd log file");
        let child = Command::new(binary)
            .args(["--name", "test", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &client_url, "--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url, "--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("test={peer_url}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("etcd failed to start");
        let etcd = Self { child, _dir: dir, endpoint: client_url };
        let address = format!("127.0.0.1:{client}");
        assert!(
            wait_until(Duration::from_secs(20), || etcd_healthy(&address)),
            "etcd did not report healthy on {address} within 20 s"
        );
        etcd
    }
}

/// etcd's own health endpoint says `"health":"true"` once it serves requests.
fn etcd_healthy(address: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(address) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n").is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.contains("\"health\":\"true\"")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real `tugboat server` process on a free port with a temporary data directory.
pub struct Server {
    binary: PathBuf,
    child: Option<Child>,
    pub data_dir: tempfile::TempDir,
    pub port: u16,
    extra_args: Vec<String>,
    /// The node name of the server's own agent, when it runs one.
    pub node_name: Option<String>,
}

impl Server {
    /// Starts `binary server` (pass `env!("CARGO_BIN_EXE_tugboat")`) as a bare control plane — no
    /// node agent, scheduler or controllers — with `extra_args`, and waits until it answers `kubectl get --raw
    /// /readyz`.
    pub fn start(binary: &Path, extra_args: &[&str]) -> Self {
        let mut args = vec!["--disable-agent", "--disable-scheduler", "--disable-controllers"];
        args.extend_from_slice(extra_args);
        Self::launch_new(binary, &args, None)
    }

    /// Starts `binary server` as a control plane with its scheduler and controllers, but no node
    /// agent.
    pub fn start_control_plane(binary: &Path, extra_args: &[&str]) -> Self {
        let mut args = vec!["--disable-agent"];
        args.extend_from_slice(extra_args);
        Self::launch_new(binary, &args, None)
    }

    /// Starts `binary server` with its node agent (its own containerd under the data dir, a
    /// node named after the port), scheduler and controllers, and waits until the Node is Ready. On drop, the node's pods
    /// are stopped and its containerd with them.
    pub fn start_with_agent(binary: &Path, extra_args: &[&str]) -> Self {
        let port = free_port();
        let node_name = format!("node-{port}");
        let agent_port = free_port().to_string();
        // Servers of parallel tests are separate clusters on one host: each needs pod networks
        // of its own, or their bridges would claim the same subnet.
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let index = (std::process::id() * 7 + STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)) % 64;
        let cluster_cidr = format!("10.{}.0.0/16", 128 + index);
        let mut args = vec!["--node-name", &node_name, "--agent-port", &agent_port, "--cluster-cidr", &cluster_cidr];
        args.extend_from_slice(extra_args);
        let server = Self::launch_new(binary, &args, Some(node_name.clone()));
        let ready = wait_until(Duration::from_secs(60), || {
            let output = server.kubectl(&["get", "node", &node_name, "-o", "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}"]);
            String::from_utf8_lossy(&output.stdout) == "True"
        });
        assert!(ready, "the node agent did not report a Ready node within 60 s; log:\n{}", server.log());
        server
    }

    fn launch_new(binary: &Path, extra_args: &[&str], node_name: Option<String>) -> Self {
        let mut server = Self {
            binary: binary.to_owned(),
            child: None,
            data_dir: tempfile::tempdir().expect("temporary data directory"),
            port: free_port(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            node_name,
        };
        server.launch();
        server
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.path().join("admin.kubeconfig")
    }

    fn launch(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.data_dir.path().join("server.log"))
            .expect("server log file");
        let child = Command::new(&self.binary)
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(["--bind-address", "127.0.0.1", "--secure-port", &self.port.to_string()])
            .args(&self.extra_args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tugboat server failed to start");
        self.child = Some(child);
        let ready = wait_until(Duration::from_secs(30), || {
            self.kubeconfig().exists() && self.kubectl(&["get", "--raw", "/readyz"]).status.success()
        });
        assert!(ready, "tugboat server did not become ready within 30 s; log:\n{}", self.log());
    }

    /// The server process's id, for reading its memory use.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The server's log so far (to explain a failure).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }

    /// Stops the server with SIGKILL: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the server and starts it again on the same data directory and port.
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    /// Runs the installed kubectl against this server, with no flags but the kubeconfig.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with_stdin(args, None)
    }

    pub fn kubectl_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut child = Command::new(find_binary("kubectl"))
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.data_dir.path())
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl failed to start");
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).expect("writing kubectl's stdin");
        }
        child.wait_with_output().expect("kubectl did not finish")
    }

    /// Runs kubectl and returns its stdout, panicking with its stderr if it failed.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(
            output.status.success(),
            "kubectl {} failed: {}\nserver log tail:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr),
            tail(&self.log(), 30)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `kubectl apply -f -` of a manifest, panicking with kubectl's error if it fails.
    pub fn apply(&self, manifest: &str) {
        let output = self.kubectl_with_stdin(&["apply", "-f", "-"], Some(manifest));
        assert!(output.status.success(), "apply failed: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// Starts a long-running kubectl (e.g. `get -w`) writing to a file; returns the child and
    /// the file path.
    pub fn kubectl_background(&self, args: &[&str], output_name: &str) -> (Child, PathBuf) {
        let path = self.data_dir.path().join(output_name);
        let file = std::fs::File::create(&path).expect("kubectl output file");
        let child = Command::new(find_binary("kubectl"))
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HOME", self.data_dir.path())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl failed to start");
        (child, path)
    }
}

/// A real `tugboat sim` process simulating nodes against a server; killed (its nodes' heartbeats
/// stop, as with a dead kubelet) when dropped or by [`Sim::kill`].
pub struct Sim {
    child: Option<Child>,
}

impl Sim {
    /// Starts `binary sim --kubeconfig <server's> <args>`, logging to `sim-<n>.log` in the
    /// server's data directory. It returns at once; the nodes register within moments.
    pub fn start(binary: &Path, server: &Server, args: &[&str]) -> Self {
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = std::fs::File::create(server.data_dir.path().join(format!("sim-{n}.log"))).expect("simulator log file");
        let child = Command::new(binary)
            .arg("sim")
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .args(args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("tugboat sim failed to start");
        Self { child: Some(child) }
    }

    /// Stops the simulator with SIGKILL: its nodes' heartbeats stop at once.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The last `lines` lines of `text` (of a log, for a failure message).
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.node_name.is_some() && self.child.is_some() {
            self.stop_node_pods();
        }
        self.kill9();
        self.stop_containerd();
    }
}

impl Server {
    /// Force-deletes every pod and waits (bounded) until the agent has stopped their containers,
    /// so a test leaves no containers, network namespaces or mounts behind.
    fn stop_node_pods(&self) {
        let _ = self.kubectl(&["delete", "pods", "--all", "-A", "--grace-period=0", "--force", "--wait=false"]);
        let tasks = self.containerd_state_dir().map(|d| d.join("io.containerd.runtime.v2.task").join("k8s.io"));
        wait_until(Duration::from_secs(20), || {
            tasks.as_ref().is_none_or(|dir| std::fs::read_dir(dir).map(|mut entries| entries.next().is_none()).unwrap_or(true))
        });
    }

    /// The agent's containerd keeps its state where its config says (`state = "..."`).
    pub fn containerd_state_dir(&self) -> Option<PathBuf> {
        agent_containerd_state_dir(&self.data_dir.path().join("agent"))
    }

    /// The pid of the agent's containerd, while it runs.
    pub fn containerd_pid(&self) -> Option<i32> {
        agent_containerd_pid(&self.data_dir.path().join("agent"))
    }

    fn stop_containerd(&self) {
        stop_agent_runtime(&self.data_dir.path().join("agent"));
    }
}

/// The state dir of the containerd of the agent with data dir `agent_dir` (from its config).
pub fn agent_containerd_state_dir(agent_dir: &Path) -> Option<PathBuf> {
    let config = std::fs::read_to_string(agent_dir.join("containerd/config.toml")).ok()?;
    let line = config.lines().find(|l| l.starts_with("state = "))?;
    Some(PathBuf::from(line.trim_start_matches("state = ").trim_matches('"')))
}

/// The pid of the containerd of the agent with data dir `agent_dir`.
pub fn agent_containerd_pid(agent_dir: &Path) -> Option<i32> {
    std::fs::read_to_string(agent_dir.join("containerd/containerd.pid")).ok()?.trim().parse().ok()
}

/// Stops what a node agent with data dir `agent_dir` leaves running by design (its containerd),
/// and what a test must not leave behind: containers the agent could not stop in time, their
/// mounts, the runtime's state dir and the node's CNI bridge.
pub fn stop_agent_runtime(agent_dir: &Path) {
    let Some(pid) = agent_containerd_pid(agent_dir) else { return };
    let _ = Command::new("kill").arg(pid.to_string()).status();
    wait_until(Duration::from_secs(10), || !Path::new(&format!("/proc/{pid}")).exists());
    // Containers the agent could not stop in time (their shims name this containerd's
    // socket) go too: a test must not leave processes behind.
    if let Some(state) = agent_containerd_state_dir(agent_dir) {
        let socket = state.join("containerd.sock");
        // (The pattern must not start with '-', or pgrep takes it for an option.)
        let shims = Command::new("pgrep").arg("-f").arg(format!("address {}", socket.display())).output();
        for shim in shims.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default().split_whitespace() {
            let _ = Command::new("pkill").args(["-9", "-P", shim]).status();
            let _ = Command::new("kill").args(["-9", shim]).status();
        }
        // And the mounts (rootfs, shm) their abrupt end left.
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let prefix = state.to_string_lossy().into_owned();
        let mut points: Vec<&str> = mounts.lines().filter_map(|l| l.split_whitespace().nth(1)).filter(|p| p.starts_with(&prefix)).collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = Command::new("umount").args(["-l", point]).status();
        }
        let _ = std::fs::remove_dir_all(&state);
    }
    // The CNI bridge outlives its pods; it goes with the node.
    let cni = std::fs::read_to_string(agent_dir.join("cni/net.d/10-tugboat.conflist")).unwrap_or_default();
    if let Some(bridge) = cni.split("\"bridge\": \"").nth(1).and_then(|rest| rest.split('"').next()) {
        let _ = Command::new("ip").args(["link", "delete", bridge]).stderr(Stdio::null()).status();
    }
}
