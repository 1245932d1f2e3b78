//! `ocync copy` against real registries, checked independently with skopeo and access logs.

use std::process::{Command, Output};

use ocync::registry::Registry;
use ocync::testing::testdata::{self, Built};

use crate::support::TestRegistry;
use crate::support::tools::{TempConfig, skopeo_digest, skopeo_raw};

const PLATFORMS: [(&str, &str); 2] = [("linux", "amd64"), ("linux", "arm64")];

/// Runs the `ocync` binary with `args`.
pub fn ocync(args: &[&str]) -> Output {
    ocync_with_env(args, &[])
}

/// Runs the `ocync` binary with `args` and extra environment variables.
pub fn ocync_with_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ocync"));
    command.args(args).env("RUST_LOG", "ocync=debug").env_remove("DOCKER_CONFIG");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run ocync")
}

/// Exit code, stdout and stderr, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Pushes `built` to `registry` as `repository:tag`.
pub async fn seed(registry: &TestRegistry, repository: &str, tag: &str, built: &Built) {
    testdata::push(&registry.anonymous_client(), repository, tag, built).await.expect("seed test image");
}

fn small_index(seed: u64) -> Built {
    testdata::index(seed, &[(0, 64 * 1024)], &PLATFORMS, false)
}

fn assert_copied(output: &Output) {
    assert_eq!(output.status.code(), Some(0), "{}", describe(output));
}

/// Uploads finished at a registry (the closing PUT of each blob upload).
fn blob_uploads(registry: &TestRegistry) -> usize {
    registry.count("PUT", "/blobs/uploads/")
}

#[tokio::test]
async fn copies_an_oci_index_with_every_child_bit_for_bit() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let built = small_index(1);
    seed(&source, "team/app", "v1", &built).await;

    let output = ocync(&["copy", &source.reference("team/app:v1"), &target.reference("mirror/app:v1")]);
    assert_copied(&output);

    assert_eq!(skopeo_digest(&target.skopeo_reference("mirror/app:v1"), &[]), built.digest().to_string());
    let Built::Index { children, .. } = &built else { unreachable!() };
    for child in children {
        let bytes = skopeo_raw(&target.skopeo_reference(&format!("mirror/app@{}", child.manifest.digest)), &[]);
        assert_eq!(bytes, child.manifest.bytes.as_ref(), "child {} differs", child.manifest.digest);
    }
    // Five distinct blobs: the shared base once, two configs, two platform layers.
    assert_eq!(blob_uploads(&target), 5);
}

#[tokio::test]
async fn copies_a_docker_manifest_list_keeping_docker_media_types() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let built = testdata::index(2, &[(0, 1000)], &PLATFORMS, true);
    seed(&source, "team/legacy", "1.0", &built).await;

    assert_copied(&ocync(&["copy", &source.reference("team/legacy:1.0"), &target.reference("legacy:1.0")]));

    let raw = skopeo_raw(&target.skopeo_reference("legacy:1.0"), &[]);
    assert_eq!(ocync::oci::Digest::sha256_of(&raw), *built.digest());
    let text = String::from_utf8(raw).unwrap();
    assert!(text.contains(ocync::oci::media_type::DOCKER_MANIFEST_LIST), "{text}");
}

#[tokio::test]
async fn copies_helm_charts_and_artifacts_with_subject_and_empty_config() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let chart = Built::Image(testdata::helm_chart("argo-cd", "7.6.0"));
    let image = Built::Image(testdata::image(&[(5, 2000)], ("linux", "amd64"), false));
    let Built::Image(subject) = &image else { unreachable!() };
    let signature = Built::Image(testdata::artifact(
        "application/vnd.dev.sigstore.bundle.v0.3+json",
        b"sig",
        Some(&subject.manifest),
    ));
    seed(&source, "charts/argo-cd", "7.6.0", &chart).await;
    seed(&source, "team/signed", "v1", &image).await;
    seed(&source, "team/signed", "sig", &signature).await;

    for (from, to, built) in [
        ("charts/argo-cd:7.6.0", "argo/argo-cd", &chart),
        ("team/signed:v1", "signed", &image),
        ("team/signed:sig", "signed", &signature),
    ] {
        assert_copied(&ocync(&["copy", &source.reference(from), &target.reference(to)]));
        let tag = from.rsplit(':').next().unwrap();
        assert_eq!(skopeo_digest(&target.skopeo_reference(&format!("{to}:{tag}")), &[]), built.digest().to_string());
    }
}

#[tokio::test]
async fn a_digest_pinned_source_lands_under_the_destination_tag() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let built = small_index(3);
    seed(&source, "team/app", "moving", &built).await;

    let pinned = source.reference(&format!("team/app@{}", built.digest()));
    assert_copied(&ocync(&["copy", &pinned, &target.reference("app:pinned")]));
    assert_eq!(skopeo_digest(&target.skopeo_reference("app:pinned"), &[]), built.digest().to_string());
}

#[tokio::test]
async fn a_second_copy_sends_only_heads_and_with_referrers_only_listings() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    seed(&source, "team/app", "v1", &small_index(4)).await;
    let args = ["copy".to_string(), source.reference("team/app:v1"), target.reference("app:v1")];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_copied(&ocync(&args));
    source.reset_log();
    target.reset_log();

    let output = ocync(&[&args[..], &["--json", "--no-referrers"]].concat());
    assert_copied(&output);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is one JSON report");
    assert_eq!(report["status"], "skipped");
    let all: Vec<_> = source.requests().into_iter().chain(target.requests()).collect();
    assert!(all.iter().all(|(method, _)| method == "HEAD"), "non-HEAD requests on a warm copy: {all:?}");
    assert_eq!(all.len(), 2, "{all:?}");

    // With referrers (the default): one referrers API probe (404) and one tag list for the
    // fallback tags at the source. No tag there follows the `sha256-` schemas, so nothing can
    // refer to the index or its children: the index is not read. The target is not asked,
    // since nothing upstream refers to the image.
    source.reset_log();
    target.reset_log();
    assert_copied(&ocync(&args));
    let mut at_source: Vec<String> = source.requests().into_iter().map(|(m, p)| format!("{m} {p}")).collect();
    at_source.sort();
    assert_eq!(at_source.len(), 3, "{at_source:?}");
    assert!(at_source[0].starts_with("GET /v2/team/app/referrers/sha256:"), "{at_source:?}");
    assert_eq!(at_source[1], "GET /v2/team/app/tags/list");
    assert_eq!(target.requests().len(), 1, "the HEAD of the tag: {:?}", target.requests());
}

#[tokio::test]
async fn blobs_already_at_the_target_are_not_sent_again() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    // Two images sharing a 256 KiB base layer.
    let first = Built::Image(testdata::image(&[(10, 256 * 1024), (11, 100)], ("linux", "amd64"), false));
    let second = Built::Image(testdata::image(&[(10, 256 * 1024), (12, 100)], ("linux", "amd64"), false));
    seed(&source, "team/a", "v1", &first).await;
    seed(&source, "team/b", "v1", &second).await;

    assert_copied(&ocync(&["copy", &source.reference("team/a:v1"), &target.reference("shared:a")]));
    target.reset_log();
    source.reset_log();
    let output = ocync(&["copy", "--json", &source.reference("team/b:v1"), &target.reference("shared:b")]);
    assert_copied(&output);

    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["stats"]["blobs_skipped"], 1, "{report}");
    assert_eq!(report["stats"]["blobs_copied"], 2, "{report}");
    assert_eq!(blob_uploads(&target), 2, "config and top layer only");
    assert_eq!(source.count("GET", "/blobs/"), 2, "the shared base is not even read");
}

#[tokio::test]
async fn copies_within_one_registry_mount_instead_of_uploading() {
    let registry = TestRegistry::plain();
    seed(&registry, "team/app", "v1", &small_index(5)).await;
    registry.reset_log();

    let output = ocync(&["copy", "--json", &registry.reference("team/app:v1"), &registry.reference("copy/app:v1")]);
    assert_copied(&output);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["stats"]["blobs_mounted"], 5, "{report}");
    assert_eq!(blob_uploads(&registry), 0);
    assert_eq!(registry.count("GET", "/blobs/"), 0);
}

#[tokio::test]
async fn chunked_uploads_work_when_configured() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let built = Built::Image(testdata::image(&[(20, 20 * 1024 * 1024 + 3)], ("linux", "amd64"), false));
    seed(&source, "team/big", "v1", &built).await;
    let config =
        TempConfig::new(&format!("registries:\n  target:\n    url: http://{}\n    upload: chunked\n", target.host));

    let output =
        ocync(&["copy", "--config", &config.path, &source.reference("team/big:v1"), &target.reference("big:v1")]);
    assert_copied(&output);
    assert_eq!(skopeo_digest(&target.skopeo_reference("big:v1"), &[]), built.digest().to_string());
    // 20 MiB in 8 MiB chunks: three PATCHes for the layer, one for the config.
    assert_eq!(target.count("PATCH", "/blobs/uploads/"), 4);
}

#[tokio::test]
async fn a_corrupt_source_blob_fails_the_copy_and_leaves_no_tag() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    let built = Built::Image(testdata::image(&[(30, 300_000)], ("linux", "amd64"), false));
    seed(&source, "team/app", "v1", &built).await;
    let layer = &built.blobs()[1].descriptor.digest;
    let hex = layer.hex();
    let data = source.dir().join(format!("data/docker/registry/v2/blobs/sha256/{}/{hex}/data", &hex[..2]));
    let mut bytes = std::fs::read(&data).expect("layer data file");
    bytes[150_000] ^= 0xff;
    std::fs::write(&data, bytes).unwrap();

    let output = ocync(&["copy", &source.reference("team/app:v1"), &target.reference("app:v1")]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("blob {layer}")) && stdout.contains("is corrupt"), "{}", describe(&output));
    let target_client = target.anonymous_client();
    assert_eq!(target_client.head_manifest("app", "v1").await.unwrap(), None, "tag must not exist");
    assert!(!target_client.blob_exists("app", layer).await.unwrap(), "corrupt blob must not be stored");
}

#[tokio::test]
async fn bad_references_are_config_errors_quoting_the_input() {
    for (source, destination, quoted) in [
        ("http://127.0.0.1:5000/Team/App:v1", "http://127.0.0.1:5001/x", "\"http://127.0.0.1:5000/Team/App:v1\""),
        ("http://127.0.0.1:5000/team/app:v1", "127.0.0.1:5001/x:bad tag", "\"127.0.0.1:5001/x:bad tag\""),
        ("ghcr.io/a/b@sha256:1234", "ghcr.io/c", "\"ghcr.io/a/b@sha256:1234\""),
    ] {
        let output = ocync(&["copy", source, destination]);
        assert_eq!(output.status.code(), Some(3), "{}", describe(&output));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(quoted), "{}", describe(&output));
    }
}

#[tokio::test]
async fn an_unreachable_registry_fails_with_a_network_error_naming_it() {
    let target = TestRegistry::plain();
    let port = crate::support::tools::free_port();
    let source = format!("http://127.0.0.1:{port}/team/app:v1");
    let output = ocync(&["copy", &source, &target.reference("app:v1")]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("network error talking to 127.0.0.1:{port}")), "{}", describe(&output));
    assert!(stdout.contains("Connection refused"), "{}", describe(&output));
}

#[tokio::test]
async fn a_missing_source_tag_is_reported_as_not_found() {
    let (source, target) = (TestRegistry::plain(), TestRegistry::plain());
    seed(&source, "team/app", "v1", &small_index(6)).await;
    let output = ocync(&["copy", &source.reference("team/app:v2"), &target.reference("app")]);
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("team/app:v2 not found"), "{}", describe(&output));
    assert!(target.requests().iter().all(|(method, _)| method != "PUT"), "nothing may be pushed");
}
