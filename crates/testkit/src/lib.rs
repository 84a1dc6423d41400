//! Test support shared by the crates' integration and end-to-end tests: real etcd and real
//! `tugboat server` processes on free loopback ports, killed when dropped.
//!
//! Failures here panic with a message saying what to install or check: this crate only ever
//! runs inside tests.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("no free loopback port")
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
}

impl Server {
    /// Starts `binary server` (pass `env!("CARGO_BIN_EXE_tugboat")`) with `extra_args`, and waits
    /// until it answers `kubectl get --raw /readyz`.
    pub fn start(binary: &Path, extra_args: &[&str]) -> Self {
        let mut server = Self {
            binary: binary.to_owned(),
            child: None,
            data_dir: tempfile::tempdir().expect("temporary data directory"),
            port: free_port(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
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

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}
