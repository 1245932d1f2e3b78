//! Starts `moto_server` (PyPI `moto[server]`) on a free loopback port as the AWS control plane
//! (ECR, S3, SQS), and stops it by PID.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tools::free_port;

/// A running moto server.
pub struct MotoServer {
    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub endpoint: String,
    child: Child,
}

/// The `moto_server` executable: the repository's `.venv` (made by `.ci/run`), else `PATH`.
fn binary() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    super::tools::require(
        "moto_server",
        "python3 -m venv .venv && .venv/bin/pip install 'moto[server]' (or run .ci/run)",
    )
}

impl MotoServer {
    /// Starts moto and waits until it answers.
    pub fn start() -> Self {
        let port = free_port();
        let child = Command::new(binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let server = MotoServer { endpoint: format!("http://127.0.0.1:{port}"), child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto_server did not listen on port {port} within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    /// Environment for an AWS SDK client that talks to this server and nothing else.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/nonexistent/ocync-test-aws-config".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/ocync-test-aws-credentials".into()),
        ]
    }

    /// An S3 client for this server (path-style, as moto needs).
    pub fn s3_client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "test"))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// An SQS client for this server.
    pub fn sqs_client(&self) -> aws_sdk_sqs::Client {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("testing", "testing", None, None, "test"))
            .build();
        aws_sdk_sqs::Client::from_conf(config)
    }

    /// An ECR client for this server (for checking what ocync did).
    pub async fn ecr_client(&self) -> aws_sdk_ecr::Client {
        let credentials = aws_sdk_ecr::config::Credentials::new("testing", "testing", None, None, "test");
        let config = aws_sdk_ecr::Config::builder()
            .behavior_version(aws_sdk_ecr::config::BehaviorVersion::latest())
            .region(aws_sdk_ecr::config::Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(credentials)
            .build();
        aws_sdk_ecr::Client::from_conf(config)
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
