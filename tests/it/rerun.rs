//! Interrupted runs against real registries: after SIGTERM no queued blob transfer starts
//! (counted at the source through a proxy), and a rerun after `kill -9` mounts what the killed
//! run left in another repository instead of uploading it again (counted in the target's log).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ocync::testing::testdata::{self, Built};

use crate::copy::{describe, ocync, seed};
use crate::support::TestRegistry;
use crate::support::proxy::{Action, FaultProxy};
use crate::support::tools::{TempConfig, skopeo_digest, terminate};

/// How long the proxy holds each blob download: long enough that the transfers behind the
/// first one are still queued when the signal comes.
const SLOW_BLOB: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_sigterm_no_queued_blob_transfer_starts() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    for n in 0..4u64 {
        let built = Built::Image(testdata::image(&[(600 + n, 50_000)], ("linux", "amd64"), false));
        seed(&source, &format!("team/r{n}"), "v1", &built).await;
    }
    let proxy = FaultProxy::start(&source.host, |request| {
        if request.method == "GET" && request.target.contains("/blobs/sha256:") {
            Action::Delay(SLOW_BLOB)
        } else {
            Action::Forward
        }
    });
    // Four images start at once; the source allows one transfer at a time, so the others queue.
    let config = TempConfig::new(&format!(
        "registries:\n  up: {{ url: \"http://{}\", max_concurrent: 1 }}\n  down: {{ url: \"http://{}\" }}\n\
         defaults:\n  source: up\n  targets: down\n\
         mappings:\n  - from: team/r0\n  - from: team/r1\n  - from: team/r2\n  - from: team/r3\n",
        proxy.host, target.host
    ));
    let blob_gets = || -> Vec<Instant> {
        proxy.seen().into_iter().filter(|r| r.method == "GET" && r.target.contains("/blobs/")).map(|r| r.at).collect()
    };
    let child = Command::new(env!("CARGO_BIN_EXE_ocync"))
        .args(["sync", "--config", &config.path, "--grace-period", "30", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while blob_gets().is_empty() {
        assert!(Instant::now() < deadline, "no blob download started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let signalled = Instant::now();
    let (status, stopped_after, output) = terminate(child, Duration::from_secs(25));

    let gets = blob_gets();
    let after: Vec<Duration> = gets.iter().filter(|at| **at > signalled).map(|at| *at - signalled).collect();
    eprintln!("{} blob GET(s) before the signal, stopped {stopped_after:?} after it", gets.len() - after.len());
    assert_eq!(after, Vec::<Duration>::new(), "blob downloads started after the signal");
    assert_eq!(gets.len(), 1, "one transfer at a time: only the one in flight ran");
    assert_eq!(status.code(), Some(1), "{}", describe(&output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
    assert_eq!(report["totals"]["failed"], 4, "every image is interrupted before its tag: {report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_after_kill_9_mounts_a_shared_layer_the_killed_run_uploaded() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let image = |own| Built::Image(testdata::image(&[(700, 1_000_000), (own, 10_000)], ("linux", "amd64"), false));
    let (a, b) = (image(701), image(702));
    seed(&source, "team/a", "v1", &a).await;
    seed(&source, "team/b", "v1", &b).await;
    let shared = a.blobs()[1].descriptor.digest.to_string();
    assert_eq!(b.blobs()[1].descriptor.digest.to_string(), shared);
    let config_b = b.blobs()[0].descriptor.digest.to_string();
    // The first run stalls on team/b's first blob, after team/a is complete (one transfer at a
    // time, images in order), and is killed there: mirror/a holds the shared layer, mirror/b
    // nothing.
    let stalled = config_b.clone();
    let proxy = FaultProxy::start(&source.host, move |request| {
        if request.method == "GET" && request.target.ends_with(&stalled) { Action::Stall } else { Action::Forward }
    });
    let config = |source_host: &str| {
        TempConfig::new(&format!(
            "global:\n  max_concurrent_transfers: 1\n\
             registries:\n  up: {{ url: \"http://{source_host}\" }}\n  down: {{ url: \"http://{}\" }}\n\
             defaults:\n  source: up\n  targets: down\n\
             mappings:\n  - from: team/a\n    to: mirror/a\n  - from: team/b\n    to: mirror/b\n",
            target.host
        ))
    };
    let first = config(&proxy.host);
    let mut child = Command::new(env!("CARGO_BIN_EXE_ocync"))
        .args(["sync", "--config", &first.path])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !proxy.seen().iter().any(|r| r.target.ends_with(&config_b)) {
        assert!(Instant::now() < deadline, "the first run never reached team/b");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // The closing PUT of an upload names the digest in its query, URL-encoded: match the hex.
    let hex = shared.trim_start_matches("sha256:").to_string();
    let uploads_of_shared = |log: &str| {
        log.lines().filter(|l| l.contains("\"PUT /v2/") && l.contains("/blobs/uploads/") && l.contains(&hex)).count()
    };
    assert_eq!(uploads_of_shared(&target.log_text()), 1, "the killed run uploaded the shared layer once");

    target.reset_log();
    let output = ocync(&["sync", "--config", &config(&source.host).path, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let log = target.log_text();
    assert_eq!(uploads_of_shared(&log), 0, "the rerun uploaded the shared layer again");
    let mounts = log
        .lines()
        .filter(|l| l.contains("\"POST /v2/mirror/b/blobs/uploads/?") && l.contains("from=mirror%2Fa"))
        .count();
    assert_eq!(mounts, 1, "mounted from mirror/a instead");
    assert_eq!(skopeo_digest(&target.skopeo_reference("mirror/b:v1"), &[]), b.digest().to_string());
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
    let image_b = report["mappings"][1]["images"][0].clone();
    assert_eq!(image_b["stats"]["blobs_mounted"], 1, "{report}");
    assert_eq!(image_b["stats"]["blobs_copied"], 2, "config and own layer: {report}");
}
