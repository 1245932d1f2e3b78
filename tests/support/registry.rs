//! Starts CNCF distribution (Debian's `docker-registry`) on a free loopback port with temp
//! storage, optionally with htpasswd or token auth and TLS, and stops it by PID on drop.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tools::{free_port, require};

/// How a test registry authenticates.
#[derive(Debug, Clone, Default)]
pub enum RegistryAuth {
    /// Open to everyone.
    #[default]
    None,
    /// htpasswd (bcrypt) with one user.
    Basic { username: String, password: String },
    /// Bearer tokens from a token server.
    Token { realm: String, service: String, issuer: String, root_cert_bundle: PathBuf },
}

/// What kind of registry to start.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// Authentication.
    pub auth: RegistryAuth,
    /// Serve HTTPS with this certificate and key.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// A running registry; killed (by PID) when dropped.
pub struct TestRegistry {
    /// `127.0.0.1:PORT`.
    pub host: String,
    /// Whether it speaks HTTPS.
    pub tls: bool,
    child: Child,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl TestRegistry {
    /// An open plain-HTTP registry.
    pub fn plain() -> Self {
        Self::start(RegistryOptions::default())
    }

    /// Starts a registry and waits until it answers.
    pub fn start(options: RegistryOptions) -> Self {
        Self::start_with(options, "", "")
    }

    /// [`TestRegistry::start`] with extra lines of distribution config: `http_lines` inside the
    /// `http:` section (indented two spaces, such as `  host: http://…`), `top_lines` at the top
    /// level (such as a `middleware:` section), for registries that misbehave on purpose.
    pub fn start_with(options: RegistryOptions, http_lines: &str, top_lines: &str) -> Self {
        let binary = require("docker-registry", "apt-get install -y docker-registry");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  formatter: text\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: {host}\n  secret: ocync-test-secret\n",
            dir.path().join("data").display()
        );
        config += http_lines;
        if let Some((cert, key)) = &options.tls {
            config += &format!("  tls:\n    certificate: {}\n    key: {}\n", cert.display(), key.display());
        }
        match &options.auth {
            RegistryAuth::None => {}
            RegistryAuth::Basic { username, password } => {
                let htpasswd = htpasswd_file(dir.path(), username, password);
                config += &format!("auth:\n  htpasswd:\n    realm: ocync-test\n    path: {}\n", htpasswd.display());
            }
            RegistryAuth::Token { realm, service, issuer, root_cert_bundle } => {
                config += &format!(
                    "auth:\n  token:\n    realm: {realm}\n    service: {service}\n    issuer: {issuer}\n    rootcertbundle: {}\n",
                    root_cert_bundle.display()
                );
            }
        }
        config += top_lines;
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).expect("write registry config");
        let log = dir.path().join("registry.log");
        // Append mode, so `reset_log` can truncate while the registry keeps writing.
        let log_file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("create registry log");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config_path)
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .stdin(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let registry = TestRegistry { host, tls: options.tls.is_some(), child, dir, log };
        registry.wait_until_listening();
        registry
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&self.host).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("docker-registry did not listen on {} within 15 s; log:\n{}", self.host, self.log_text());
    }

    /// `http://127.0.0.1:PORT/<path>` (or `127.0.0.1:PORT/<path>` for a TLS registry), as
    /// `ocync copy` takes it.
    pub fn reference(&self, path: &str) -> String {
        if self.tls { format!("{}/{path}", self.host) } else { format!("http://{}/{path}", self.host) }
    }

    /// `127.0.0.1:PORT/<path>`, as skopeo takes it.
    pub fn skopeo_reference(&self, path: &str) -> String {
        format!("{}/{path}", self.host)
    }

    /// A client for this registry with the given credentials.
    pub fn client(&self, credentials: ocync::registry::auth::Credentials) -> ocync::registry::HttpRegistry {
        let mut settings = ocync::registry::RegistrySettings::new(&self.host);
        settings.plain_http = !self.tls;
        settings.credentials = credentials.into();
        ocync::registry::HttpRegistry::new(settings).expect("client for a test registry")
    }

    /// An anonymous client.
    pub fn anonymous_client(&self) -> ocync::registry::HttpRegistry {
        self.client(ocync::registry::auth::Credentials::Anonymous)
    }

    /// The registry's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Requests served so far, as `(method, path)` from the access log (query string dropped).
    pub fn requests(&self) -> Vec<(String, String)> {
        self.log_text()
            .lines()
            .filter_map(|line| {
                let start = line.find("\"")? + 1;
                let request = &line[start..];
                let mut parts = request.split(' ');
                let method = parts.next()?;
                let path = parts.next()?;
                path.starts_with("/v2/")
                    .then(|| (method.to_string(), path.split('?').next().unwrap_or(path).to_string()))
            })
            .collect()
    }

    /// Requests served so far whose method is `method` and whose path contains `fragment`.
    pub fn count(&self, method: &str, fragment: &str) -> usize {
        self.requests().iter().filter(|(m, p)| m == method && p.contains(fragment)).count()
    }

    /// Forgets the requests logged so far (truncates the access log).
    pub fn reset_log(&self) {
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&self.log)
            .expect("truncate registry log")
            .flush()
            .ok();
    }

    /// The temp dir that holds the registry's storage and config.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn htpasswd_file(dir: &Path, username: &str, password: &str) -> PathBuf {
    let binary = require("htpasswd", "apt-get install -y apache2-utils");
    let output = Command::new(binary).args(["-Bbn", username, password]).output().expect("run htpasswd");
    assert!(output.status.success(), "htpasswd failed: {}", String::from_utf8_lossy(&output.stderr));
    let path = dir.join("htpasswd");
    std::fs::write(&path, output.stdout).expect("write htpasswd");
    path
}
