//! Locating external tools; a missing tool fails the test with the command that installs it.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output};
use std::time::{Duration, Instant};

/// The path of `name`, or a panic saying how to install it (never a silent skip).
pub fn require(name: &str, install_hint: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join(name))
        .find(|path| path.is_file());
    found.unwrap_or_else(|| panic!("{name} is not installed; install it with: {install_hint}"))
}

/// `skopeo`, the independent checker.
pub fn skopeo() -> PathBuf {
    require("skopeo", "apt-get install -y skopeo")
}

/// The raw manifest bytes skopeo sees at `reference` (`host:port/repo:tag`), TLS checks off.
pub fn skopeo_raw(reference: &str, extra: &[&str]) -> Vec<u8> {
    let output = Command::new(skopeo())
        .args(["inspect", "--raw", "--tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo runs");
    assert!(output.status.success(), "skopeo inspect {reference} failed: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// The sha256 digest of the manifest skopeo fetches at `reference`.
pub fn skopeo_digest(reference: &str, extra: &[&str]) -> String {
    ocync::oci::Digest::sha256_of(&skopeo_raw(reference, extra)).to_string()
}

/// A free TCP port on 127.0.0.1 (bound and released; the caller binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port").local_addr().expect("local addr").port()
}

/// An `ocync.yaml` in a temp dir that lives as long as this value.
pub struct TempConfig {
    _dir: tempfile::TempDir,
    /// The file's path, as a CLI argument.
    pub path: String,
}

impl TempConfig {
    /// Writes `yaml` to a fresh temp file.
    pub fn new(yaml: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("ocync.yaml");
        std::fs::write(&path, yaml).expect("write config");
        TempConfig { path: path.to_str().expect("UTF-8 temp path").to_string(), _dir: dir }
    }
}

/// Sends SIGTERM to `child` and waits for it to exit, failing the test if it is still running
/// after `limit`: its exit status, how long it took after the signal, and what it printed.
pub fn terminate(mut child: Child, limit: Duration) -> (ExitStatus, Duration, Output) {
    let signalled = Instant::now();
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill -TERM");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            break status;
        }
        assert!(signalled.elapsed() < limit, "the child ignored SIGTERM for {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let stopped_after = signalled.elapsed();
    (status, stopped_after, child.wait_with_output().expect("child output"))
}

/// A tool from the repository's `.venv`, or a panic saying how to install it (never a skip).
pub fn venv_tool(name: &str, packages: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin").join(name);
    assert!(
        path.is_file(),
        "{} is missing; install it with: python3 -m venv .venv && .venv/bin/pip install {packages} (or run .ci/run)",
        path.display()
    );
    path
}
