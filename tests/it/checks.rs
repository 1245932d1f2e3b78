//! The check before each blob upload (issue 16): at a registry that mounts, a mount request
//! from the repository itself answers "there" (201) or opens the upload (202) in one request;
//! at one that answers every mount with 202, ocync notices and goes back to `HEAD` checks, and
//! never uploads a blob the repository already holds.

use ocync::registry::Registry;
use ocync::testing::testdata::{self, Built};

use crate::copy::{describe, ocync, seed};
use crate::support::TestRegistry;
use crate::support::proxy::{Action, FaultProxy};
use crate::support::tools::{TempConfig, skopeo_digest};

/// Three repositories whose images share one layer and each have a config and a layer of
/// their own: 7 distinct blobs, 9 blob-repository pairs.
async fn three_repositories(source: &TestRegistry) -> Vec<Built> {
    let mut images = Vec::new();
    for n in 0..3u64 {
        let image = Built::Image(testdata::image(&[(810, 300_000), (811 + n, 20_000)], ("linux", "amd64"), false));
        seed(source, &format!("team/r{n}"), "v1", &image).await;
        images.push(image);
    }
    images
}

fn config(source: &str, target: &str) -> TempConfig {
    TempConfig::new(&format!(
        "registries:\n  src: {{ url: \"http://{source}\" }}\n  dst: {{ url: \"http://{target}\" }}\n\
         defaults:\n  source: src\n  targets: dst\n\
         mappings:\n  - from: team/r0\n  - from: team/r1\n  - from: team/r2\n"
    ))
}

/// Puts every blob of `images` into the same repositories of `target`, but no manifest: what
/// a killed run, or deleted tags, leave behind.
async fn blobs_only(target: &TestRegistry, images: &[Built]) {
    let client = target.anonymous_client();
    for (n, image) in images.iter().enumerate() {
        for blob in image.blobs() {
            client.push_blob(&format!("team/r{n}"), &blob.descriptor, blob.stream(), None).await.unwrap();
        }
    }
    target.reset_log();
}

fn blob_heads(target: &TestRegistry) -> usize {
    target.count("HEAD", "/blobs/sha256:")
}

fn upload_puts(target: &TestRegistry) -> usize {
    target.count("PUT", "/blobs/uploads/")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_a_registry_that_mounts_each_blob_costs_one_request_before_its_upload() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let images = three_repositories(&source).await;
    let output = ocync(&["sync", "--config", &config(&source.host, &target.host).path]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    for (n, image) in images.iter().enumerate() {
        assert_eq!(skopeo_digest(&target.skopeo_reference(&format!("team/r{n}:v1")), &[]), image.digest().to_string());
    }
    assert_eq!(upload_puts(&target), 7, "each distinct blob uploaded once");
    // One POST per blob and repository (mounts included), and at most one more: the mount
    // request after the first upload that proves the registry's answers.
    let posts = target.count("POST", "/blobs/uploads/");
    assert!(posts == 9 || posts == 10, "{posts} POSTs");
    // Cold and concurrent, these checks all come before anything has proven the registry's
    // answers, so each 202 is also asked with a HEAD (the rest of a larger run is not: see
    // the benchmark's request counts); the shared layer's mounts ask nothing first.
    assert!(blob_heads(&target) <= 9, "at most one HEAD per blob and repository: {}", blob_heads(&target));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_already_in_the_repositories_are_found_by_the_mount_request_alone() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let images = three_repositories(&source).await;
    blobs_only(&target, &images).await;
    let output = ocync(&["sync", "--config", &config(&source.host, &target.host).path, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(upload_puts(&target), 0, "nothing uploaded again");
    assert_eq!(blob_heads(&target), 0, "a 201 answers for the blob: no HEAD");
    assert_eq!(target.count("POST", "/blobs/uploads/"), 9, "one request per blob and repository");
    assert_eq!(source.count("GET", "/blobs/"), 0, "no blob read from the source");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
    assert_eq!(report["totals"]["blobs_copied"], 0, "{report}");
    for (n, image) in images.iter().enumerate() {
        assert_eq!(skopeo_digest(&target.skopeo_reference(&format!("team/r{n}:v1")), &[]), image.digest().to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_answering_every_mount_with_202_gets_head_checks_and_no_needless_upload() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let images = three_repositories(&source).await;
    blobs_only(&target, &images).await;
    // As a registry without mounts: every mount request opens a plain upload session.
    let proxy = FaultProxy::start(&target.host, |request| match request.target.split_once("?mount=") {
        Some((path, _)) if request.method == "POST" => Action::ForwardTo(path.to_string()),
        _ => Action::Forward,
    });
    let output = ocync(&["sync", "--config", &config(&source.host, &proxy.host).path, "--json"]);
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(upload_puts(&target), 0, "a 202 is not believed: the blobs were there");
    assert_eq!(source.count("GET", "/blobs/"), 0, "no blob read from the source");
    // Each 202 followed by a HEAD (after the first finding, the HEAD alone): one per pair.
    assert_eq!(blob_heads(&target), 9, "one HEAD per blob and repository");
    let mount_posts = proxy.seen().iter().filter(|r| r.method == "POST" && r.target.contains("?mount=")).count();
    assert!(mount_posts <= 9, "at most one mount request per pair: {mount_posts}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON report");
    assert_eq!(report["totals"]["blobs_copied"], 0, "{report}");
}
