//! A hostile source registry cannot exhaust memory or time, outlive a signal, or write to the
//! terminal: oversized manifests, dripping error bodies, SIGTERM during a stalled transfer,
//! escape sequences in error text. Each test runs the `ocync` binary against a real registry
//! behind [`HostileRegistry`].

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ocync::oci::media_type::OCI_MANIFEST;
use ocync::registry::Registry as _;
use ocync::testing::testdata::{self, Built};

use crate::copy::{describe, ocync, seed};
use crate::support::TestRegistry;
use crate::support::hostile::{HostileRegistry, Reply};
use crate::support::tools::{TempConfig, require, terminate};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// A source registry holding `team/app:v1` (a 300 kB layer), and an empty target.
async fn source_and_target() -> (TestRegistry, TestRegistry, Built) {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let built = Built::Image(testdata::image(&[(700, 300_000), (701, 1000)], ("linux", "amd64"), false));
    seed(&source, "team/app", "v1", &built).await;
    (source, target, built)
}

fn is_manifest_get(request: &crate::support::http::Request) -> bool {
    request.method == "GET" && request.path.contains("/manifests/")
}

/// The one JSON report `ocync copy --json` prints.
fn report(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("one JSON report ({e}): {}", describe(output)))
}

/// Runs `ocync copy --json` under `/usr/bin/time`; the output and the peak RSS in bytes.
fn copy_measuring_memory(source: &str, target: &str) -> (Output, u64) {
    let time = require("time", "apt-get install -y time");
    let measured = tempfile::NamedTempFile::new().expect("temp file");
    let output = Command::new(time)
        .args(["-f", "%M", "-o"])
        .arg(measured.path())
        .arg(env!("CARGO_BIN_EXE_ocync"))
        .args(["copy", "--json", source, target])
        .env("RUST_LOG", "ocync=debug")
        .env_remove("DOCKER_CONFIG")
        .output()
        .expect("run ocync under time");
    // GNU time writes "Command exited with non-zero status N" first when it did.
    let text = std::fs::read_to_string(measured.path()).expect("time's output");
    let kib: u64 = text.lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("{text:?}"));
    (output, kib * 1024)
}

#[tokio::test]
async fn a_gigabyte_manifest_sent_chunked_is_cut_at_the_cap_with_memory_far_below_it() {
    let (source, target, _) = source_and_target().await;
    let hostile = HostileRegistry::start(&source.host, |request| {
        if is_manifest_get(request) {
            Reply::Endless { status: 200, content_type: OCI_MANIFEST, size: GIB }
        } else {
            Reply::Forward
        }
    });
    let started = Instant::now();
    let (output, peak_rss) = copy_measuring_memory(&hostile.reference("team/app:v1"), &target.reference("app:v1"));
    let elapsed = started.elapsed();

    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let error = report(&output)["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("manifest too large: more than the 4194304 bytes allowed"), "{}", describe(&output));
    assert!(peak_rss < 100 * MIB, "peak RSS {} MiB for a 1 GiB manifest", peak_rss / MIB);
    let sent = hostile.body_bytes_sent();
    assert!(sent < 64 * MIB, "the client stopped reading near the cap, yet {} MiB were sent", sent / MIB);
    let gets = hostile.seen().iter().filter(|r| is_manifest_get(r)).count();
    assert_eq!(gets, 1, "an oversized manifest is not retried");
    assert!(target.requests().iter().all(|(method, _)| method != "PUT"), "nothing written");
    eprintln!("1 GiB chunked manifest: peak RSS {} MiB, {} MiB sent, {elapsed:?}", peak_rss / MIB, sent / MIB);
}

#[tokio::test]
async fn a_manifest_announced_at_a_gigabyte_is_refused_without_reading() {
    let (source, target, _) = source_and_target().await;
    // The body never comes: reading it would wait for the 30 s request timeout, and retries.
    let hostile = HostileRegistry::start(&source.host, |request| {
        if is_manifest_get(request) {
            Reply::Announce { status: 200, content_type: OCI_MANIFEST, length: GIB }
        } else {
            Reply::Forward
        }
    });
    let started = Instant::now();
    let output = ocync(&["copy", "--json", &hostile.reference("team/app:v1"), &target.reference("app:v1")]);
    let elapsed = started.elapsed();

    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let error = report(&output)["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("manifest too large: announced as 1073741824 bytes, more than the 4194304 allowed"),
        "{}",
        describe(&output)
    );
    assert!(elapsed < Duration::from_secs(10), "refused at once, not after a read: {elapsed:?}");
    assert_eq!(hostile.seen().iter().filter(|r| is_manifest_get(r)).count(), 1, "not retried");
}

#[tokio::test]
async fn an_error_body_that_drips_ends_within_the_configured_timeouts() {
    let (source, target, built) = source_and_target().await;
    let layer = built.blobs()[1].descriptor.digest.to_string();
    let dripping = layer.clone();
    // A 500 whose body would take 55 hours at one byte every two seconds.
    let hostile = HostileRegistry::start(&source.host, move |request| {
        if request.method == "GET" && request.path.ends_with(&dripping) {
            Reply::Drip {
                status: 500,
                content_type: "text/plain",
                body: vec![b'x'; 100_000],
                every: Duration::from_secs(2),
            }
        } else {
            Reply::Forward
        }
    });
    let config = TempConfig::new("global:\n  timeout: 2s\n  idle_timeout: 2s\n");
    let started = Instant::now();
    let output = ocync(&[
        "copy",
        "--json",
        "--config",
        &config.path,
        &hostile.reference("team/app:v1"),
        &target.reference("app:v1"),
    ]);
    let elapsed = started.elapsed();

    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let error = report(&output)["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains(&format!("answered 500 to GET blob {layer}")), "{}", describe(&output));
    let attempts = hostile.seen().iter().filter(|r| r.path.ends_with(&layer)).count();
    // Each attempt is cut at the 2 s request timeout; the retries (4 per download, 3
    // downloads) and their backoff are bounded too.
    assert!(attempts <= 12, "{attempts} attempts");
    let bound = Duration::from_secs(3 * attempts as u64 + 20);
    assert!(elapsed < bound, "{attempts} attempts took {elapsed:?}, more than {bound:?}");
    eprintln!("dripping 500 body: {attempts} attempts, ended after {elapsed:?}");
}

#[tokio::test]
async fn sigterm_during_a_stalled_copy_exits_1_after_the_grace_period() {
    let (source, target, built) = source_and_target().await;
    let layer = built.blobs()[1].descriptor.clone();
    let stalled = layer.digest.to_string();
    // The layer's answer starts, then its bytes come one a minute: the idle timeout (2 min)
    // is far away, so only the signal can end the copy.
    let hostile = HostileRegistry::start(&source.host, move |request| {
        if request.method == "GET" && request.path.ends_with(&stalled) {
            let body = vec![0; layer.size as usize];
            Reply::Drip { status: 200, content_type: "application/octet-stream", body, every: Duration::from_secs(60) }
        } else {
            Reply::Forward
        }
    });
    let config = TempConfig::new("global:\n  idle_timeout: 120s\n");
    let child = Command::new(env!("CARGO_BIN_EXE_ocync"))
        .args(["copy", "--json", "--grace-period", "1", "--config", &config.path])
        .args([hostile.reference("team/app:v1"), target.reference("app:v1")])
        .env_remove("DOCKER_CONFIG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ocync copy");
    let layer_path = format!("/blobs/{}", built.blobs()[1].descriptor.digest);
    let waiting = Instant::now();
    while !hostile.seen().iter().any(|r| r.path.ends_with(&layer_path)) {
        assert!(waiting.elapsed() < Duration::from_secs(20), "the layer download never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (status, stopped_after, output) = terminate(child, Duration::from_secs(30));

    assert_eq!(status.code(), Some(1), "{}", describe(&output));
    assert!(stopped_after < Duration::from_secs(1 + 4), "grace 1 s, stopped after {stopped_after:?}");
    let report = report(&output);
    assert!(report["error"].as_str().is_some_and(|e| e.starts_with("interrupted")), "{report}");
    assert_eq!(target.anonymous_client().head_manifest("app", "v1").await.unwrap(), None, "nothing tagged");
    eprintln!("SIGTERM during a stalled copy: exit 1 after {stopped_after:?}");
}

#[tokio::test]
async fn escape_sequences_in_a_registry_error_never_reach_the_terminal() {
    let (source, target, _) = source_and_target().await;
    let hostile_text = "\x1b]0;pwned\x07\x1b[2J\x1b[1;31mFAKE OK\r\x08\x08\u{9b}31m\u{9d}0;t\u{9c}";
    let hostile = HostileRegistry::start(&source.host, move |request| {
        if is_manifest_get(request) {
            Reply::Respond { status: 400, content_type: "text/plain", body: hostile_text.as_bytes().to_vec() }
        } else {
            Reply::Forward
        }
    });
    let (from, to) = (hostile.reference("team/app:v1"), target.reference("app:v1"));
    for args in [vec!["copy", "--json", &from, &to], vec!["copy", &from, &to], vec!["-v", "copy", &from, &to]] {
        let output = ocync(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", describe(&output));
        for (stream, bytes) in [("stdout", &output.stdout), ("stderr", &output.stderr)] {
            let text = String::from_utf8_lossy(bytes);
            let control = text.chars().find(|c| c.is_control() && *c != '\n');
            assert_eq!(control, None, "{args:?}: a control character on {stream}: {text:?}");
        }
        // Shown escaped, so an operator still sees what the registry sent (JSON doubles the `\`).
        let stdout = String::from_utf8_lossy(&output.stdout).replace(r"\\", r"\");
        assert!(stdout.contains(r"\x1b]0;pwned\x07\x1b[2J"), "{args:?}: the text is kept, escaped: {stdout}");
    }
}
