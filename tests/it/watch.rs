//! `ocync watch` as a process: health endpoints, metrics after a cycle, config reloads (and
//! an invalid one kept out, a new mapping from a registry unused so far picked up), an S3
//! config read with one S3 client across cycles, IPv6 binding, a clean exit on SIGTERM, and a
//! cycle cut short by its grace period still reporting what finished.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ocync::registry::Registry as _;
use ocync::testing::testdata::{self, Built};

use crate::copy::seed;
use crate::support::TestRegistry;
use crate::support::moto::MotoServer;
use crate::support::tools::free_port;

/// `GET path` on the health server: (status code, body).
fn get(address: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: ocync\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// Polls until `check` holds, or panics with `what` after 30 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether `repository:tag` appears at `target` within 20 s.
async fn lands(target: &TestRegistry, repository: &str, tag: &str) -> bool {
    let client = target.anonymous_client();
    for _ in 0..100 {
        if client.head_manifest(repository, tag).await.unwrap().is_some() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

struct Watcher {
    child: Child,
    address: String,
}

impl Watcher {
    fn start(config: &str, bind: &str) -> Watcher {
        Watcher::start_with_env(config, bind, &[])
    }

    fn start_with_env(config: &str, bind: &str, env: &[(&str, String)]) -> Watcher {
        Watcher::start_with(config, bind, env, &[], Stdio::null())
    }

    fn start_with(config: &str, bind: &str, env: &[(&str, String)], extra: &[&str], stderr: Stdio) -> Watcher {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_ocync"))
            // Only what the test passes reaches the AWS SDK's credential chain.
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args([
                "watch",
                "--config",
                config,
                "--interval",
                "1",
                "--health-bind",
                bind,
                "--health-port",
                &port.to_string(),
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start ocync watch");
        let host = if bind.contains(':') { format!("[{bind}]") } else { bind.to_string() };
        Watcher { child, address: format!("{host}:{port}") }
    }

    fn metrics(&self) -> String {
        get(&self.address, "/metrics").map(|(_, body)| body).unwrap_or_default()
    }

    /// SIGTERM, then the exit code.
    fn stop(mut self) -> Option<i32> {
        Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().expect("send SIGTERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for ocync watch") {
                return status.code();
            }
            assert!(Instant::now() < deadline, "ocync watch did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn image(seed: u64) -> Built {
    Built::Image(testdata::image(&[(seed, 5000)], ("linux", "amd64"), false))
}

fn config_text(source: &TestRegistry, target: &TestRegistry, repositories: &[&str]) -> String {
    let mut text = format!(
        "registries:\n  up: {{ url: \"http://{}\" }}\n  down: {{ url: \"http://{}\" }}\ndefaults: {{ source: up, targets: down }}\nmappings:\n",
        source.host, target.host
    );
    for repository in repositories {
        text += &format!("  - from: {repository}\n");
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_serves_health_and_metrics_reloads_config_and_exits_0_on_sigterm() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    seed(&source, "team/a", "v1", &image(1)).await;
    seed(&source, "team/b", "v1", &image(2)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ocync.yaml");
    std::fs::write(&config, config_text(&source, &target, &["team/a"])).unwrap();
    let watcher = Watcher::start(config.to_str().unwrap(), "127.0.0.1");

    eventually("/readyz", || get(&watcher.address, "/readyz").is_some_and(|(status, _)| status == 200));
    assert_eq!(get(&watcher.address, "/healthz").map(|(s, _)| s), Some(200));
    eventually("a cycle in the metrics", || watcher.metrics().contains("ocync_images_total{status=\"synced\"} 1"));
    let metrics = watcher.metrics();
    assert!(
        metrics.contains("ocync_mapping_last_success_timestamp_seconds{mapping=\"team/a -> team/a\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains(&format!("ocync_registry_requests_total{{registry=\"{}\",status=\"201\"}}", target.host)),
        "{metrics}"
    );

    // A new mapping is picked up on the next cycle.
    std::fs::write(&config, config_text(&source, &target, &["team/a", "team/b"])).unwrap();
    eventually("the new mapping", || watcher.metrics().contains("mapping=\"team/b -> team/b\""));

    // An invalid config is refused; the last good one keeps running (a new tag still lands).
    std::fs::write(&config, "registries: [not, a, map]\n").unwrap();
    eventually("the reload error", || watcher.metrics().contains("ocync_config_errors_total 1"));
    seed(&source, "team/a", "v2", &image(3)).await;
    assert!(lands(&target, "team/a", "v2").await, "the last good config kept syncing");
    assert_eq!(get(&watcher.address, "/healthz").map(|(s, _)| s), Some(200));

    assert_eq!(watcher.stop(), Some(0), "SIGTERM exits 0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_mapping_from_a_registry_no_mapping_used_before_syncs_on_the_next_cycle() {
    let (source, target, third) = (TestRegistry::plain(), TestRegistry::plain(), TestRegistry::plain());
    seed(&source, "team/a", "v1", &image(5)).await;
    seed(&third, "team/c", "v1", &image(6)).await;
    // `third` is configured from the start, so the registries section never changes.
    let with_third = |text: String| {
        text.replacen("registries:\n", &format!("registries:\n  third: {{ url: \"http://{}\" }}\n", third.host), 1)
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ocync.yaml");
    std::fs::write(&config, with_third(config_text(&source, &target, &["team/a"]))).unwrap();
    let watcher = Watcher::start(config.to_str().unwrap(), "127.0.0.1");
    eventually("the first cycle", || watcher.metrics().contains("mapping=\"team/a -> team/a\""));

    let added = with_third(config_text(&source, &target, &["team/a"])) + "  - { from: team/c, source: third }\n";
    std::fs::write(&config, added).unwrap();
    assert!(lands(&target, "team/c", "v1").await, "the mapping from `third` was synced: {}", watcher.metrics());
    assert_eq!(watcher.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reads_an_s3_config_with_one_s3_client_across_cycles() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    seed(&source, "team/a", "v1", &image(7)).await;
    let moto = MotoServer::start();
    let s3 = moto.s3_client();
    s3.create_bucket().bucket("watch-config").send().await.expect("create bucket");
    let text = config_text(&source, &target, &["team/a"]);
    s3.put_object().bucket("watch-config").key("ocync.yaml").body(text.into_bytes().into()).send().await.unwrap();
    // The S3 client's credentials come from a process that counts its runs: each client
    // built resolves them once and then keeps them (they do not expire).
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let script = dir.path().join("credentials.sh");
    std::fs::write(
        &script,
        format!(
            "echo run >> {}\necho '{{\"Version\": 1, \"AccessKeyId\": \"testing\", \"SecretAccessKey\": \"testing\"}}'\n",
            runs.display()
        ),
    )
    .unwrap();
    let aws_config = dir.path().join("aws-config");
    std::fs::write(&aws_config, format!("[default]\ncredential_process = sh {}\n", script.display())).unwrap();
    let mut env: Vec<(&str, String)> = moto
        .env()
        .into_iter()
        .filter(|(k, _)| !k.starts_with("AWS_ACCESS_KEY") && !k.starts_with("AWS_SECRET"))
        .collect();
    env.retain(|(k, _)| *k != "AWS_CONFIG_FILE");
    env.push(("AWS_CONFIG_FILE", aws_config.display().to_string()));
    env.push(("AWS_S3_FORCE_PATH_STYLE", "true".into()));
    let watcher = Watcher::start_with_env("s3://watch-config/ocync.yaml", "127.0.0.1", &env);

    eventually("three cycles", || watcher.metrics().contains("ocync_cycles_total 3"));
    assert!(lands(&target, "team/a", "v1").await, "the S3 config was synced");
    let credential_runs = std::fs::read_to_string(&runs).unwrap_or_default().lines().count();
    assert_eq!(credential_runs, 1, "one S3 client for every cycle");
    assert_eq!(watcher.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_binds_its_health_server_on_ipv6() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    seed(&source, "team/a", "v1", &image(4)).await;
    let config = crate::support::tools::TempConfig::new(&config_text(&source, &target, &["team/a"]));
    let watcher = Watcher::start(&config.path, "::1");
    eventually("/readyz over IPv6", || get(&watcher.address, "/readyz").is_some_and(|(status, _)| status == 200));
    assert_eq!(watcher.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cycle_whose_grace_period_runs_out_still_reports_what_finished() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    seed(&source, "team/a", "v1", &image(1)).await;
    seed(&source, "team/b", "v1", &image(2)).await;
    // team/b's blobs never arrive.
    let proxy = crate::support::proxy::FaultProxy::start(&source.host, |request| {
        if request.method == "GET" && request.target.contains("/team/b/blobs/") {
            crate::support::proxy::Action::Stall
        } else {
            crate::support::proxy::Action::Forward
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ocync.yaml");
    let text = format!(
        "registries:\n  up: {{ url: \"http://{}\" }}\n  down: {{ url: \"http://{}\" }}\ndefaults: {{ source: up, targets: down }}\nmappings:\n  - from: team/a\n  - from: team/b\n",
        proxy.host, target.host
    );
    std::fs::write(&config, text).unwrap();
    let log = dir.path().join("stderr.log");
    let stderr = std::fs::File::create(&log).unwrap();
    let watcher =
        Watcher::start_with(config.to_str().unwrap(), "127.0.0.1", &[], &["--grace-period", "1"], stderr.into());
    assert!(lands(&target, "team/a", "v1").await, "team/a syncs while team/b stalls");

    assert_eq!(watcher.stop(), Some(0), "SIGTERM exits 0");
    let log = std::fs::read_to_string(&log).unwrap();
    let done =
        log.lines().find(|line| line.contains("cycle done")).unwrap_or_else(|| panic!("no cycle report:\n{log}"));
    assert!(done.contains("synced=1") && done.contains("failed=1"), "{done}");
}
